"""``dev.py test``: finding each combination's Python, and skipping (or failing) without it.

The interpreters here are small scripts on a temporary PATH or in a temporary
pyenv root, standing in for ``python3.X``: what dev.py runs to ask them their
version is real.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import stat
import sys
import time
import tomllib
from itertools import chain
from pathlib import Path

import pytest

from hopwatch import _versions

ROOT = Path(__file__).resolve().parent.parent


def _load_dev():
    spec = importlib.util.spec_from_file_location("hopwatch_dev_script", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dev = _load_dev()


def _script(path: Path, body: str) -> Path:
    """An executable that runs the Python ``body`` with this interpreter, its arguments
    in ``sys.argv[1:]``. Through /bin/sh: a ``#!`` line cannot hold an interpreter whose
    path has a space (a checkout in "my projects/")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(body)} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _interpreter(path: Path, version: str | None) -> Path:
    """A stand-in ``python3.X``: prints ``version``, or fails as an unselected pyenv shim."""
    body = (
        f"print({version!r})"
        if version
        else "import sys; print('pyenv: command not found', file=sys.stderr); sys.exit(127)"
    )
    return _script(path, body)


@pytest.fixture
def no_pythons(tmp_path, monkeypatch):
    """A PATH and a pyenv root with no Python 3.98 or 3.99 in them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    return tmp_path


def test_python_on_path(no_pythons):
    found = _interpreter(no_pythons / "bin" / "python3.99", "3.99")
    assert dev.find_python("3.99") == str(found)


def test_a_pyenv_shim_that_does_not_run_is_passed_over_for_pyenv(no_pythons):
    _interpreter(no_pythons / "bin" / "python3.99", None)  # on PATH, but exits 127
    older = _interpreter(no_pythons / "pyenv/versions/3.99.2/bin/python3.99", "3.99")
    newer = _interpreter(no_pythons / "pyenv/versions/3.99.10/bin/python3.99", "3.99")
    _interpreter(no_pythons / "pyenv/versions/3.99.11t/bin/python3.99", "3.99")  # free-threaded
    assert dev.find_python("3.99") == str(newer) != str(older)


def test_an_interpreter_of_another_version_is_not_taken(no_pythons):
    _interpreter(no_pythons / "bin" / "python3.99", "3.98")
    assert dev.find_python("3.99") is None


@pytest.mark.parametrize(("ci", "status", "failed"), [("", 0, 0), ("true", 1, 1)])
def test_a_combination_without_its_python_is_skipped_or_fails_on_ci(
    no_pythons, monkeypatch, capsys, ci, status, failed
):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setitem(dev.ENVIRONMENTS, "django99", dev.Environment("3.99", ("Django==9.9",)))
    # pytest arguments given: no lint run, and nothing else is set up
    assert dev.cmd_test(["--env", "django99", "-q"]) == status
    out = capsys.readouterr().out
    assert "skipped django99 (Python 3.99, Django==9.9): no python3.99 on PATH or through pyenv" in out
    assert out.rstrip().endswith(f"hopwatch: 0 passed, {failed} failed, 0 skipped")


def test_the_matrix_is_what_hopwatch_calls_tested():
    for env in dev.ENVIRONMENTS.values():
        pins = dict(requirement.split("==") for requirement in env.requirements)
        django = tuple(int(part) for part in pins["Django"].split("."))
        assert _versions.django_untested((*django[:3], "final", 0)) is None, env
        provider = _versions.Provider("asgiref", pins["asgiref"])
        assert _versions.asgiref_untested(pins["asgiref"], [provider]) is None, env
    assert dev.SLOW_ENV in dev.ENVIRONMENTS
    assert set(dev.DEFAULT_ENVS) == set(dev.ENVIRONMENTS)


def test_the_oldest_combination_installs_every_floor():
    """django52 installs every runtime dependency and extra at the floor pyproject.toml
    declares (Django: 5.2's newest patch release), with the OpenTelemetry SDK, exporter
    and instrumentation of the otel extra's floor, and no test requirement pins another
    release of them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *chain(*project["optional-dependencies"].values())]
    floors = dict(re.match(r"([\w.-]+)>=([\w.]+)", spec).groups() for spec in declared)
    assert floors == {
        "Django": "5.2",
        "asgiref": "3.8.1",
        "structlog": "23.1",
        "orjson": "3.9",
        "pyinstrument": "4.6",
        "msgspec": "0.23",
        "rich": "14.3",
        "opentelemetry-api": "1.31",
        "django-debug-toolbar": "6.0",
        "isal": "1.6",
    }
    installed = dev.requirements("django52")
    names = [dev._project(requirement) for requirement in installed]
    assert len(names) == len(set(names)), installed  # one pin a project: pip takes it
    pins = dict(requirement.split("==") for requirement in installed)
    assert {name: pins[name] for name in floors} == {
        "Django": "5.2.19",
        "asgiref": "3.8.1",
        "structlog": "23.1.0",
        "orjson": "3.9.0",
        "pyinstrument": "4.6.0",
        "msgspec": "0.23.0",
        "rich": "14.3.0",
        "opentelemetry-api": "1.31.0",
        "django-debug-toolbar": "6.0.0",
        "isal": "1.6.0",
    }
    otel = {name: pin for name, pin in pins.items() if name.startswith("opentelemetry-")}
    assert otel == {
        "opentelemetry-api": "1.31.0",
        "opentelemetry-sdk": "1.31.0",
        "opentelemetry-exporter-prometheus": "0.52b0",
        "opentelemetry-instrumentation-django": "0.52b0",
        "opentelemetry-instrumentation-asgi": "0.52b0",
        "opentelemetry-instrumentation-wsgi": "0.52b0",
    }
    # the other combinations keep the test requirements' pins (the newest)
    assert dev.requirements("django61")[2:] == dev.TEST_REQUIREMENTS


