"""Integrations with optional third-party packages (each an extra, imported only when configured).

- :mod:`hopwatch.contrib.debug_toolbar`: a hops panel for django-debug-toolbar
  (``pip install 'hopwatch[debug-toolbar]'``).
"""
