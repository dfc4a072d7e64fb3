"""The toolbar test site as an ASGI application, its static files (the toolbar's) included."""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.toolbar_site.settings")

application = ASGIStaticFilesHandler(get_asgi_application())
