"""A django-ninja API (a test-only dependency): how hopwatch names its operations."""
