"""A site with django-debug-toolbar and hopwatch's panel on, for tests/test_debug_toolbar.py.

``settings.TOOLBAR`` are the settings tests apply with ``override_settings``;
``settings`` itself is the whole module, for a server in its own process.
"""
