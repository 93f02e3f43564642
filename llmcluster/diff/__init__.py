"""Preview diffs: the offline evaluation at two revisions, host-configuration diffs, the sticky PR comment."""
