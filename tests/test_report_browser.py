"""``hopwatch report --format html`` in a real browser: headless Chromium opens the page.

Lines come from real requests through Django's ASGI and WSGI handlers in detail
mode, one of them to a route and a cause whose names are HTML (a URL pattern and
a function named ``<script>...``), plus hand-written lines with hostile text in
every other field. The command writes the page; Chromium (Debian's ``chromium``,
driven by ``chromedriver`` through selenium, tests/browser.py) opens it from disk.
The table, the bars and the timelines are in the rendered DOM, sorting works,
nothing from the logs ran or became an element, nothing was fetched, and a
screenshot is kept under ``.cache/``. ``python3 dev.py test`` installs chromium
and chromium-driver with apt-get when they are missing; without them this test
skips, except under CI=true.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import django
import pytest
from asgiref.sync import sync_to_async
from django.http import HttpResponse
from django.test import override_settings
from django.urls import include, path, re_path

from hopwatch.report.text import clean
from tests.report.detail_samples import crossing, detailed_line, log_detail_requests

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".cache"

pytestmark = [pytest.mark.slow]

#: A URL pattern, and a function (so a cause), named with HTML that would run if injected.
EVIL_PATTERN = "^evil/<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>/$"
EVIL_PATH = "/evil/<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>/"


def _evil_work() -> None:
    return None


_evil_work.__qualname__ = "<script>window.__pwned=3</script>"
_evil_work.__module__ = '"><img src=x onerror="window.__pwned=4">'


async def evil_view(request):
    await sync_to_async(_evil_work)()
    return HttpResponse("evil")


urlpatterns = [
    re_path(EVIL_PATTERN, evil_view),
    path("", include("tests.testapp.urls")),
]

#: Hand-written lines: hostile text in the fields no request can set.
HOSTILE = "</script><script>window.__pwned=5</script><svg onload=window.__pwned=6><!--"
HAND_WRITTEN = detailed_line(
    [
        crossing(HOSTILE, 0.5, 0.2, 1.0, 0.1, kind="orm", call_site=f"{HOSTILE}.py:1 in f"),
        crossing("ok.after", 2.0, 0.1, 0.5, 0.1),
    ],
    route="/hand/<str:x>/",
    view=f"app.views.{HOSTILE}",
    request_id=f"'\"{HOSTILE}",
    pinned_by=HOSTILE,
    pinned_ms=0.4,
)


@pytest.fixture
def logged(tmp_path, transactional_db) -> tuple[Path, list[dict]]:
    """The lines of real requests (and the hand-written one), in a log file
    (transactional_db: the async ORM calls query from other threads)."""
    from tests.testapp.models import Item

    Item.objects.bulk_create([Item(name=f"item {i}") for i in range(4)])
    log = tmp_path / "app.log"
    with override_settings(ROOT_URLCONF=__name__):
        asgi = ["/nested/", "/orm/loop/", "/hops/3/", "/async/", EVIL_PATH, "/async/"]
        lines = log_detail_requests(log, asgi, ["/nested/"])
    with log.open("a") as file:
        file.write(HAND_WRITTEN + "\n")
    return log, [*lines, json.loads(HAND_WRITTEN)]


@pytest.fixture
def page(logged) -> Path:
    log, _lines = logged
    out = log.parent / "report.html"
    command = [sys.executable, "-m", "hopwatch", "report", str(log), "--format", "html"]
    done = subprocess.run(
        [*command, "-o", str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return out


def _texts(driver, selector: str) -> list[str]:
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)"
    return driver.execute_script(script, selector)


def test_the_page_renders_its_table_bars_and_timelines(page, logged, driver):
    from selenium.webdriver.common.by import By

    _log, lines = logged
    driver.get(page.as_uri())
    document = driver.execute_script(
        "return JSON.parse(document.getElementById('hopwatch-report').textContent)"
    )
    rows = driver.find_elements(By.CSS_SELECTOR, "#endpoint-table tbody tr")
    assert len(rows) == len(document["rows"]) == 6
    labels = _texts(driver, "#endpoint-table tbody td.l")
    assert labels == [clean(row["label"]) for row in document["rows"]]
    # a bar per endpoint: overhead and work drawn to scale, pinned time where there was any
    overhead = driver.find_elements(By.CSS_SELECTOR, "#endpoint-table .bar .seg.overhead")
    work = driver.find_elements(By.CSS_SELECTOR, "#endpoint-table .bar .seg.work")
    assert len(overhead) == len(work) == 6
    assert all(bar.rect["width"] > 0 for bar in overhead)
    assert driver.find_elements(By.CSS_SELECTOR, "#endpoint-table .bar .pinned")  # hand-written
    # the histogram counts every request read
    bars = driver.execute_script(
        "return [...document.querySelectorAll('svg.hist rect title')].map(t => t.textContent)"
    )
    assert sum(int(text.split()[0].replace(",", "")) for text in bars) == len(lines)
    # one timeline per endpoint: its slowest request. /nested/: ASGI's or WSGI's, drawn on
    # the two threads it ran on, a crossing per crossing of the line
    figures = driver.find_elements(By.CSS_SELECTOR, "figure.timeline-figure")
    assert len(figures) == 6
    (nested,) = [f for f in figures if f.find_element(By.TAG_NAME, "h3").text.startswith(
        "GET /nested/")]  # fmt: skip
    request_id = nested.find_element(By.CSS_SELECTOR, "figcaption .facts").text.split()[1]
    (line,) = [line for line in lines if line["request_id"] == request_id]
    assert line["route"] == "/nested/"
    crossings = nested.find_elements(By.CSS_SELECTOR, "g.crossing")
    assert len(crossings) == line["hops"] == len(line["detail"])
    lanes = [e.text for e in nested.find_elements(By.CSS_SELECTOR, "text.lane-name")]
    expected = {"asgi": ["event loop", "sync thread"], "wsgi": ["request thread", "new event loop"]}
    assert lanes == expected[line["interface"]]
    # hover: each crossing's cause and times
    tips = [e.get_attribute("textContent") for e in nested.find_elements(
        By.CSS_SELECTOR, "g.crossing > title")]  # fmt: skip
    assert sorted(tip.splitlines()[0] for tip in tips) == sorted(
        f"{c['direction']} · {c['kind']}: {c['site']}" for c in line["detail"]
    )
    assert all("queued" in tip and "handed back" in tip for tip in tips)
    # sorting: the requests column, largest first, then reversed
    header = driver.find_element(By.CSS_SELECTOR, "#endpoint-table th:nth-child(3) button")
    header.click()
    counts = [int(c) for c in _texts(driver, "#endpoint-table tbody td:nth-child(3)")]
    assert counts == sorted(counts, reverse=True) and counts[0] == 2  # /async/ twice
    header.click()
    counts = [int(c) for c in _texts(driver, "#endpoint-table tbody td:nth-child(3)")]
    assert counts == sorted(counts)
    # nothing was fetched: no file, font, image or script but the page itself
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0

    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(height + 120, 12_000))
    version = f"django{django.VERSION[0]}{django.VERSION[1]}"
    shot = ARTIFACTS / f"report-page-{version}.png"
    assert driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 50_000


#: The smallest text a chart may draw, in CSS pixels (its CSS size is 10 to 11 px).
SMALLEST_TEXT_PX = 9.5


def test_the_page_reads_on_a_phone_as_it_does_on_a_desktop(page, driver):
    """390 px wide: the page scrolls only down; a table or chart wider than the screen
    scrolls sideways in its own box, drawn at its size (not shrunk to 3 px text), and a
    heading breaks at spaces, not inside words. 1280 px: the same page as before."""
    driver.get(page.as_uri())
    measure = """
        const texts = [...document.querySelectorAll('svg.hist text, svg.timeline text')];
        const wide = [...document.querySelectorAll('.wide')];
        return {
          page: document.documentElement.scrollWidth, screen: window.innerWidth,
          charts: document.querySelectorAll('.wide > svg.hist, .wide > svg.timeline').length,
          tables: document.querySelectorAll('.wide > table.sortable').length,
          data: document.querySelectorAll('details.data > .wide > table').length,
          smallest: Math.min(...texts.map(
            t => t.getScreenCTM().a * parseFloat(getComputedStyle(t).fontSize))),
          scrolled: wide.filter(w => w.scrollWidth > w.clientWidth).length,
          within: wide.every(w => w.getBoundingClientRect().right <= window.innerWidth),
          breakAll: [...document.querySelectorAll('h3')].filter(
            h => getComputedStyle(h).wordBreak === 'break-all').length,
        };
    """
    driver.set_window_size(390, 900)
    phone = driver.execute_script(measure)
    assert phone["screen"] <= 390 and phone["page"] <= phone["screen"], phone  # was 1,061
    assert phone["tables"] == 2 and phone["charts"] == 1 + 6, phone
    assert phone["data"] == 2 + 6, phone  # the histogram's, the sparklines', each timeline's
    assert phone["smallest"] >= SMALLEST_TEXT_PX, phone
    assert phone["scrolled"] >= 2 and phone["within"], phone  # each box scrolls, not the page
    assert phone["breakAll"] == 0, phone
    driver.set_window_size(1280, 900)
    desktop = driver.execute_script(measure)
    assert desktop["page"] <= desktop["screen"] and desktop["smallest"] >= SMALLEST_TEXT_PX
    # the boxes scroll nothing at this width: the tables' headers stay sticky to the page
    overflow = (
        "return [...document.querySelectorAll('.wide')].map(w => getComputedStyle(w).overflowX)"
    )
    assert set(driver.execute_script(overflow)) == {"visible"}


def test_log_content_is_shown_as_text_and_never_runs(page, logged, driver):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _log, lines = logged
    (evil,) = [line for line in lines if "evil" in line["route"]]
    assert evil["route"] == EVIL_PATH  # the regex route, as hopwatch writes it (no anchors)
    evil_site = next(s["site"] for s in evil["sites"] if s["kind"] == "other")
    assert evil_site == '"><img src=x onerror="window.__pwned=4">.<script>window.__pwned=3</script>'

    driver.get(page.as_uri())
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018
    found = driver.execute_script(
        """
        const all = [...document.querySelectorAll('*')];
        return {
          scripts: document.scripts.length,
          injected: document.querySelectorAll('img, iframe, object, embed, link, base, form').length,
          handlers: all.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
          svgs: [...document.querySelectorAll('svg')].filter(s => !s.getAttribute('class')).length,
        };
        """
    )
    assert found == {"scripts": 2, "injected": 0, "handlers": 0, "svgs": 0}
    # the hostile names are there, as text: in the table, the causes and the timelines
    labels = _texts(driver, "#endpoint-table tbody td.l")
    assert clean(f"GET {evil['route']}") in labels
    assert clean("GET /hand/<str:x>/") in labels
    body = driver.execute_script("return document.body.textContent")
    assert clean(HOSTILE) in body and clean(evil_site) in body
    tips = " ".join(_texts(driver, "figure g.crossing > title"))
    assert clean(evil_site) in tips and clean(f"{HOSTILE}.py:1 in f") in tips
    captions = " ".join(e.text for e in driver.find_elements(By.TAG_NAME, "figcaption"))
    assert clean(f"request '\"{HOSTILE}") in captions
    # and in the embedded report, exactly as logged
    document = driver.execute_script(
        "return JSON.parse(document.getElementById('hopwatch-report').textContent)"
    )
    assert {row["route"] for row in document["rows"]} >= {evil["route"], "/hand/<str:x>/"}


# --- accessibility (WCAG 2.1 AA): what axe-core checks, measured here without it ----------
_OPEN_DETAILS = "document.querySelectorAll('details').forEach(d => { d.open = true; })"


def test_text_has_aa_contrast_against_what_it_is_drawn_on(page, driver):
    """Every piece of text (links, the notes' code, the folded tables included) is at least
    4.5:1 against the background behind it, from the computed styles (links were the
    chart blue, 4.2:1; code in a note 4.4:1). SVG text is the charts', named and given as
    text elsewhere."""
    driver.get(page.as_uri())
    driver.execute_script(_OPEN_DETAILS)
    low = driver.execute_script(
        """
        function rgb(value) { return value.match(/[\\d.]+/g).map(Number); }
        function luminance([r, g, b]) {
          return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
          function lin(c) { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; }
        }
        function behind(element) {
          for (let e = element; e; e = e.parentElement) {
            const colour = rgb(getComputedStyle(e).backgroundColor);
            if (colour.length < 4 || colour[3] > 0) { return colour; }
          }
          return [255, 255, 255];
        }
        const low = [];
        let checked = 0;
        for (const e of document.body.querySelectorAll('*')) {
          if (e.closest('svg, script, style')) { continue; }
          const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
          if (!own || !e.getClientRects().length) { continue; }
          const a = luminance(rgb(getComputedStyle(e).color)), b = luminance(behind(e));
          const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
          checked++;
          if (ratio < 4.5) { low.push([e.tagName, e.className, ratio.toFixed(2)]); }
        }
        return {checked: checked, low: low.slice(0, 10),
                links: document.querySelectorAll('nav a').length,
                codeInNotes: document.querySelectorAll('.note code').length};
        """
    )
    assert low["links"] == 4 and low["codeInNotes"] >= 1, low  # the two that were below
    assert low["checked"] > 200 and low["low"] == [], low


def test_boxes_that_scroll_sideways_take_the_focus_and_are_named(page, driver):
    """390 px: each box that scrolls sideways can be scrolled from the keyboard: it takes
    the focus itself (a chart, a folded table: named, and outlined when focused) or holds
    something that does (the sortable tables' header buttons)."""
    driver.get(page.as_uri())
    driver.set_window_size(390, 900)
    driver.execute_script(_OPEN_DETAILS)
    boxes = driver.execute_script(
        """
        return [...document.querySelectorAll('.wide')]
          .filter(w => w.scrollWidth > w.clientWidth)
          .map(w => ({stop: w.tabIndex === 0 && w.hasAttribute('tabindex'),
                      inside: w.querySelectorAll('button, a[href], [tabindex]').length,
                      chart: !!w.querySelector(':scope > svg')}));
        """
    )
    assert sum(box["chart"] for box in boxes) == 1 + 6, boxes  # the histogram, 6 timelines
    assert all(box["stop"] or box["inside"] for box in boxes), boxes
    assert all(box["stop"] for box in boxes if box["chart"]), boxes
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    stops = driver.find_elements(By.CSS_SELECTOR, ".wide[tabindex='0']")
    names = [stop.accessible_name for stop in stops]
    assert all(names) and all(stop.aria_role == "group" for stop in stops), names
    timelines = [name for name in names if name.startswith("timeline of ")]
    assert len(timelines) == len(set(timelines)) == 6, timelines
    # reached with the tab key, the box shows where the focus is
    driver.execute_script("document.querySelector('#hops p').setAttribute('tabindex', '-1');"
                          "document.querySelector('#hops p').focus()")  # fmt: skip
    driver.switch_to.active_element.send_keys(Keys.TAB)
    focused = driver.execute_script(
        "const e = document.activeElement; const style = getComputedStyle(e);"
        "return [e.className, e.matches(':focus-visible'), style.outlineStyle,"
        " parseFloat(style.outlineWidth)]"
    )
    assert focused[:3] == ["wide", True, "solid"] and focused[3] >= 2, focused


def test_every_chart_is_named_and_what_hovering_shows_is_text(page, logged, driver):
    """The charts' hover titles are no use from the keyboard or to a screen reader: each
    chart is named for what it shows (which endpoint, which request), a sparkline's name
    holds its counts, and the histogram's bins and each timeline's crossings (cause, call
    site, times) are tables folded under them."""
    from selenium.webdriver.common.by import By

    _log, lines = logged
    driver.get(page.as_uri())
    # the timelines: one name each, saying which request; a row per crossing of the drawing
    figures = driver.find_elements(By.CSS_SELECTOR, "figure.timeline-figure")
    names = [f.find_element(By.CSS_SELECTOR, "svg.timeline").accessible_name for f in figures]
    assert len(figures) == len(set(names)) == 6, names
    for figure, name in zip(figures, names, strict=True):
        caption = figure.find_element(By.CSS_SELECTOR, "figcaption .facts").get_attribute(
            "textContent"
        )
        assert caption.split(" · ")[0][:40] in name, (caption, name)  # "request ID"
        tips = [t.get_attribute("textContent") for t in figure.find_elements(
            By.CSS_SELECTOR, "g.crossing > title")]  # fmt: skip
        assert f"{len(tips)} crossings" in name
        drawn = set()
        for tip in tips:
            head, *rest = tip.splitlines()
            direction, cause = head.split(" · ", 1)
            call_site = rest.pop(0).removeprefix("called from ") if len(rest) == 3 else ""
            times = rest[0].replace(";", ",").split(", ")
            drawn.add((cause, direction, call_site, *(t.split()[-2] for t in times)))
        summary = figure.find_element(By.CSS_SELECTOR, "details.data > summary")
        assert summary.get_attribute("textContent") == f"the {len(tips)} crossings as a table"
        assert driver.execute_script("return arguments[0].tabIndex", summary) == 0
        rows = driver.execute_script(
            "return [...arguments[0].querySelectorAll('details.data tbody tr')].map("
            "r => [...r.cells].map(c => c.textContent))",
            figure,
        )
        listed = {(r[1], r[2], r[3], r[0], r[5], r[6], r[7]) for r in rows}
        assert len(rows) == len(tips) and listed == drawn, (rows, tips)
    # the sparklines: each named for its endpoint, with its counts
    sparks = driver.find_elements(By.CSS_SELECTOR, "#endpoint-table svg.spark")
    spark_names = [spark.accessible_name for spark in sparks]
    assert len(sparks) == len(set(spark_names)) == 6, spark_names
    for spark, name in zip(sparks, spark_names, strict=True):
        for tip in [t.get_attribute("textContent") for t in spark.find_elements(
                By.TAG_NAME, "title")]:  # fmt: skip
            count, _requests, _made, hops, _hops = tip.split()
            assert f"{hops} hop" in name and f": {count} request" in name, (tip, name)
    # the histogram: its bins as a table, every request read; each endpoint's sparkline too
    assert driver.find_element(By.CSS_SELECTOR, "svg.hist").accessible_name
    counts = _texts(driver, "#hops details.data:first-of-type tbody td:nth-child(2)")
    assert sum(int(count.replace(",", "")) for count in counts) == len(lines)
    assert len(_texts(driver, "#hops details.data:nth-of-type(2) tbody tr")) == 6


def _fill_colours(pdf: bytes) -> set[tuple[float, float, float]]:
    """The fill colours (``r g b rg``) a PDF's content streams set."""
    import re
    import zlib

    found = set()
    # The stream's data runs to its end-of-line before ``endstream``; a decompressor object
    # ignores that end-of-line. (Stripping an optional ``\r`` there took the data's own last
    # byte whenever it was 0x0D, 1 stream in 256: that stream then failed to decompress and
    # its colours were missing, and this test failed now and then.)
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            content = zlib.decompressobj().decompress(match.group(1))
        except zlib.error:
            continue
        for colour in re.findall(rb"([\d.]+) ([\d.]+) ([\d.]+) rg\b", content):
            found.add(tuple(float(part) for part in colour))  # type: ignore[arg-type]
    return found


def test_printing_keeps_the_bars_and_the_legends_colours(page, driver):
    """Printed (or saved as PDF) with the browser's defaults, which leave CSS backgrounds
    out: the per-request bars and the legends' swatches are backgrounds, and they print.
    The SVG charts are taken off the page first: they print anyway, in the same colours."""
    import base64

    from selenium.webdriver.common.print_page_options import PrintOptions

    driver.get(page.as_uri())
    driver.execute_script("document.querySelectorAll('svg').forEach(s => s.remove())")
    pdf = base64.b64decode(driver.print_page(PrintOptions()))
    assert pdf.startswith(b"%PDF")
    colours = _fill_colours(pdf)
    wanted = {"overhead": "e8590c", "work": "1c7ed6", "pinned": "9c36b5", "track": "e9ecef",
              "queued (legend)": "f59f00", "running async (legend)": "2f9e44"}  # fmt: skip
    for what, hex_colour in wanted.items():
        rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        assert any(all(abs(a - b) < 0.003 for a, b in zip(rgb, c, strict=True)) for c in colours), (
            what, sorted(colours))  # fmt: skip
    adjust = "return getComputedStyle(document.querySelector(arguments[0])).printColorAdjust"
    assert driver.execute_script(adjust, "#endpoint-table .seg") == "exact"
    assert driver.execute_script(adjust, ".swatch") == "exact"


def test_a_time_too_short_for_a_pixel_still_shows_in_its_bar(tmp_path, driver):
    """An endpoint whose crossings cost 2 µs of overhead, beside one whose request takes
    two seconds: at that scale its overhead is 0.0001% of the bar, and drew no pixel
    (the table said 0.002 ms, the bar showed none); its pinned thread the same. A time
    above zero keeps a sliver."""
    from selenium.webdriver.common.by import By

    log = tmp_path / "app.log"
    log.write_text(
        detailed_line([crossing("app.tiny", 0.1, 0.001, 0.01, 0.001)], route="/tiny/",
                      pinned_by="app.tiny", pinned_ms=0.002) + "\n"
        + detailed_line([crossing("app.long", 0.1, 0.5, 2000.0, 0.5)], route="/long/") + "\n"
    )  # fmt: skip
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "hopwatch", "report", str(log), "--format", "html", "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    driver.get(out.as_uri())
    rows = driver.find_elements(By.CSS_SELECTOR, "#endpoint-table tbody tr")
    (tiny,) = [row for row in rows if "/tiny/" in row.text]
    (overhead,) = tiny.find_elements(By.CSS_SELECTOR, ".bar .seg.overhead")
    assert overhead.rect["width"] >= 1
    (pinned,) = tiny.find_elements(By.CSS_SELECTOR, ".bar .pinned")
    assert pinned.rect["width"] >= 1


# --- what a probe of the page found ---------------------------------------------------------
def _report(log: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hopwatch", "report", str(log), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _page_of(log: Path, *options: str) -> Path:
    out = log.parent / "report.html"
    done = _report(log, "--format", "html", "-o", str(out), *options)
    assert done.returncode == 0, done.stderr
    return out


def test_the_folded_sparklines_table_wraps_in_the_window(tmp_path, transactional_db, driver):
    """One endpoint whose requests made 1 to 40 crossings: its row of the folded table of
    the sparklines is one long line of counts. It wraps in its column: opening it does
    not make the page scroll sideways (it was 2,566 px wide in a 1,385 px window)."""
    log = tmp_path / "app.log"
    lines = log_detail_requests(log, [], [f"/hops/{n}/" for n in range(40)])
    assert sorted(line["hops"] for line in lines) == list(range(1, 41))
    driver.get(_page_of(log).as_uri())
    window = driver.execute_script("return document.documentElement.clientWidth")
    assert driver.execute_script("return document.documentElement.scrollWidth") == window
    driver.execute_script(_OPEN_DETAILS)
    measured = driver.execute_script(
        """
        const cell = document.querySelector('table.sparks tbody td:nth-child(2)');
        return {page: document.documentElement.scrollWidth, cell: cell.textContent,
                whiteSpace: getComputedStyle(cell).whiteSpace,
                lines: Math.round(cell.getBoundingClientRect().height
                                  / parseFloat(getComputedStyle(cell).lineHeight))};
        """
    )
    assert measured["page"] == window, measured
    assert measured["whiteSpace"] == "normal" and measured["lines"] >= 2, measured
    assert measured["cell"].startswith("1 hop: 1 request; 2 hops: 1 request;"), measured


def test_forced_colours_keep_the_bars_and_the_legends(page, driver):
    """A forced-colours theme (Windows' contrast themes, emulated through DevTools) paints
    every background in its one background colour: the per-request bars and the legends'
    swatches, backgrounds, vanished (each white on white). They keep their colours."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "forced-colors", "value": "active"}]},
    )
    driver.get(page.as_uri())
    drawn = driver.execute_script(
        """
        const out = {forced: matchMedia('(forced-colors: active)').matches};
        for (const selector of ['#endpoint-table .bar .track', '#endpoint-table .seg.overhead',
            '#endpoint-table .seg.work', '#endpoint-table .bar .pinned', '.swatch.overhead',
            '.swatch.work', '.swatch.pinned', '.swatch.track', '.swatch.wait', '.swatch.s2a',
            '.swatch.a2s', '.swatch.handoff']) {
          out[selector] = getComputedStyle(document.querySelector(selector)).backgroundColor;
        }
        out.page = getComputedStyle(document.body).backgroundColor;
        return out;
        """
    )
    assert drawn == {
        "forced": True,
        "#endpoint-table .bar .track": "rgb(233, 236, 239)",
        "#endpoint-table .seg.overhead": "rgb(232, 89, 12)",
        "#endpoint-table .seg.work": "rgb(28, 126, 214)",
        "#endpoint-table .bar .pinned": "rgb(156, 54, 181)",
        ".swatch.overhead": "rgb(232, 89, 12)",
        ".swatch.work": "rgb(28, 126, 214)",
        ".swatch.pinned": "rgb(156, 54, 181)",
        ".swatch.track": "rgb(233, 236, 239)",
        ".swatch.wait": "rgb(245, 159, 0)",
        ".swatch.s2a": "rgb(28, 126, 214)",
        ".swatch.a2s": "rgb(47, 158, 68)",
        ".swatch.handoff": "rgb(232, 89, 12)",
        "page": "rgb(255, 255, 255)",
    }, drawn


def test_each_timeline_is_named_by_its_caption(page, driver):
    """A figure's caption is its first or last child (one in the middle is none): the
    heading and the request's facts are the caption, the figure's accessible name."""
    from selenium.webdriver.common.by import By

    driver.get(page.as_uri())
    figures = driver.find_elements(By.CSS_SELECTOR, "figure.timeline-figure")
    assert len(figures) == 6
    for figure in figures:
        children = driver.execute_script(
            "return [...arguments[0].children].map(e => e.localName)", figure
        )
        assert children[0] == "figcaption" and children.count("figcaption") == 1, children
        heading = figure.find_element(By.CSS_SELECTOR, "figcaption > h3").text
        facts = figure.find_element(By.CSS_SELECTOR, "figcaption > .facts").text
        assert figure.aria_role == "figure"
        assert figure.accessible_name == f"{heading} {facts}", figure.accessible_name


def test_one_of_a_thing_reads_in_the_singular(tmp_path, transactional_db, driver):
    """One request that made one crossing: "1 logged request", "half made 1 crossing",
    "1 request made 1 hop", "1 hop", "1 crossing" (each read "1 ...s")."""
    from selenium.webdriver.common.by import By

    log = tmp_path / "app.log"
    (line,) = log_detail_requests(log, [], ["/hops/0/"])
    assert line["hops"] == len(line["detail"]) == 1 and line["interface"] == "wsgi"
    driver.get(_page_of(log).as_uri())
    assert driver.find_element(By.CSS_SELECTOR, "#hops > p").text == (
        "1 logged request: half made 1 crossing or fewer, 95% made 1 or fewer."
    )
    assert _texts(driver, "svg.hist rect > title") == ["1 request (100.0%) made 1 hop"]
    assert _texts(driver, "svg.spark rect > title") == ["1 request made 1 hop"]
    (facts,) = _texts(driver, "figcaption .facts")
    assert facts.split(" · ")[5] == "1 hop", facts
    chart = driver.find_element(By.CSS_SELECTOR, "svg.timeline").accessible_name
    assert ": 1 crossing on 2 threads, listed" in chart, chart
    assert _texts(driver, "figure details.data > summary") == ["the 1 crossing as a table"]


#: Right-to-left letters in a request id (a line another logger wrote: the ids hopwatch
#: takes from X-Request-ID are ASCII).
RTL_ID = "طلب"


def test_right_to_left_text_from_a_log_reorders_nothing_around_it(tmp_path, driver):
    """The timeline's caption, ``request ID · time · status · interface · ...``: with an
    Arabic id the bidi algorithm drew it ``request 24-11-2026 · طلب T10:00...`` (the date
    reversed, before the id). Each value from the line is isolated: the pieces are drawn
    left to right in the order they are written."""
    log = tmp_path / "app.log"
    log.write_text(
        detailed_line([crossing("app.views.work", 0.5, 0.2, 1.0, 0.1)], request_id=RTL_ID) + "\n"
    )
    driver.get(_page_of(log).as_uri())
    pieces = [f"request {RTL_ID}", "2026-11-24T10:00:00.000Z", "status 200", "asgi"]
    where = driver.execute_script(
        """
        const caption = document.querySelector('figcaption .facts')
          || document.querySelector('figcaption');
        const texts = [], walker = document.createTreeWalker(caption, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) { texts.push(walker.currentNode); }
        // each word of each piece: where its first character is drawn
        return arguments[0].map(piece => piece.split(' ').map(word => {
          for (const node of texts) {
            const at = node.data.indexOf(word);
            if (at < 0) { continue; }
            const range = document.createRange();
            range.setStart(node, at); range.setEnd(node, at + word.length);
            return Math.round(range.getBoundingClientRect().left);
          }
          return null;
        }));
        """,
        pieces,
    )
    lefts = [left for words in where for left in words]
    assert None not in lefts and lefts == sorted(lefts) and len(set(lefts)) == len(lefts), (
        pieces, where)  # fmt: skip


def test_endpoint_makes_the_page_that_endpoints(logged, driver):
    """``--endpoint "GET /orm/loop/"``: the page had that one row in its table, but every
    endpoint's requests in "hops per request" and the timelines, every endpoint's causes
    in "top fixable causes" (another endpoint's first), and neither the endpoint's own
    causes nor what to change first, which the other formats give. Now all of it is that
    endpoint's, figure for figure what ``--format json --endpoint`` says."""
    from selenium.webdriver.common.by import By

    from hopwatch.report import text as fmt
    from hopwatch.report.table import cause_labels

    log, lines = logged
    label = "GET /orm/loop/"
    done = _report(log, "--format", "json", "--endpoint", label)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    (row,) = document["rows"]
    mine = [line for line in lines if line["route"] == "/orm/loop/"]
    assert row["label"] == label and row["requests"] == len(mine) == 1
    assert len(row["causes"]) >= 2 and document["fixable"]
    driver.get(_page_of(log, "--endpoint", label).as_uri())
    assert driver.title == f"hopwatch report: \u2068{label}\u2069, cause by cause"
    assert _texts(driver, "#endpoint-table tbody td.l") == [label]
    # its causes, every one the document lists, with the text's columns and figures
    headers = _texts(driver, "#cause-table thead th")
    assert headers == ["#", "cause", "kind", "direction", "call site", "requests", "hops/req",
                       "ovh/req", "overhead", "ovh %"]  # fmt: skip
    cells = driver.execute_script(
        "return [...document.querySelectorAll('#cause-table tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    names = cause_labels(row["causes"], directions=False)
    assert cells == [
        [str(rank), name, cause["kind"], cause["direction"], cause["call_site"] or "-",
         fmt.count(cause["requests"]), fmt.mean(cause["count"] / cause["requests"]),
         fmt.ms(cause["overhead_per_request"]), fmt.duration(cause["overhead_ms"]),
         fmt.percent(cause["overhead_share"])]
        for rank, (cause, name) in enumerate(zip(row["causes"], names, strict=True), 1)
    ]  # fmt: skip
    # what to change first: the document's fixable causes, in its order, as the text says
    items = _texts(driver, "ol.fixable > li")
    assert len(items) == len(document["fixable"])
    for item, cause in zip(items, document["fixable"], strict=True):
        assert item.startswith(fmt.short_site(cause["site"], None)), (item, cause)
        cost = f"{fmt.ms(cause['overhead_per_request'])} ms per request,"
        assert f"{cost} {fmt.duration(cause['overhead_ms'])} in all" in item, (item, cause)
    text = _report(log, "--format", "text", "--endpoint", label).stdout
    said = text.split(f"over the 1 request of {label}):\n")[1].splitlines()
    said = [line.split(". ", 1)[1] for line in said if line[:2] == "  " and line[2:3].isdigit()]
    assert [item[: len(line)] for item, line in zip(items, said, strict=True)] == said
    (heading,) = _texts(driver, "#causes h3")
    assert (
        heading
        == f"What to change first ranked by crossing overhead, over the 1 request of {label}"
    )
    # its requests only, in the histogram and its summary; its timeline only
    from hopwatch.report.picture import bin_label, hop_bin

    bars = _texts(driver, "svg.hist rect title")
    assert bars == [f"1 request (100.0%) made {bin_label(hop_bin(mine[0]['hops']))} hops"]
    assert driver.find_element(By.CSS_SELECTOR, "#hops > p").text.startswith("1 logged request: ")
    assert _texts(driver, "figure.timeline-figure h3") == [
        f"{label} its slowest request (hop time) with a detail list"
    ]
    facts = _texts(driver, "figcaption .facts")
    assert [text.split(" · ")[0] for text in facts] == [f"request {mine[0]['request_id']}"]
    # and nothing of the other endpoints' causes
    assert _texts(driver, "#causes h2") == [f"Causes of {label}, by crossing overhead"]
    shown = driver.execute_script("return document.querySelector('main, body').innerText")
    assert "/nested/" not in shown and "Top fixable causes" not in shown
