"""Settings for hopwatch's example site: startproject's defaults plus hopwatch."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
VAR_DIR = Path(os.environ.get("EXAMPLE_SITE_VAR", BASE_DIR / "var"))

SECRET_KEY = "example-site-not-a-secret"
# Debug mode (EXAMPLE_SITE_DEBUG=1, as `python3 dev.py site` runs it): Django's DEBUG
# plus django-debug-toolbar with hopwatch's hops panel. Never on in the demo's measured
# runs (example_site/demo.py clears the variable for its servers).
DEBUG = os.environ.get("EXAMPLE_SITE_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "hopwatch",
    "example_site.shop",
]

# startproject's default MIDDLEWARE, with hopwatch's line first.
MIDDLEWARE = [
    "hopwatch.middleware.HopwatchMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_site.urls"
ASGI_APPLICATION = "example_site.asgi.application"
WSGI_APPLICATION = "example_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"

# One hopwatch line per request, as JSON, to a file per server process.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"bare": {"format": "%(message)s"}},
    "handlers": {
        "hopwatch": {
            "class": "logging.FileHandler",
            "filename": os.environ.get("HOPWATCH_LOG", str(VAR_DIR / "hopwatch.log")),
            "formatter": "bare",
            "delay": True,
        },
    },
    "loggers": {
        "hopwatch": {"handlers": ["hopwatch"], "level": "INFO", "propagate": False},
        "django.request": {"level": "CRITICAL"},  # the demo's /boom/ is expected
    },
}

if DEBUG:
    try:
        from debug_toolbar.settings import PANELS_DEFAULTS
    except ImportError:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "EXAMPLE_SITE_DEBUG=1 needs django-debug-toolbar: pip install 'hopwatch[debug-toolbar]'"
        ) from None
    INSTALLED_APPS.append("debug_toolbar")
    # After hopwatch's middleware (first), before everything else: as the toolbar's docs say.
    MIDDLEWARE.insert(1, "debug_toolbar.middleware.DebugToolbarMiddleware")
    INTERNAL_IPS = ["127.0.0.1"]
    DEBUG_TOOLBAR_PANELS = [*PANELS_DEFAULTS, "hopwatch.contrib.debug_toolbar.HopsPanel"]
    # The index page fetches endpoints from its buttons: the toolbar follows each fetch.
    DEBUG_TOOLBAR_CONFIG = {"UPDATE_ON_FETCH": True}

HOPWATCH = {
    "SITES_LIMIT": 8,
    # time a no-op hop once per process, from its first request (in a background
    # thread): every line after it carries hop_tax_us, and the report shows what
    # each endpoint's hops cost here
    "MEASURE_HOP_TAX": True,
    # the demo's servers: each crossing in the line, for the HTML report's timelines
    "DETAIL": os.environ.get("EXAMPLE_SITE_DETAIL") == "1",
}
