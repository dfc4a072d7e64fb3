"""hopwatch without rich (``pip install hopwatch``, no ``rich`` extra).

rich is an extra: an app's environment need not carry it (``import structlog``
loads rich into the server process whenever it is installed). These tests run
hopwatch in a child process where rich is not installed: a directory first on
``sys.path`` whose ``rich`` package fails to import exactly as a missing one does.
The app serves requests and writes its line; the commands print plain tables on a
terminal, and ``--format rich`` says in one line how to get rich.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import in_terminal
from tests.report.samples import line, site
from tests.report.test_layout import ROUTES, lines_for

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
LINE = line(method="GET", route="/a/", sites=[site("QuerySet.aget", "orm", 1, 1.0)])


@pytest.fixture
def no_rich(tmp_path: Path) -> dict[str, str]:
    """The environment of a child process in which rich is not installed."""
    hidden = tmp_path / "no-rich" / "rich"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'rich'\", name='rich')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(hidden.parent), str(SRC), str(ROOT)]),
        TERM="xterm-256color",
    )
    return env


def _child(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python args...`` in the project's directory, its output captured."""
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_the_child_really_has_no_rich(no_rich):
    probe = "import sys, structlog, hopwatch.middleware; print('rich' in sys.modules)"
    result = _child(["-c", probe], no_rich)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    check = _child(["-c", "import rich"], no_rich)
    assert check.returncode == 1 and "No module named 'rich'" in check.stderr


_APP = """
import json, os, sys
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="x", ALLOWED_HOSTS=["*"], INSTALLED_APPS=["hopwatch", "tests.testapp"],
    MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"], ROOT_URLCONF="tests.testapp.urls",
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    HOPWATCH={"OUTPUT": sys.argv[1]},
)
django.setup()
import asyncio
from django.test import AsyncClient, Client
assert Client().get("/sync/").status_code == 200
async def main():
    assert (await AsyncClient().get("/async/")).status_code == 200
asyncio.run(main())
print(json.dumps(sorted(m for m in ("rich", "pygments", "structlog") if m in sys.modules)))
"""


def test_an_app_serves_and_logs_without_rich(no_rich, tmp_path):
    log = tmp_path / "hops.log"
    result = _child(["-c", _APP, str(log)], no_rich)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["structlog"]  # the line's logger, and no rich
    lines = [json.loads(text) for text in log.read_text().splitlines()]
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/sync/", 200),
        ("/async/", 200),
    ]


@pytest.mark.parametrize("columns", [80, 160])
@pytest.mark.parametrize("with_rich", [False, True], ids=["without-rich", "with-rich"])
def test_report_on_a_terminal(no_rich, tmp_path, with_rich, columns):
    """On a terminal: rich's table when rich is installed, else the plain text table;
    either one fitted to the terminal's width."""
    log = tmp_path / "app.log"
    texts = [text for index, route in enumerate(ROUTES) for text in lines_for(route, index)]
    log.write_text("\n".join(texts) + "\n")
    env = no_rich
    if with_rich:
        env = {**no_rich, "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)])}
    command = [sys.executable, "-m", "hopwatch", "report", str(log)]
    status, output, stderr = in_terminal(command, env, columns=columns)
    assert status == 0, stderr
    assert stderr == ""
    lines = ANSI.sub(b"", output).decode().replace("\r\n", "\n").splitlines()
    assert max(len(line) for line in lines) <= columns
    endpoints = [line for line in lines if re.match(r"\d+  GET ", line)]
    assert len(endpoints) == len(ROUTES)
    # rich colours its table on this terminal; the text format writes no escape
    assert bool(ANSI.search(output)) is with_rich


@pytest.mark.parametrize("command", ["report", "audit"])
def test_format_rich_without_rich_says_how_to_get_it(no_rich, tmp_path, command):
    log = tmp_path / "app.log"
    log.write_text(LINE + "\n")
    args = [str(log)] if command == "report" else ["--settings", "tests.settings"]
    result = _child(["-m", "hopwatch", command, "--format", "rich", *args], no_rich)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"hopwatch {command}: error: --format rich needs rich, which is not installed:"
        " pip install 'hopwatch[rich]'\n"
    )


def test_format_text_needs_no_rich(no_rich, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(LINE + "\n")
    result = _child(["-m", "hopwatch", "report", "--format", "text", str(log)], no_rich)
    assert result.returncode == 0, result.stderr
    assert "GET /a/" in result.stdout


def test_the_management_command_without_rich(no_rich):
    script = (
        "import os, sys, django\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "from django.core.management.base import CommandError\n"
        "try:\n"
        "    call_command('hopwatch_audit', '--format', 'rich', '--samples', '10')\n"
        "except CommandError as exc:\n"
        "    print(exc.returncode, exc)\n"
    )
    result = _child(["-c", script], no_rich)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "2 --format rich needs rich, which is not installed: pip install 'hopwatch[rich]'\n"
    )


@pytest.mark.parametrize("columns", [80, 220])
def test_audit_on_a_terminal_without_rich(no_rich, columns):
    """The plain text fitted to the terminal: prose wrapped, and the middleware table as
    one block per entry when it is wider than the terminal (only the how-to's code is
    left whole, as in rich's rendering)."""
    command = [sys.executable, "-m", "hopwatch", "audit", "--settings", "tests.settings"]
    status, output, stderr = in_terminal([*command, "--samples", "5"], no_rich, columns=columns)
    assert (status, stderr) == (0, ""), stderr
    assert not ANSI.search(output)
    lines = output.decode().replace("\r\n", "\n").splitlines()
    assert [line for line in lines if len(line) > columns and not line.startswith(" " * 8)] == []
    assert lines[0].startswith("hopwatch audit: tests.settings")
    if columns == 80:  # the table is wider: blocks
        assert "1  hopwatch.middleware.HopwatchMiddleware" in lines
        assert "    capable: sync+async" in lines
    else:
        assert any(line.startswith("#  middleware") for line in lines)
