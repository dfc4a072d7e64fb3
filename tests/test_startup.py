"""What hopwatch does as a process starts: ENABLED read once, and the middleware
without the app. Each test is a new interpreter (start-up is what is tested), running
Django's real handlers through the test clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The hopwatch logger's records on standard error, as "LEVEL message".
_LOGGING = """
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"f": {"format": "%(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "f"}},
    "loggers": {
        "hopwatch": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": [], "propagate": False},
    },
}
"""


def run(tmp_path: Path, settings: str, script: str) -> tuple[dict, list[str]]:
    """``script`` in a new interpreter, after django.setup() with tests.settings and
    ``settings`` added: (the JSON its last stdout line holds, the hopwatch logger's
    records)."""
    (tmp_path / "probe_settings.py").write_text(
        "from tests.settings import *  # noqa\n" + _LOGGING + textwrap.dedent(settings)
    )
    code = "import django\ndjango.setup()\n" + textwrap.dedent(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "probe_settings"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr.splitlines()


_REQUESTS = """
import asyncio, json
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import AsyncClient, Client, override_settings
import hopwatch._django, hopwatch._patch

def requests():  # each with the profiling token
    Client().get("/sync/", headers={"X-Hopwatch-Profile-Token": "t" * 16})
    asyncio.run(AsyncClient().get("/async/", headers={"X-Hopwatch-Profile-Token": "t" * 16}))

def chains():  # the classes of the middleware each handler's chain runs, outermost first
    seen = []
    for handler in (WSGIHandler(), ASGIHandler()):
        names, link = [], handler._middleware_chain
        while link is not None:
            inner = getattr(link, "__wrapped__", link)  # convert_exception_to_response's
            names.append(type(inner).__name__)
            link = getattr(inner, "get_response", None)
        seen.append(names[:2])
    return seen

requests()
requests()  # new clients: new handlers, the middleware loaded again
before = [hopwatch._patch.is_installed(), hopwatch._django.is_installed()]
with override_settings(HOPWATCH={"ENABLED": True}):
    requests()
    chains_after = chains()
after = [hopwatch._patch.is_installed(), hopwatch._django.is_installed()]
print(json.dumps({"before": before, "after": after, "chains": [chains(), chains_after]}))
"""

#: The first two middleware of tests.settings' chain once hopwatch's has left it
#: (docs/settings.md, ENABLED: Django's MiddlewareNotUsed), for the WSGI and ASGI handler.
_WITHOUT_HOPWATCH = [["SecurityMiddleware", "SessionMiddleware"]] * 2


def test_enabled_false_at_start_up_is_off_for_the_process_and_says_nothing(tmp_path):
    """Before, every load of the middleware logged that 'hopwatch' was not in
    INSTALLED_APPS (it is), and override_settings(ENABLED=True) made it install asgiref's
    patch for the rest of the process, with wrong lines (interface "asgi" under the test
    client, two hops fewer)."""
    seen, logged = run(
        tmp_path,
        'HOPWATCH = {"ENABLED": False, "PROFILE_DIR": "profiles", "PROFILE_TOKEN": "t" * 16}',
        _REQUESTS,
    )
    assert seen == {
        "before": [False, False],
        "after": [False, False],
        "chains": [_WITHOUT_HOPWATCH, _WITHOUT_HOPWATCH],
    }
    assert logged == []  # no warning, no line
    assert not (tmp_path / "profiles").exists()  # no profile


def test_enabled_false_without_the_app_is_off_too(tmp_path):
    seen, logged = run(
        tmp_path,
        """
        HOPWATCH = {"ENABLED": False}
        INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "hopwatch"]
        """,
        _REQUESTS,
    )
    assert seen == {
        "before": [False, False],
        "after": [False, False],
        "chains": [_WITHOUT_HOPWATCH, _WITHOUT_HOPWATCH],
    }
    assert logged == []


def test_enabled_true_at_start_up_stays_on_under_override_settings(tmp_path):
    """Read once: override_settings(ENABLED=False) does not turn it off (lines go on)."""
    _, logged = run(
        tmp_path,
        "",
        """
        import asyncio, json
        from django.test import AsyncClient, override_settings
        with override_settings(HOPWATCH={"ENABLED": False}):
            asyncio.run(AsyncClient().get("/async/"))
        print(json.dumps({}))
        """,
    )
    (line,) = [json.loads(m.split(" ", 1)[1]) for m in logged]
    assert (line["interface"], line["hops"]) == ("test-async-client", 15)


_WITHOUT_THE_APP = 'INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "hopwatch"]'

_CHECK = """
import io
from django.core.management import call_command

def check():
    out = io.StringIO()
    call_command("check", stdout=out, stderr=out)
    return out.getvalue()
