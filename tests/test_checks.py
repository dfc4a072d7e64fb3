"""Django system checks: each fires where it should and stays quiet elsewhere."""

from __future__ import annotations

import logging

import pytest
from django.core import checks
from django.test import override_settings

from hopwatch.checks import check_logging, check_middleware, check_settings

HW = "hopwatch.middleware.HopwatchMiddleware"


def ids(messages):
    return [m.id for m in messages]


def test_the_test_settings_pass_every_check():
    hopwatch_ids = [m.id for m in checks.run_checks() if m.id and m.id.startswith("hopwatch.")]
    assert hopwatch_ids == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ({}, []),
        ("yes", ["hopwatch.E001"]),
        ({"ENABLD": True}, ["hopwatch.E002"]),
        ({"SAMPLE_RATE": 1.5}, ["hopwatch.E003"]),
        ({"SAMPLE_RATE": True}, ["hopwatch.E003"]),
        ({"MIN_HOPS": -1, "DETAIL": "yes"}, ["hopwatch.E003", "hopwatch.E003"]),
        ({"EXTRA_FIELDS": 3}, ["hopwatch.E003"]),
        ({"SAMPLE_RATE": 0.25, "DETAIL": True, "EXTRA_FIELDS": "x.y"}, []),
    ],
)
def test_settings_check(value, expected):
    with override_settings(HOPWATCH=value):
        assert ids(check_settings()) == expected


def test_unknown_key_hint_suggests_the_right_one():
    with override_settings(HOPWATCH={"SAMPLE_RTE": 0.5}):
        (message,) = check_settings()
    assert "SAMPLE_RATE" in message.hint


@pytest.mark.parametrize(
    ("middleware", "installed", "expected"),
    [
        ([HW, "django.middleware.common.CommonMiddleware"], True, []),
        (["django.middleware.common.CommonMiddleware"], True, ["hopwatch.W001"]),
        (["django.middleware.common.CommonMiddleware", HW], True, ["hopwatch.W002"]),
        ([HW], False, ["hopwatch.W003"]),
        (["django.middleware.common.CommonMiddleware", HW], False, ["hopwatch.W002", "hopwatch.W003"]),
    ],
)
def test_middleware_check(middleware, installed, expected):
    apps_list = ["django.contrib.contenttypes", "django.contrib.auth"]
    if installed:
        apps_list.append("hopwatch")
    with override_settings(MIDDLEWARE=middleware, INSTALLED_APPS=apps_list):
        assert ids(check_middleware()) == expected


def test_logging_check_fires_when_lines_would_be_lost():
    logger = logging.getLogger("hopwatch-unconfigured")
    assert not logger.handlers
    with override_settings(HOPWATCH={"LOGGER_NAME": "hopwatch-unconfigured"}):
        assert ids(check_logging()) == ["hopwatch.W004"]
    with override_settings(HOPWATCH={"LOGGER_NAME": "hopwatch-unconfigured", "OUTPUT": "stdout"}):
        assert ids(check_logging()) == []
    with override_settings(HOPWATCH={"ENABLED": False, "LOGGER_NAME": "hopwatch-unconfigured"}):
        assert ids(check_logging()) == []
    assert ids(check_logging()) == []  # the test settings configure the hopwatch logger


def test_every_setting_is_documented_and_validated():
    from pathlib import Path

    from hopwatch.checks import _VALIDATORS
    from hopwatch.conf import DEFAULTS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    assert [key for key in DEFAULTS if f"| `{key}` |" not in doc] == []
    assert set(_VALIDATORS) == set(DEFAULTS)
