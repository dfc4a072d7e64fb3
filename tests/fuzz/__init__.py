"""Property-based tests of ``hopwatch report`` through its command line (see docs/reliability.md)."""
