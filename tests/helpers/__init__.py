"""Helpers shared by test modules (test modules import from here or from a conftest.py, never from
another test module: tests/unit/test_test_imports.py enforces it)."""
