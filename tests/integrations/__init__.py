"""Test projects of the contrib integrations, each run in its own pytest
process by tests/test_integrations.py (the settings module is process-wide).
Their test modules are named ``check_*.py``, so the main run never collects them."""
