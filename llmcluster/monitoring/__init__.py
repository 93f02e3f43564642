"""Monitoring, alerting and the audit store (docs/observability.md)."""
