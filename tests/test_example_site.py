"""The example site and the demo, end to end: real servers on 127.0.0.1, real traffic.

Runs the demo shortened (3 requests per endpoint), then checks that the report
ranks first the endpoint the example site makes worst, and pins every example
endpoint's hop count from the captured log lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Not marked slow (~10 s): it pins the example site's counts on every Django.

#: (interface, route) -> hops per request, measured on Django 5.2.
EXPECTED_HOPS = {
    ("asgi", "/hello/"): 15,  # startproject's 13 MiddlewareMixin hooks + request_started + close
    ("asgi", "/hello-sync/"): 16,  # + the sync view in a thread
    ("asgi", "/products/one-by-one/"): 36,  # 15 + the id list + 20 aget()
    ("asgi", "/products/"): 16,  # 15 + one query
    ("asgi", "/products/<int:pk>/"): 16,  # 15 + afirst()
    ("asgi", "/mw/legacy/"): 5,  # the chain runs sync: in, out to the view, process_view
    ("asgi", "/mw/rewrite/"): 15,  # the async-capable rewrite adds nothing
    ("asgi", "/export/sync-iterator/"): 17,  # sync view + the sync iterator
    ("asgi", "/export/"): 16,  # 15 + the async iterator's query
    ("asgi", "/orders/sync-receiver/"): 16,  # 15 + the sync receiver
    ("asgi", "/orders/"): 15,  # an async receiver: no hop
    ("asgi", "/boom/"): 18,  # 15 + process_exception_by_middleware, response_for_exception, log_response
    ("wsgi", "/under-wsgi/"): 1,  # async view under WSGI: one async_to_sync, a new event loop
}


#: Hops a view makes beyond what the audit predicts for "a view that returns a plain
#: response" (the audit models the middleware chain, the handler and the signals Django
#: sends, not what the view's own code does).
OWN_HOPS = {
    "/products/one-by-one/": 21,  # the id list + 20 aget()
    "/products/": 1,  # one query
    "/products/<int:pk>/": 1,  # afirst()
    "/export/sync-iterator/": 1,  # the sync iterator, consumed in a thread
    "/export/": 1,  # the async iterator's query
    "/orders/sync-receiver/": 1,  # the sync receiver of the view's own signal
    "/boom/": 3,  # process_exception_by_middleware, response_for_exception, log_response
}
LEGACY = "example_site.shop.middleware.LegacyAuditMiddleware"
REWRITE = "example_site.shop.middleware.AuditMiddleware"

#: Run under the example site's own settings: the audit's predictions for the three
#: middleware stacks example_site/asgi.py serves, and whether each route's view is async.
AUDIT_SCRIPT = f"""
import json, django
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.urls import get_resolver, resolve
django.setup()
from hopwatch import audit
stacks = {{"default": [], "legacy": [{LEGACY!r}], "rewrite": [{REWRITE!r}]}}
out = {{"predicted": {{}}, "async_view": {{}}}}
for name, extra in stacks.items():
    report = audit.audit_settings([*settings.MIDDLEWARE, *extra])
    out["predicted"][name] = {{
        f"{{interface}} {{kind}}": report.predicted(interface, kind)
        for interface in audit.INTERFACES for kind in ("async_view", "sync_view")
    }}
