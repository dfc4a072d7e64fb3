"""The Hops panel in a real browser: headless Chromium, a real server on 127.0.0.1.

Serves a site with the toolbar on under uvicorn (the tests' toolbar site, and
on Django 5 the example site in debug mode, EXAMPLE_SITE_DEBUG=1), opens a page
in Debian's ``chromium`` (driven by ``chromedriver`` through selenium), clicks
"Hops" in the toolbar, waits for the panel the toolbar loads from its
``render_panel`` view, checks its rows against the server's hopwatch line for
the page, and saves a screenshot under ``.cache/``. ``python3 dev.py test``
installs chromium and chromium-driver with apt-get when they are missing;
without them this test skips, except under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import django
import pytest

from tests.helpers import stop_server

pytest.importorskip("debug_toolbar", reason="django-debug-toolbar is not installed")


ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".cache"

pytestmark = [pytest.mark.slow]

#: The page: an async view behind startproject's middleware (15 hops under ASGI),
#: plus the toolbar's own two (show_toolbar, the SQL panel's set-up).
PAGE_HOPS = 15
TOOLBAR_HOPS = 2

#: (name, the page's path and route); the example site's endpoints need Django 5.
SITES = [("tests", "/page/")]
if django.VERSION >= (5, 0):
    SITES.append(("example", "/"))


@pytest.fixture(scope="module", params=SITES, ids=[name for name, _ in SITES])
def site(request, tmp_path_factory) -> Iterator[tuple[str, int, str, Path]]:
    """(name, port, page path, log file) of a site with the toolbar on, under uvicorn;
    the server stops by itself after two minutes."""
    from example_site.demo import free_port, prepare

    name, page = request.param
    var = tmp_path_factory.mktemp(f"{name}-site")
    log = var / "asgi.log"
    # This checkout's hopwatch first, not the one installed in the environment.
    pythonpath = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env = {**os.environ, "PYTHONPATH": pythonpath, "HOPWATCH_LOG": str(log)}
    port = free_port()
    if name == "example":
        env |= {
            "DJANGO_SETTINGS_MODULE": "example_site.settings",
            "EXAMPLE_SITE_VAR": str(var),
            "EXAMPLE_SITE_DEBUG": "1",
        }
        prepare(var, env)
        command = [sys.executable, "-m", "example_site.servers", "asgi", "--port", str(port)]
        command += ["--lifetime", "120"]
    else:
        env["DJANGO_SETTINGS_MODULE"] = "tests.toolbar_site.settings"
        command = [sys.executable, "-m", "tests.toolbar_site.serve", str(port), "120"]
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        _wait_until_up(port)
        yield name, port, page, log
    finally:
        stop_server(server, 15)


def _wait_until_up(port: int, timeout: float = 30.0) -> None:
    """Until the server answers (with the toolbar's script: its static files are served)."""
    url = f"http://127.0.0.1:{port}/static/debug_toolbar/js/toolbar.js"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                reply.read()
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    pytest.fail(f"the server did not answer {url}")


def test_the_hops_panel_renders_in_the_toolbar(site, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    name, port, page, log = site
    driver.get(f"http://127.0.0.1:{port}{page}")
    wait = WebDriverWait(driver, 30)
    # django-debug-toolbar 8 draws itself in #djDebugRoot's shadow root; 6 in the page.
    root = wait.until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#djDebugRoot, #djDebug"))
    )
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
    version = f"django{django.VERSION[0]}{django.VERSION[1]}"
    shot = ARTIFACTS / f"debug-toolbar-hops-panel-{name}-site-{version}.png"
    assert driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000

    # What the browser shows is what the server's line says for the page.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    (line,) = [line for line in lines if line["route"] == page]
    assert line["hops"] == PAGE_HOPS + TOOLBAR_HOPS
    assert (len(rows), len(tool_rows)) == (PAGE_HOPS, TOOLBAR_HOPS)
    assert summary.text == str(PAGE_HOPS)
    assert title == "Hops"
    # Drawn before the response's close() hop: one fewer, and it says so.
    assert subtitle.startswith(f"{PAGE_HOPS - 1} hops so far, ")
    last_site = rows[-1].find_elements(By.TAG_NAME, "td")[3].text
    assert " ".join(last_site.split()) == "HttpResponse.close after the toolbar"


def _visible(root, selector: str):
    from selenium.webdriver.common.by import By

    found = root.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found and found[0].is_displayed() else False
