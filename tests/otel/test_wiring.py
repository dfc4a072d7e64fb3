"""How hopwatch.otel is switched on: only by its settings, at start-up, loudly when it can't."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from hopwatch.checks import OTEL_MIDDLEWARE_PATH, check_middleware, check_otel_middleware

ROOT = Path(__file__).resolve().parents[2]
HW = "hopwatch.middleware.HopwatchMiddleware"

# A process that starts Django, serves one request with the test client and says
# which OpenTelemetry modules it imported and what hopwatch installed.
_PROCESS = """
import json, sys
{prelude}
import django
django.setup()
from django.test import Client
from hopwatch import _recorder, middleware
Client().get("/async/")
print(json.dumps({{
    "modules": sorted(m for m in sys.modules if m.startswith(("opentelemetry", "hopwatch.otel"))),
    "sinks": [type(getattr(s, "__self__", s)).__name__ for s in _recorder._sinks],
    "begin_hooks": [h.__name__ for h in middleware.begin_hooks],
}}))
"""

_BLOCK_OPENTELEMETRY = """
class _NoOpenTelemetry:  # as if opentelemetry-api were not installed
    def find_spec(self, name, path, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoOpenTelemetry())
"""


def run_django(settings: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE=settings, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")])
    )
    env.pop("HOPWATCH_LOG", None)
    return subprocess.run(
        [sys.executable, "-c", _PROCESS.format(prelude=prelude)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_off_nothing_of_opentelemetry_is_imported_or_installed():
    result = run_django("tests.settings")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {"modules": [], "sinks": ["Emitter"], "begin_hooks": []}


def test_on_the_app_installs_it_at_start_up():
    result = run_django("tests.otel.settings_on")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert "hopwatch.otel" in seen["modules"]
    assert "opentelemetry.metrics" in seen["modules"] and "opentelemetry.trace" in seen["modules"]
    assert not any(m.startswith("opentelemetry.sdk") for m in seen["modules"])  # API only
    assert seen["sinks"] == ["Emitter", "_Sink"]
    assert seen["begin_hooks"] == ["_capture"]


def test_on_without_opentelemetry_start_up_fails_with_one_clear_message():
    result = run_django("tests.otel.settings_on", prelude=_BLOCK_OPENTELEMETRY)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert "pip install 'hopwatch[otel]'" in last
    # ... and off, the same process starts fine: nothing needs OpenTelemetry.
    result = run_django("tests.settings", prelude=_BLOCK_OPENTELEMETRY)
    assert result.returncode == 0, result.stderr


_OLD_OPENTELEMETRY = """
import opentelemetry.version
opentelemetry.version.__version__ = "1.29.0"  # as if an older opentelemetry-api were installed
"""


def test_on_with_an_opentelemetry_api_too_old_start_up_says_which_is_needed():
    result = run_django("tests.otel.settings_on", prelude=_OLD_OPENTELEMETRY)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert "opentelemetry-api 1.30 or newer, not 1.29.0" in last


@pytest.mark.parametrize(
    ("middleware", "spans", "expected"),
    [
        ([OTEL_MIDDLEWARE_PATH, HW, "django.middleware.common.CommonMiddleware"], True, []),
        ([OTEL_MIDDLEWARE_PATH, HW], False, []),
        ([HW, OTEL_MIDDLEWARE_PATH], True, ["hopwatch.W005"]),
        ([HW, OTEL_MIDDLEWARE_PATH], False, []),
        (
            ["django.middleware.common.CommonMiddleware", OTEL_MIDDLEWARE_PATH, HW],
            True,
            ["hopwatch.W002"],
        ),
    ],
)
def test_checks_opentelemetrys_middleware_belongs_above_hopwatchs(middleware, spans, expected):
    with override_settings(MIDDLEWARE=middleware, HOPWATCH={"OTEL_SPANS": spans}):
        found = [m.id for m in [*check_middleware(), *check_otel_middleware()]]
    assert found == expected


# OpenTelemetry's SDK as a project sets it up, its spans kept in memory; then one request
# under a request span: hopwatch's spans, each with its parent's name.
_SPANS_ALONE = """
import asyncio, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
import django
django.setup()
from django.test import AsyncClient

async def request():
    with trace.get_tracer("app").start_as_current_span("GET /async/"):
        return (await AsyncClient().get("/async/")).status_code

status = asyncio.run(request())
spans = exporter.get_finished_spans()
names = {s.context.span_id: s.name for s in spans}
print(json.dumps({
    "status": status,
    "otel": "hopwatch.otel" in sys.modules,
    "spans": sorted(  # hopwatch's, each with its parent's name
        [s.name, names.get(s.parent.span_id) if s.parent else None]
        for s in spans if s.instrumentation_scope.name == "hopwatch"
    ),
}))
"""


def test_otel_spans_alone_at_start_up_installs_it_and_exports_the_crossings(tmp_path):
    """``HOPWATCH = {"OTEL_SPANS": True}`` alone, no OTEL_METRICS: the app installs
    hopwatch.otel at start-up and each crossing is a span under the request's (nothing
    failed when the app installed it for OTEL_METRICS only)."""
    (tmp_path / "spans_alone_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f'MIDDLEWARE = ["{HW}"]\n'
        'HOPWATCH = {"OTEL_SPANS": True}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="spans_alone_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "src")]),
    )
    done = subprocess.run(
        [sys.executable, "-c", _SPANS_ALONE], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "status": 200,
        "otel": True,
        "spans": [
            ["sync_to_async HttpResponse.close", "GET /async/"],
            ["sync_to_async request_started", "GET /async/"],
        ],
    }