for pattern in get_resolver().url_patterns:
    route = "/" + str(pattern.pattern)
    view = resolve(route.replace("<int:pk>", "1")).func
    out["async_view"][route] = iscoroutinefunction(view)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def audited():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "example_site.settings"}
    result = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    var = tmp_path_factory.mktemp("demo-var")
    command = [sys.executable, "-m", "example_site.demo", "--requests", "3", "--concurrency", "4"]
    command += ["--var", str(var), "--format", "json", "--lifetime", "120"]
    # Debug mode asked for in the caller's shell: the demo's measured servers run
    # without it anyway (with the toolbar, every ASGI endpoint would count 2 more hops).
    env = {**os.environ, "EXAMPLE_SITE_DEBUG": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report, end = json.JSONDecoder().raw_decode(result.stdout, result.stdout.index("{"))
    # after the report, where the same report was written as a page
    assert result.stdout[end:].strip() == (
        "demo: the same report as a page, with timelines (open it in a browser):\n"
        f"demo:   {var / 'report.html'}"
    )
    lines = []
    for name in ("asgi.log", "wsgi.log"):
        lines += [json.loads(line) for line in (var / name).read_text().splitlines()]
    return report, lines, var


def test_every_example_endpoint_makes_its_pinned_number_of_hops(demo):
    _report, lines, _var = demo
    seen = defaultdict(set)
    for line in lines:
        seen[(line["interface"], line["route"])].add(line["hops"])
    # 3 requests per endpoint, plus the readiness probe of each server
    assert {key: hops for key, hops in seen.items()} == {
        key: {hops} for key, hops in EXPECTED_HOPS.items()
    }
    under_wsgi = [line for line in lines if line["route"] == "/under-wsgi/"]
    assert all(line["new_loops"] == 1 for line in under_wsgi)
    legacy = [line for line in lines if line["route"] == "/mw/legacy/"]
    assert all(line["pinned_ms"] > 0 for line in legacy)
    assert {line["pinned_by"] for line in legacy} == {"example_site.shop.middleware.LegacyAuditMiddleware"}
    assert all(line["pinned_ms"] == 0 for line in lines if line["route"] == "/mw/rewrite/")


def test_the_audit_predicts_every_example_endpoint(demo, audited):
    """The audit's prediction plus the view's own hops is what the servers measured."""
    _report, lines, _var = demo
    measured = {(line["interface"], line["route"]): line["hops"] for line in lines}
    assert set(measured) == set(EXPECTED_HOPS)
    for (interface, route), hops in measured.items():
        stack = {"/mw/legacy/": "legacy", "/mw/rewrite/": "rewrite"}.get(route, "default")
        kind = "async_view" if audited["async_view"][route] else "sync_view"
        predicted = audited["predicted"][stack][f"{interface} {kind}"]
        assert (route, predicted + OWN_HOPS.get(route, 0)) == (route, hops)


def test_the_demo_writes_the_report_as_a_page_with_timelines(demo):
    report, lines, var = demo
    page = (var / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    table = page.split('id="endpoint-table"', 1)[1].split("</table>", 1)[0]
    assert table.count('<tr data-i="') == len(report["rows"])
    assert all("detail" in line for line in lines)  # the demo's servers log in detail mode
    # a timeline for each of the first ten endpoints
    assert page.count('<figure class="timeline-figure" ') == min(10, len(report["rows"]))


def test_the_report_ranks_the_n_plus_one_endpoint_worst(demo):
    report, lines, var = demo
    assert report["summary"]["records"] == len(lines)
    assert report["summary"]["skipped"] == 0
    # The demo's report ranks by crossing overhead in all: that order is the host's,
    # so only the order is checked against the report's own numbers...
    assert report["sort"] == "overhead"
    totals = [row["overhead_ms"]["total"] for row in report["rows"]]
    assert totals == sorted(totals, reverse=True)
    # ... and the ranking that does not depend on timing names the N+1 endpoint.
    result = subprocess.run(
        [sys.executable, "-m", "hopwatch", "report", "--sort", "hops", "--format", "json",
         str(var / "asgi.log"), str(var / "wsgi.log")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    worst = json.loads(result.stdout)["rows"][0]
    assert (worst["method"], worst["route"]) == ("GET", "/products/one-by-one/")
    assert worst["hops"]["mean"] == 36


def test_the_report_prices_hops_at_the_hop_tax_the_servers_measured(demo):
    report, lines, _var = demo
    priced = [line for line in lines if "hop_tax_us" in line]
    # measured in a background thread at start-up: the first lines may come before it
    assert len(priced) >= len(lines) // 2 and all(line["hop_tax_us"] > 0 for line in priced)
    taxes = [line["hop_tax_us"] for line in priced]
    assert report["summary"]["hop_tax"] == {
        "source": "lines",
        "min_us": min(taxes),
        "max_us": max(taxes),
        "records": len(priced),
    }
    for row in report["rows"]:
        if row["kind"] != "endpoint":  # "(no view)" rows have no route to match
            continue
        mine = [line for line in priced if (line["method"], line["route"]) == (row["method"], row["route"])]
        if not mine:
            assert row["hop_tax_ms"] is None
            continue
        expected = sum(line["hops"] * line["hop_tax_us"] for line in mine) / len(mine) / 1000
        assert row["hop_tax_ms"]["records"] == len(mine)
        assert row["hop_tax_ms"]["mean"] == pytest.approx(expected, abs=0.0011)


def _servers_running(var: Path) -> list[str]:
    """The example-site servers still running that log into ``var`` (this demo's).

    Another checkout's test run on the same machine may have its own demo up:
    those are not this demo's to stop (a machine-wide check failed when two
    suites ran at once).
    """
    proc = Path("/proc")
    if not proc.is_dir():  # no /proc: fall back to any example-site server at all
        result = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
        return [line for line in result.stdout.splitlines() if "example_site.servers" in line]
    found = []
    for entry in proc.iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes() if b"example_site.servers" in cmdline else b""
        except OSError:  # gone, or not ours to read
            continue
        if environ and f"HOPWATCH_LOG={var}".encode() in environ:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_the_demo_leaves_no_server_running(demo):
    _report, _lines, var = demo
    assert _servers_running(var) == []


DEBUG_MODE_SCRIPT = """
import json, django
django.setup()
from django.conf import settings
from django.urls import get_resolver
print(json.dumps({
    "debug": settings.DEBUG,
    "toolbar": "debug_toolbar" in settings.INSTALLED_APPS,
    "panel": "hopwatch.contrib.debug_toolbar.HopsPanel" in getattr(settings, "DEBUG_TOOLBAR_PANELS", []),
    "middleware": settings.MIDDLEWARE[:2],
    "routes": sorted(str(p.pattern) for p in get_resolver().url_patterns if str(p.pattern) in ("", "^__debug__/")),
}))
"""


@pytest.mark.parametrize("flag", [None, "1"])
def test_debug_mode_is_a_settings_flag(flag):
    """EXAMPLE_SITE_DEBUG=1 turns on the toolbar with hopwatch's panel; otherwise it is off."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "example_site.settings"}
    env.pop("EXAMPLE_SITE_DEBUG", None)
    if flag:
        env["EXAMPLE_SITE_DEBUG"] = flag
    result = subprocess.run(
        [sys.executable, "-c", DEBUG_MODE_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    if flag:
        assert found == {
            "debug": True,
            "toolbar": True,
            "panel": True,
            "middleware": ["hopwatch.middleware.HopwatchMiddleware", "debug_toolbar.middleware.DebugToolbarMiddleware"],
            "routes": ["", "^__debug__/"],
        }
    else:
        assert found == {
            "debug": False,
            "toolbar": False,
            "panel": False,
            "middleware": ["hopwatch.middleware.HopwatchMiddleware", "django.middleware.security.SecurityMiddleware"],
            "routes": [],
        }


def test_a_request_cut_short_ends_the_demo_in_one_line_without_a_traceback(tmp_path):
    """With warnings made errors, Django's warning of the sync iterator under ASGI
    (/export/sync-iterator/) ends that response half-sent: the demo says so in one
    line, status 1, and stops its servers, with no traceback of its own."""
    var = tmp_path / "var"
    command = [sys.executable, "-m", "example_site.demo", "--requests", "1", "--concurrency", "4"]
    command += ["--var", str(var), "--lifetime", "120"]
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        "demo: 1 of 13 requests ended without a whole response:"
        " /export/sync-iterator/ (IncompleteRead(0 bytes read))"
    )
    # (the server's traceback of the warning is above it; none of the demo's own)
    assert str(ROOT / "example_site" / "demo.py") not in result.stderr
    assert "Traceback" not in result.stdout
    assert _servers_running(var) == []