def test_bench_on_another_environment_is_refused_clearly(no_pythons, monkeypatch, capsys):
    """``dev.py bench --instructions --env NAME`` counts on that environment; a
    wrong or unusable one is one line and status 2, with nothing set up."""
    monkeypatch.setitem(dev.ENVIRONMENTS, "django99", dev.Environment("3.99", ("Django==9.9",)))
    assert dev.cmd_bench(["--env", "django99"]) == 2
    assert capsys.readouterr().err == "dev.py: --env goes with bench --instructions\n"
    assert dev.cmd_bench(["--instructions", "--env", "nope"]) == 2
    assert capsys.readouterr().err.startswith("dev.py: --env takes one of django52, ")
    assert dev.cmd_bench(["--instructions", "--env"]) == 2
    assert capsys.readouterr().err.startswith("dev.py: --env takes one of ")
    assert dev.cmd_bench(["--instructions", "--env", "django99"]) == 2
    assert capsys.readouterr().err == "dev.py: no python3.99 on PATH or through pyenv\n"


_STAND_IN_PYTEST = """
import sys, time
from pathlib import Path
# argv: -m pytest -q --junitxml=REPORT NAME OTHER TESTS
report, name, other, tests = sys.argv[4].split("=", 1)[1], *sys.argv[5:8]
here = Path(report).parent
print(f"{name} first", flush=True)
(here / f"{name}.started").touch()
deadline = time.monotonic() + 60
while not (here / f"{other}.started").exists():  # both runs going at once
    assert time.monotonic() < deadline, "the other run never started"
    time.sleep(0.01)
print(f"{name} last", flush=True)
Path(report).write_text(f'<testsuite tests="{tests}" failures="1" errors="0" skipped="2"/>')
sys.exit(1 if name == "b" else 0)
"""


def test_the_full_runs_lanes_run_together_and_print_each_runs_output_whole(
    tmp_path, monkeypatch, capsys
):
    """Two runs in two lanes: each waits until the other has started (so they ran at
    once), each one's output comes in one piece, and the status and counts are the
    runs' together."""
    python = _script(tmp_path / "python", _STAND_IN_PYTEST)
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    runs = [
        dev.Run("django52", "c", python, {"X": "1"}, ("a", "b", "5")),
        dev.Run("django60", "c", python, {}, ("b", "a", "7")),
    ]
    status, counts = dev._pytest_in_lanes(runs, 2)
    assert status == 1  # b failed
    assert counts == {"passed": 12 - 2 - 4, "failed": 2, "skipped": 4}
    out = capsys.readouterr().out
    for name in "ab":
        assert f"{name} first\n{name} last\n" in out
    assert out.count("=== started: tests on django52 (") == 1
    assert out.count("ended in") == 2


_STAND_IN_OUTCOMES = """
import sys, time
from pathlib import Path
# argv: -m pytest -q --junitxml=REPORT OUTCOME
report, outcome = sys.argv[4].split("=", 1)[1], sys.argv[5]
if outcome == "hang":
    time.sleep(60)
if outcome != "no-report":
    failures = 1 if outcome == "fail" else 0
    tests = 0 if outcome in ("usage", "no-tests") else 3
    Path(report).write_text(f'<testsuite tests="{tests}" failures="{failures}" errors="0" skipped="0"/>')
sys.exit({"pass": 0, "usage": 4, "no-tests": 5}.get(outcome, 1))
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    python = _script(tmp_path / "python", _STAND_IN_OUTCOMES)
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    return python


def test_a_failed_run_that_ends_before_a_passing_one_fails_the_lanes(stand_in):
    """One lane: the failing run ends first, then the passing one; the status is
    still the failure's."""
    runs = [
        dev.Run("django52", "c", stand_in, {}, ("fail",)),
        dev.Run("django60", "c", stand_in, {}, ("pass",)),
    ]
    assert dev._pytest_in_lanes(runs, 1) == (1, {"passed": 5, "failed": 1, "skipped": 0})


