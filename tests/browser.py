"""Headless Chromium for the tests that open a page: Debian's ``chromium`` driven by its
``chromedriver`` through selenium, offline, with a fresh profile.

``python3 dev.py test`` installs chromium and chromium-driver with apt-get when they
are missing; without them a browser test skips, except under CI=true (it fails).
Use the fixtures by importing them into a test module: ``from tests.browser import
browser_paths, driver``.
"""

from __future__ import annotations

import os
import shutil

import pytest


def missing(reason: str) -> None:
    """Skip (or fail under CI=true) for a missing browser part."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(f"{reason}; python3 dev.py test installs it")


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing("Debian's chromium and chromium-driver are not installed")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing("selenium is not installed")
    return chromium, driver  # type: ignore[return-value]


@pytest.fixture
def driver(browser_paths, tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must not look anything up online
    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()
