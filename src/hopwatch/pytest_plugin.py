"""pytest plugin (entry point ``pytest11``): fixtures for hop budgets. See hopwatch.testing."""