def test_a_run_that_writes_no_report_does_not_count_an_earlier_runs(stand_in, tmp_path):
    """The report an earlier run left in .cache/ is removed first: a run that writes
    none counts as one failure, not as the earlier run's 900 tests."""
    run = dev.Run("django52", "c", stand_in, {}, ("no-report",))
    run.report().parent.mkdir()
    run.report().write_text('<testsuite tests="900" failures="0" errors="0" skipped="0"/>')
    assert dev._pytest_in_lanes([run], 1) == (1, {"failed": 1})


def test_a_run_past_the_timeout_is_given_up_as_a_failure(stand_in, monkeypatch, capsys):
    monkeypatch.setattr(dev, "RUN_TIMEOUT", 1)
    started = time.monotonic()
    run = dev.Run("django52", "c", stand_in, {}, ("hang",))
    assert dev._pytest_in_lanes([run], 1) == (1, {"failed": 1})
    assert time.monotonic() - started < 30  # ended, not waited for
    out = capsys.readouterr().out
    assert "dev.py: gave up after 1 s (a hung test?)\n" in out


# --- a SIGTERM to dev.py (what CI sends on a timeout or a cancel) --------------------------
_STAND_IN_HANGING = """
import os, subprocess, sys, time
from pathlib import Path
if sys.argv[1:3] != ["-m", "pytest"]:
    sys.exit(0)  # ruff and mypy: done
# A server one of the tests started (in pytest's process group, as the suite's are).
server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
(Path(os.environ["STAND_IN_PIDS"]) / f"{os.getpid()} {server.pid}").touch()
time.sleep(120)
"""

#: dev.py's own main(), run on the stand-in interpreter for every environment.
_DEV_ON_STAND_INS = """
import importlib.util, sys
from pathlib import Path
dev_py, root, python, *argv = sys.argv[1:]
spec = importlib.util.spec_from_file_location("hopwatch_dev_script", dev_py)
dev = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = dev
spec.loader.exec_module(dev)
dev.ROOT = Path(root)
dev.find_python = lambda version: python
dev.ensure_env = lambda env, interpreter: Path(python)
dev.ensure_system_packages = lambda: None
dev._lanes = lambda: 2
sys.argv = ["dev.py", *argv]
raise SystemExit(dev.main())
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    ("argv", "started"),
    [(["test"], 2), (["test", "--env", "django52", "tests/x.py"], 1)],
    ids=["the full run's lanes", "one run at a time"],
)
def test_a_sigterm_ends_the_runs_and_their_servers_then_dev_py_with_143(tmp_path, argv, started):
    """SIGTERM while pytest runs (two lanes of the full run, or one run alone): each
    run ends with the servers its tests started, no further run starts, and dev.py
    exits 143 (128 + SIGTERM), saying so."""
    import signal
    import subprocess

    python = _script(tmp_path / "python", _STAND_IN_HANGING)
    pids = tmp_path / "pids"
    pids.mkdir()
    driver = _script(tmp_path / "dev", _DEV_ON_STAND_INS)
    dev_py = subprocess.Popen(
        [driver, ROOT / "dev.py", tmp_path, python, *argv],
        env={**os.environ, "STAND_IN_PIDS": str(pids), "CI": ""},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < started and dev_py.poll() is None:
            assert time.monotonic() < deadline, "the runs never started"
            time.sleep(0.05)
        time.sleep(0.2)
        dev_py.send_signal(signal.SIGTERM)
        out, _ = dev_py.communicate(timeout=30)
    finally:
        if dev_py.poll() is None:
            dev_py.kill()
            dev_py.wait()
    assert dev_py.returncode == 143, out
    assert "\ndev.py: SIGTERM: ending the commands it runs\n" in out  # (then what the runs wrote)
    assert out.endswith("\ndev.py: ended by SIGTERM\n")
    assert "hopwatch:" not in out  # no closing line: the run did not end
    children = [int(pid) for entry in pids.iterdir() for pid in entry.name.split()]
    assert len(children) == 2 * started  # no run started after the SIGTERM
    deadline = time.monotonic() + 10  # (an orphan's reaping by init takes a moment)
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in children if _alive(pid)] == []


@pytest.mark.parametrize(
    ("outcome", "said"),
    [("no-tests", "no test ran (pytest's exit 5)"), ("usage", "pytest's usage error (exit 4)")],
)
def test_a_run_that_fails_with_no_failed_test_says_why_on_the_closing_line(
    stand_in, monkeypatch, capsys, outcome, said
):
    """pytest's exit 5 (everything deselected) and 4 (no such file) write a report of
    0 tests: the closing line of the failed run says why, not just "0 failed"."""
    monkeypatch.setattr(dev, "find_python", lambda version: str(stand_in))
    monkeypatch.setattr(dev, "ensure_env", lambda env, interpreter: stand_in)
    monkeypatch.setattr(dev, "ensure_system_packages", lambda: None)
    assert dev.cmd_test(["--env", "django61", outcome]) == 1
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == (
        f"hopwatch: 0 passed, 0 failed, 0 skipped; {said}: django61 c, django61 pure-python"
    )


_STAND_IN_LINT = """
import sys
from pathlib import Path
if sys.argv[1:3] == ["-m", "ruff"]:
    print("dev.py:1:1: E999 a stand-in finding")
    sys.exit(1)
