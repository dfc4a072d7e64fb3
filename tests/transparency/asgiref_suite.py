"""asgiref's own test suite, for the installed asgiref, run with and without hopwatch.

Everything is fetched at test time and cached under ``.cache/asgiref-suite/``
(git-ignored, never committed):

* ``asgiref-X.Y.Z.tar.gz``: the source distribution of the installed version,
  from PyPI (``pip download --no-binary :all:``);
* ``asgiref-X.Y.Z/``: its ``tests/`` and ``setup.cfg`` (pytest's settings),
  and nothing else: the suite must import the *installed* asgiref;
* ``venv-<key>/``: a virtualenv made from the running interpreter with only
  the suite's own requirements (pytest, pytest-asyncio, packaging), so the
  project's virtualenvs stay as they are.

Each run gets a directory on ``PYTHONPATH`` holding symlinks to the installed
``asgiref`` and ``hopwatch`` packages, so the virtualenv's Python imports
exactly the code under test. Plugin autoloading is off; the runs load
pytest-asyncio and ``asgiref_suite_plugin`` (this directory) explicitly.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asgiref

import hopwatch

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "asgiref-suite"
HERE = Path(__file__).resolve().parent

#: The suite's requirements, pinned (pytest-asyncio 1.5 runs both asgiref 3.6's
#: and 3.13's suites; packaging is imported by 3.13's).
SUITE_REQUIREMENTS = ["pytest==9.0.3", "pytest-asyncio==1.5.0", "packaging==26.3"]

MODES = ("plain", "hopwatch")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One preparer at a time (two test runs may share the cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], **kwargs: Any) -> None:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )


def suite_dir(version: str = asgiref.__version__) -> Path:
    """The cached ``tests/`` (and ``setup.cfg``) of asgiref ``version``'s sdist."""
    target = CACHE / f"asgiref-{version}"
    if (target / ".complete").exists():
        return target
    with _locked():
        if (target / ".complete").exists():
            return target
        sdist = CACHE / f"asgiref-{version}.tar.gz"
        if not sdist.exists():
            with tempfile.TemporaryDirectory(dir=CACHE) as download:
                _run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "--no-binary",
                        ":all:",
                        "--disable-pip-version-check",
                        "-q",
                        f"asgiref=={version}",
                        "-d",
                        download,
                    ],
                    timeout=300,
                )
                (found,) = Path(download).glob("asgiref-*.tar.gz")
                shutil.move(found, sdist)
        shutil.rmtree(target, ignore_errors=True)
        prefix = f"asgiref-{version}/"
        with tarfile.open(sdist) as archive, tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            members = [
                m
                for m in archive.getmembers()
                if m.name.startswith(f"{prefix}tests/") or m.name == f"{prefix}setup.cfg"
            ]
            assert any(m.name.endswith(".py") for m in members), f"no tests in {sdist.name}"
            archive.extractall(tmp, members=members, filter="data")
            shutil.move(Path(tmp) / prefix, target)
        (target / ".complete").write_text(sdist.name)
    return target


def suite_python() -> Path:
    """The cached virtualenv's Python with the suite's requirements installed."""
    key = hashlib.sha256(
        repr((sys.version, os.path.realpath(sys._base_executable), SUITE_REQUIREMENTS)).encode()  # type: ignore[attr-defined]
    ).hexdigest()[:12]
    target = CACHE / f"venv-py{sys.version_info[0]}{sys.version_info[1]}-{key}"
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    with _locked():
        if (target / ".complete").exists():
            return python
        shutil.rmtree(target, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(target)
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                *SUITE_REQUIREMENTS,
            ],
            timeout=600,
        )
        (target / ".complete").write_text(json.dumps(SUITE_REQUIREMENTS))
    return python


def _shim(directory: Path) -> Path:
    """A directory for PYTHONPATH with the installed asgiref and hopwatch, as symlinks."""
    directory.mkdir(parents=True, exist_ok=True)
    for module in (asgiref, hopwatch):
        link = directory / module.__name__
        link.symlink_to(Path(module.__file__ or "").resolve().parent, target_is_directory=True)
    return directory


def start(mode: str, suite: Path, python: Path, work: Path, tests: list[str]) -> Any:
    """Start one run of ``tests`` (node ids, or ``["tests"]``); returns (process, result file)."""
    assert mode in MODES
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"result-{mode}.json"
    out.unlink(missing_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "DJANGO_", "PYTHON", "COV_", "HOPWATCH_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(_shim(work / f"shim-{mode}")), str(HERE)]),
        PYTHONDONTWRITEBYTECODE="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        HOPWATCH_SUITE_MODE=mode,
        HOPWATCH_SUITE_OUT=str(out),
    )
    command = [
        str(python),
        "-m",
        "pytest",
        "-q",
        "-p",
        "pytest_asyncio.plugin",
        "-p",
        "asgiref_suite_plugin",
        "-p",
        "no:cacheprovider",
        *tests,
    ]
    log = (work / f"pytest-{mode}.log").open("w")
    process = subprocess.Popen(command, cwd=suite, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, out, log


def finish(started: Any, timeout: float = 300) -> dict[str, Any]:
    process, out, log = started
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    finally:
        log.close()
    if not out.exists():
        raise RuntimeError(
            f"the asgiref suite wrote no result (exit {process.returncode}):"
            f"\n{Path(log.name).read_text()[-3000:]}"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    result["log"] = log.name
    return result


def run_both(suite: Path, python: Path, work: Path, tests: list[str]) -> dict[str, dict[str, Any]]:
    """Run ``tests`` plain and with hopwatch, at the same time (the suite mostly sleeps)."""
    started = {mode: start(mode, suite, python, work / mode, tests) for mode in MODES}
    return {mode: finish(run) for mode, run in started.items()}
