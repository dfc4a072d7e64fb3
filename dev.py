#!/usr/bin/env python3
"""hopwatch's developer commands. Needs only python3 (3.11+); sets up everything else.

    python3 dev.py test      lint, types, then the whole test suite on Django 4.2 and 5.2
    python3 dev.py demo      the example site under uvicorn, traffic, then `hopwatch report`
    python3 dev.py bench     the benchmarks (writes docs/performance.md)

Each environment is a virtualenv under .venvs/, made on first use and reused
while its requirements are unchanged. Extra arguments after `test` go to pytest
(`python3 dev.py test -k counts`); `--env django52` runs one environment only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENVS = ROOT / ".venvs"

# The support matrix: each supported Django LTS with the oldest and the newest
# asgiref it allows (Django 4.2: asgiref>=3.6.0; Django 5.2: asgiref>=3.8.1).
ENVIRONMENTS: dict[str, list[str]] = {
    "django42": ["Django==4.2.30", "asgiref==3.6.0"],
    "django52": ["Django==5.2.19", "asgiref==3.13.0"],
}
# Used by the demo and the benchmarks.
DEFAULT_ENV = "django52"

TEST_REQUIREMENTS = [
    "pytest==9.0.3",
    "pytest-django==4.14.0",
    "hypothesis==6.155.2",
    "uvicorn==0.54.0",
    "ruff==0.17.6",
    "mypy==1.19.1",
    "isal==1.9.1",  # the fast-gzip extra: the report's gzip tests read through it and without it
]


def _python(env: str) -> Path:
    return VENVS / env / "bin" / "python"


def _run(cmd: list[str | Path], timeout: float | None = None) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    try:
        return subprocess.call([str(c) for c in cmd], cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"dev.py: gave up after {timeout:.0f} s (a hung test?)", flush=True)
        return 1


def ensure_env(env: str) -> Path:
    """Create or refresh the virtualenv for ``env``; return its python."""
    requirements = [*ENVIRONMENTS[env], *TEST_REQUIREMENTS]
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    stamp_value = hashlib.sha256(repr(requirements).encode() + pyproject).hexdigest()
    target = VENVS / env
    stamp = target / ".hopwatch-stamp"
    python = _python(env)
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_value:
        return python
    if target.exists():
        shutil.rmtree(target)
    print(f"setting up {target.relative_to(ROOT)} ({', '.join(ENVIRONMENTS[env])})", flush=True)
    venv.EnvBuilder(with_pip=True).create(target)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # The project first, then the pins: the pins win over the ranges in pyproject.
    if _run([*pip, "-e", "."]) or _run([*pip, *requirements]):
        raise SystemExit(f"dev.py: could not install the {env} environment (see pip's output)")
    stamp.write_text(stamp_value)
    return python


def cmd_test(args: list[str]) -> int:
    envs = list(ENVIRONMENTS)
    if "--env" in args:
        i = args.index("--env")
        if i + 1 >= len(args) or args[i + 1] not in ENVIRONMENTS:
            print(f"dev.py: --env takes one of {', '.join(ENVIRONMENTS)}", file=sys.stderr)
            return 2
        envs = [args[i + 1]]
        args = args[:i] + args[i + 2 :]
    status = 0
    if not args:  # lint and types only on the full run
        lint_python = ensure_env(DEFAULT_ENV)
        status |= _run([lint_python, "-m", "ruff", "check", "src", "tests", "bench", "dev.py"])
        status |= _run([lint_python, "-m", "mypy"])
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for env in envs:
        python = ensure_env(env)
        print(f"\n=== tests on {env} ===", flush=True)
        report = ROOT / ".cache" / f"junit-{env}.xml"
        report.parent.mkdir(exist_ok=True)
        report.unlink(missing_ok=True)
        # A watchdog: a hung test fails the run instead of using up CI's time.
        status |= _run([python, "-m", "pytest", "-q", f"--junitxml={report}", *args], 1200)
        for key, value in _junit_counts(report).items():
            totals[key] += value
    # One plain closing line for the whole matrix (CI reads it).
    print(
        f"\nhopwatch: {totals['passed']} passed, {totals['failed']} failed,"
        f" {totals['skipped']} skipped",
        flush=True,
    )
    return 1 if status else 0


def _junit_counts(report: Path) -> dict[str, int]:
    """passed/failed/skipped from a pytest JUnit XML report (missing report: one failure)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return {"failed": 1}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return {"passed": tests - failed - skipped, "failed": failed, "skipped": skipped}


def cmd_demo(args: list[str]) -> int:
    python = ensure_env(DEFAULT_ENV)
    return _run([python, "-m", "example_site.demo", *args])


def cmd_bench(args: list[str]) -> int:
    python = ensure_env(DEFAULT_ENV)
    return _run([python, "-m", "bench", *args])


COMMANDS = {"test": cmd_test, "demo": cmd_demo, "bench": cmd_bench}


def main() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036  (dev.py may be run by an older python3)
        print("dev.py: hopwatch needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
