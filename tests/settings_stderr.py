"""tests.settings, with the ``hopwatch`` logger's warnings on standard error (its
request lines, at INFO, still dropped): for a test that reads what a process logs
at start-up."""

from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "null": {"class": "logging.NullHandler"},
        "stderr": {"class": "logging.StreamHandler", "level": "WARNING"},
    },
    "loggers": {
        "hopwatch": {"handlers": ["null", "stderr"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["null"], "propagate": False},
    },
}