"""


def test_without_the_app_check_runs_once_the_middleware_is_loaded_and_says_so_once(tmp_path):
    """Before, a check run in a process that had loaded the middleware said nothing (the
    checks were registered only by the app), and W003 said request_started and
    response.close were not counted: they are."""
    seen, logged = run(
        tmp_path,
        _WITHOUT_THE_APP,
        _CHECK
        + textwrap.dedent(
            """
        import asyncio, json
        from django.core.handlers.asgi import ASGIHandler
        from tests.helpers import asgi_call, capture, sites
        before = check()  # nothing of hopwatch's imported yet: manage.py check's case
        with capture() as records:
            asyncio.run(asgi_call(ASGIHandler(), "/async/"))  # as a server: its one handler
            asyncio.run(asgi_call(ASGIHandler(), "/async/"))
        print(json.dumps({
            "before": before,
            "after": check(),
            "hops": [r.count for r in records],
            "sites": [sorted(k for k in sites(r) if "process_view" in k[1]) for r in records],
        }))
        """
        ),
    )
    assert "hopwatch" not in seen["before"]
    assert "(hopwatch.W003) hopwatch's middleware is in MIDDLEWARE but" in seen["after"]
    assert "request_started" not in seen["after"]
    assert seen["hops"] == [15, 15]  # request_started and close counted
    # What W003 says of the first handler's process_view (not fixable from the middleware:
    # Django adapted it before loading hopwatch's), and the next handler's name.
    assert seen["sites"] == [
        [["view", "django.middleware.csrf.process_view"]],
        [["middleware", "django.middleware.csrf.CsrfViewMiddleware.process_view"]],
    ]
    warnings = [m for m in logged if m.startswith("WARNING")]
    assert len(warnings) == 1 and warnings[0].endswith(
        "Add 'hopwatch' to INSTALLED_APPS. (hopwatch.W003)"
    )
    assert 'named as the view (kind "view", site "django.middleware.csrf.process_view")' in (
        warnings[0]
    )


_OVERRIDDEN_APPS = """
import json
from django.test import Client, override_settings
Client().get("/async/")
with override_settings(INSTALLED_APPS=[]):  # as Django's own test_client tests do
    Client().get("/async/")  # a new handler: the middleware loaded again
print(json.dumps({}))
"""


def _w003_and_lines(logged: list[str]) -> tuple[list[str], list[tuple[str, int]]]:
    warnings = [m for m in logged if m.startswith("WARNING")]
    lines = [json.loads(m.split(" ", 1)[1]) for m in logged if m.startswith("INFO")]
    return warnings, [(line["interface"], line["hops"]) for line in lines]


def test_override_settings_of_installed_apps_after_the_app_started_gives_no_w003(tmp_path):
    """The app started hopwatch; a request under override_settings(INSTALLED_APPS=[]) loaded
    the middleware, which said the app was missing (hopwatch.W003: "hopwatch installs
    itself only as Django loads its middleware"), false: it had started with the app."""
    _, logged = run(tmp_path, "", _OVERRIDDEN_APPS)
    warnings, lines = _w003_and_lines(logged)
    assert warnings == []
    assert lines == [("test-client", 1), ("test-client", 1)]


def test_without_the_app_override_settings_of_installed_apps_still_gives_w003_once(tmp_path):
    _, logged = run(tmp_path, _WITHOUT_THE_APP, _OVERRIDDEN_APPS)
    warnings, lines = _w003_and_lines(logged)
    assert len(warnings) == 1
    assert warnings[0].startswith("WARNING hopwatch's middleware is in MIDDLEWARE but")
    assert warnings[0].endswith("Add 'hopwatch' to INSTALLED_APPS. (hopwatch.W003)")
    # (the first: the test client's handler was loaded before hopwatch installed itself)
    assert lines == [("wsgi", 1), ("test-client", 1)]


def test_without_the_app_uninstall_stays_uninstalled_when_a_handler_loads_again(tmp_path):
    """Each load of the middleware without the app started hopwatch again: after
    hopwatch.uninstall(), the next test client's handler installed everything back."""
    seen, logged = run(
        tmp_path,
        _WITHOUT_THE_APP,
        """
        import json
        import hopwatch
        from django.test import Client
        Client().get("/async/")
        hopwatch.uninstall()
        Client().get("/async/")  # a new handler: the middleware loaded again
        print(json.dumps({"installed": hopwatch.is_installed()}))
        """,
    )
    assert seen == {"installed": False}
    assert _w003_and_lines(logged)[1] == [("wsgi", 1)]  # no line while uninstalled


def test_without_the_app_the_warning_is_silenced_with_its_check(tmp_path):
    _, logged = run(
        tmp_path,
        _WITHOUT_THE_APP + '\nSILENCED_SYSTEM_CHECKS = ["hopwatch.W003"]',
        """
        import json
        from django.test import Client
        Client().get("/sync/")
        print(json.dumps({}))
        """,
    )
    assert [m for m in logged if m.startswith("WARNING")] == []


_INSTALL_WHEN_DISABLED = """
import asyncio, json
import hopwatch, hopwatch._django
from django.test import AsyncClient, Client
from tests.helpers import asgi_request, wsgi_request

def requests():  # a test client's, a server's handler's, each interface
    Client().get("/sync/")
    asyncio.run(AsyncClient().get("/async/"))
    wsgi_request("/sync/")
    asgi_request("/async/")

requests()
hopwatch.install()
installed = [hopwatch.is_installed(), hopwatch._django.is_installed()]
requests()
hopwatch.uninstall()
print(json.dumps({"installed": installed,
                  "uninstalled": [hopwatch.is_installed(), hopwatch._django.is_installed()]}))
"""


@pytest.mark.parametrize("app", [True, False], ids=["app", "middleware-alone"])
def test_install_with_enabled_false_at_start_up_patches_asgiref_only(tmp_path, app):
    """``ENABLED`` False at start-up: ``hopwatch.install()`` is then what it is without
    Django (docs/how-it-works.md, the Python API): asgiref's adapters patched, nothing of
    what the app installs (Django's scopes, the request lines), so no request logs a
    line; ``uninstall()`` puts asgiref back."""
    seen, logged = run(
        tmp_path,
        'HOPWATCH = {"ENABLED": False}\n' + ("" if app else _WITHOUT_THE_APP),
        _INSTALL_WHEN_DISABLED,
    )
    assert seen == {"installed": [True, False], "uninstalled": [False, False]}
    assert logged == []  # no line, no warning
