"""The Hops panel in a real browser: the example site in debug mode, headless Chromium.

Serves the example site under uvicorn on 127.0.0.1 with EXAMPLE_SITE_DEBUG=1,
opens its index page in Debian's ``chromium`` (driven by ``chromedriver``
through selenium), clicks "Hops" in the toolbar, waits for the panel the
toolbar loads from its ``render_panel`` view, checks its rows against the
server's hopwatch line for the page, and saves a screenshot under ``.cache/``.
``python3 dev.py test`` installs chromium and chromium-driver with apt-get when
they are missing; without them this test skips, except under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import django
import pytest

pytest.importorskip("debug_toolbar", reason="django-debug-toolbar is not installed")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".cache"

pytestmark = [pytest.mark.slow]

#: The index page: an async view behind startproject's middleware (15 hops under
#: ASGI), plus the toolbar's own two (show_toolbar, the SQL panel's set-up).
INDEX_HOPS = 15
TOOLBAR_HOPS = 2


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(f"{reason}; python3 dev.py test installs it")


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        _missing("Debian's chromium and chromium-driver are not installed")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed")
    return chromium, driver  # type: ignore[return-value]


@pytest.fixture(scope="module")
def debug_site(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """The example site in debug mode under uvicorn; stops by itself after two minutes."""
    from example_site.demo import free_port, prepare, wait_until_up

    if django.VERSION < (5, 0):
        pytest.skip("the example site's signal endpoints use Signal.asend (Django 5.0+)")
    var = tmp_path_factory.mktemp("debug-site")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_site.settings",
        "EXAMPLE_SITE_VAR": str(var),
        "EXAMPLE_SITE_DEBUG": "1",
        "PYTHONPATH": str(ROOT),
        "HOPWATCH_LOG": str(var / "asgi.log"),
    }
    prepare(var, env)
    port = free_port()
    command = [sys.executable, "-m", "example_site.servers", "asgi", "--port", str(port)]
    server = subprocess.Popen([*command, "--lifetime", "120"], env=env, cwd=ROOT)
    try:
        wait_until_up(port, "asgi")
        yield port, var
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


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


def test_the_hops_panel_renders_in_the_toolbar(debug_site, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    port, var = debug_site
    driver.get(f"http://127.0.0.1:{port}/")
    wait = WebDriverWait(driver, 30)
    root = wait.until(expected_conditions.presence_of_element_located((By.ID, "djDebugRoot")))
    # django-debug-toolbar 8 draws itself in a shadow root; 6 in the page.
    in_shadow = driver.execute_script("return arguments[0].shadowRoot !== null", root)
    toolbar = root.shadow_root if in_shadow else driver

    button = wait.until(lambda _: _visible(toolbar, "#djdt-HopsPanel a.HopsPanel"))
    subtitle = toolbar.find_element(By.CSS_SELECTOR, "#djdt-HopsPanel small").text
    button.click()
    wait.until(lambda _: _visible(toolbar, "#HopsPanel table.hopwatch-hops"))

    rows = toolbar.find_elements(By.CSS_SELECTOR, "#HopsPanel table.hopwatch-hops tbody tr")
    tool_rows = toolbar.find_elements(
        By.CSS_SELECTOR, "#HopsPanel table.hopwatch-tool-hops tbody tr"
    )
    summary = toolbar.find_element(By.CSS_SELECTOR, "#HopsPanel table.hopwatch-summary td")
    title = toolbar.find_element(By.CSS_SELECTOR, "#HopsPanel .djDebugPanelTitle h3").text

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"debug-toolbar-hops-panel-django{django.VERSION[0]}{django.VERSION[1]}.png"
    assert driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000

    # What the browser shows is what the server's line says for the page.
    lines = [json.loads(line) for line in (var / "asgi.log").read_text().splitlines()]
    (line,) = [line for line in lines if line["route"] == "/"]
    assert line["hops"] == INDEX_HOPS + TOOLBAR_HOPS
    assert (len(rows), len(tool_rows)) == (INDEX_HOPS, TOOLBAR_HOPS)
    assert summary.text == str(INDEX_HOPS)
    assert title == "Hops"
    # Drawn before the response's close() hop: one fewer, and it says so.
    assert subtitle.startswith(f"{INDEX_HOPS - 1} hops so far, ")
    last_site = rows[-1].find_elements(By.TAG_NAME, "td")[3].text
    assert " ".join(last_site.split()) == "HttpResponse.close after the toolbar"


def _visible(root, selector: str):
    from selenium.webdriver.common.by import By

    found = root.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found and found[0].is_displayed() else False
