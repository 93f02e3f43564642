"""Lab tier: real namespaced hosts on this machine (fixtures in tests/conftest.py)."""