if sys.argv[1:3] == ["-m", "mypy"]:
    sys.exit(0)
report = next(a for a in sys.argv if a.startswith("--junitxml=")).split("=", 1)[1]
Path(report).write_text('<testsuite tests="3" failures="0" errors="0" skipped="1"/>')
"""


def test_a_lint_failure_is_named_on_the_closing_line(tmp_path, monkeypatch, capsys):
    """ruff failing and every test passing: the run fails, and its closing line says
    it was ruff (CI's log ends in that line, whose counts alone read as a pass)."""
    python = _script(tmp_path / "python", _STAND_IN_LINT)
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    monkeypatch.setattr(dev, "find_python", lambda version: str(python))
    monkeypatch.setattr(dev, "ensure_env", lambda env, interpreter: python)
    monkeypatch.setattr(dev, "ensure_system_packages", lambda: None)
    assert dev.cmd_test(["--env", "django61"]) == 1
    lint_env = dev._default_env()[0]
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == (
        f"hopwatch: 4 passed, 0 failed, 2 skipped; ruff failed (exit 1): lint on {lint_env}"
    )


def test_the_closing_line_groups_the_runs_by_why_they_failed():
    runs = [dev.Run(env, "c", Path("python"), {}, ()) for env in ("django52", "django60")]
    notes: list[str] = []
    dev._note_status(runs[0], 5, {"passed": 0, "failed": 0, "skipped": 0}, notes)
    dev._note_status(runs[1], 1, {"failed": 1}, notes)  # a failed test says why itself
    dev._note_status(runs[1], 2, {"passed": 3, "failed": 0, "skipped": 0}, notes)
    dev._note_status(runs[0], 0, {"passed": 3}, notes)
    totals = {"passed": 3, "failed": 1, "skipped": 0}
    assert dev._closing_line(totals, notes) == (
        "hopwatch: 3 passed, 1 failed, 0 skipped; no test ran (pytest's exit 5): django52 c;"
        " pytest was interrupted (exit 2): django60 c"
    )


def _dev_py(*args: str):
    import subprocess

    return subprocess.run(
        [sys.executable, ROOT / "dev.py", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_is_the_usage_on_stdout_and_status_0(flag):
    done = _dev_py(flag)
    assert (done.returncode, done.stdout, done.stderr) == (0, dev.__doc__.strip() + "\n", "")


def test_an_unknown_command_is_named_after_the_usage_with_status_2():
    done = _dev_py("tset")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"{dev.__doc__.strip()}\n\ndev.py: unknown command 'tset'\n"
    done = _dev_py()  # no command: the usage alone
    assert (done.returncode, done.stdout, done.stderr) == (2, "", dev.__doc__.strip() + "\n")


def test_bench_instructions_counts_in_the_bench_environment(monkeypatch, tmp_path):
    """``dev.py bench --instructions`` runs ``python -m bench --instructions``, which
    counts in .venvs/bench as the full run does (it had run bench.instructions in
    the default test environment, with its older asgiref and structlog); with
    ``--env NAME`` it counts on that environment's Python, as before."""
    ran: list[list[object]] = []
    monkeypatch.setattr(dev, "_default_env", lambda: ("django52", "python3.11"))
    monkeypatch.setattr(dev, "find_python", lambda version: f"python{version}")
    monkeypatch.setattr(dev, "ensure_env", lambda env, interpreter: f"{env}/bin/python")
    monkeypatch.setattr(dev, "_run", lambda command, *a, **k: ran.append(command) or 0)
    assert dev.cmd_bench(["--instructions", "--only", "requests"]) == 0
    assert dev.cmd_bench(["--instructions", "--env", "django61", "--only", "hops"]) == 0
    assert dev.cmd_bench(["--quick"]) == 0
    assert ran == [
        ["django52/bin/python", "-m", "bench", "--instructions", "--only", "requests"],
        ["django61/bin/python", "-m", "bench.instructions", "--only", "hops"],
        ["django52/bin/python", "-m", "bench", "--quick"],
    ]
