"""Load, fault and memory tests: hopwatch under real servers, real traffic and real failures.

See docs/reliability.md for what each test proves and how to run them.
"""
