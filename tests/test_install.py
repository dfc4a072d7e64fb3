"""hopwatch installed the way a project installs it: pip builds it from its source.

Its two C parts (the hop path's ``_speedups``, the report's ``_accumulate``) are
optional extensions. Where the install has no C compiler (a slim container
image), pip still installs hopwatch, with the pure-Python fallbacks: the same
counts, more time. ``hopwatch --version``, the system check ``hopwatch.W006``
and a warning as the app starts say so. A wheel built where a compiler is
present installs the C parts where none is (the getting-started guide's
two-stage image). These build real wheels
with pip (setuptools in pip's build isolation, from the package index) from an
sdist of this checkout, and load them in new interpreters, the checkout's own
hopwatch kept off their path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import check_and_one_request

ROOT = Path(__file__).resolve().parent.parent

# One build of each kind per run, so once per suite: with the slow tests.
pytestmark = pytest.mark.slow

#: What makes an extension's build fail the way a machine without a compiler
#: does: setuptools calls ``$CC``, which exits 1 (a ``$CC`` that does not exist
#: reads the same to setuptools: the optional extension is left out).
NO_COMPILER = {"CC": shutil.which("false") or "/bin/false", "HOPWATCH_PURE_PYTHON": ""}
EXTENSIONS = ("hopwatch/_speedups.", "hopwatch/report/_accumulate.")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hopwatch's sdist, made from this checkout as a release makes it (``python -m
    build --sdist``): the package's sources and data, and no build product or test."""
    directory = tmp_path_factory.mktemp("sdist")
    out = directory / "dist"
    command = [sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)]
    _build(command, directory)
    (made,) = out.glob("hopwatch-*.tar.gz")
    with tarfile.open(made) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    top = {name for name in names if "/" not in name}
    assert top == {"CHANGELOG.md", "LICENSE", "MANIFEST.in", "PKG-INFO", "README.md",
                   "docs", "pyproject.toml", "setup.cfg", "src"}  # fmt: skip
    # the docs the README links and the messages name, each of them
    assert {n for n in names if n.startswith("docs/")} == {
        f"docs/{path.name}" for path in (ROOT / "docs").iterdir()
    }
    assert not [n for n in names if n.endswith((".so", ".pyc")) or n.startswith("tests")]
    assert {
        "src/hopwatch/_speedups.c",
        "src/hopwatch/report/_accumulate.c",
        "src/hopwatch/py.typed",
        "src/hopwatch/contrib/templates/hops_panel.html",
        "src/hopwatch/report/assets/page.js",
    } <= names
    return made


def _build(command: list[str], cwd: Path, **env: str) -> None:
    """Runs a build in ``cwd`` (a checkout's own ``build/`` folder, left by a build,
    would be the ``build`` that ``python -m build`` runs there); the build backend's
    output holds no deprecation warning: each comes with a date after which the
    backend may refuse the build (setuptools' ``project.license`` table had
    2027-02-18)."""
    done = subprocess.run(
        command, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "DeprecationWarning" not in done.stdout + done.stderr


def _wheel(sdist: Path, directory: Path, **env: str) -> Path:
    """The wheel pip builds from the sdist, as ``pip install hopwatch`` does."""
    out = directory / "wheels"
    _build(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps",
         "--disable-pip-version-check", "-w", str(out), str(sdist)],
        directory,
        **env,
    )  # fmt: skip
    (wheel,) = out.glob("hopwatch-*.whl")
    return wheel


def _install(wheel: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        env={**os.environ, **NO_COMPILER}, check=True, timeout=300,
    )  # fmt: skip


def _version(target: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "hopwatch", "--version"],
        env={**os.environ, "PYTHONPATH": str(target), "HOPWATCH_PURE_PYTHON": ""},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.splitlines()


def _check_and_serve(target: Path, module: str, cwd: Path) -> tuple[str, str]:
    """``manage.py check`` and one request (tests.helpers.check_and_one_request) with
    the install in ``target`` first on the path: the hop path's implementation, and
    what the process wrote to standard error (hopwatch's warnings among it)."""
    seen, stderr = check_and_one_request(
        "import sys",
        f"[sys.modules['hopwatch._hotpath'].IMPLEMENTATION, sys.modules[{module!r}].__file__]",
        [str(target), str(ROOT)],
        cwd,
        HOPWATCH_PURE_PYTHON="",
        DJANGO_SETTINGS_MODULE="tests.settings_stderr",
    )
    implementation, path = seen["seen"]
    assert path.startswith(str(target))  # the install's module, not the checkout's
    assert seen["status"] == 200 and seen["hops"] == [2]  # the same on either path
    return implementation, stderr


def _extensions(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert not [n for n in names if n.endswith(".c")]  # sources are the sdist's, not a wheel's
    return sorted(n for n in names if n.endswith(".so"))


def test_without_a_c_compiler_hopwatch_installs_counts_the_same_and_says_what_it_runs(
    sdist, tmp_path
):
    wheel = _wheel(sdist, tmp_path, **NO_COMPILER)
    assert _extensions(wheel) == []  # neither extension was built, and pip went on
    target = tmp_path / "site"
    _install(wheel, target)

    assert _version(target) == [
        "hopwatch 0.1.0",
        "hop path: pure Python, several times the cost per hop",
        "  hopwatch._speedups did not load: No module named 'hopwatch._speedups'",
        "report scanner: pure Python, slower per log line",
        "  hopwatch.report._accumulate did not load: No module named 'hopwatch.report._accumulate'",
        "Reinstall hopwatch where a C compiler and Python's headers are present",
        "(pip install --force-reinstall --no-deps --no-cache-dir --no-binary hopwatch"
        " hopwatch==0.1.0),",  # a line of its own: a command to copy, never cut
        "or install a wheel built on such a machine (docs/getting-started.md in",
        "hopwatch's source distribution).",
    ]
    implementation, stderr = _check_and_serve(target, "hopwatch", tmp_path)
    assert implementation == "python"
    said = (
        "hopwatch's C accelerator (hopwatch._speedups) did not load (No module named"
        " 'hopwatch._speedups'): hopwatch runs its pure-Python hop path"
    )
    assert f"(hopwatch.W006) {said}" in stderr  # manage.py check
    assert stderr.count(said) == 2  # and the start-up warning on the hopwatch logger


def test_a_wheel_built_with_a_compiler_runs_the_c_parts_where_there_is_none(sdist, tmp_path):
    # this machine's compiler, every warning -Wall -Wextra give an error: a toolchain that
    # builds with -Werror (some distributions' packaging does) must not drop a C part
    wheel = _wheel(sdist, tmp_path, CFLAGS="-Wall -Wextra -Werror")
    built = _extensions(wheel)
    assert [name.rsplit(".", 2)[0] + "." for name in built] == sorted(EXTENSIONS)
    target = tmp_path / "site"
    _install(wheel, target)  # where $CC fails, as in a slim image

    assert _version(target) == [
        "hopwatch 0.1.0",
        "hop path: C (hopwatch._speedups)",
        "report scanner: C (hopwatch.report._accumulate)",
    ]
    implementation, stderr = _check_and_serve(target, "hopwatch._speedups", tmp_path)
    assert implementation == "c"
    assert "hopwatch.W006" not in stderr and "did not load" not in stderr


def _in_venv(venv: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``command`` run with ``venv``'s scripts first on the path, as its user runs it
    (neither the checkout on PYTHONPATH nor a pure-Python choice of the test run's)."""
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    bin_dir = str(venv / "bin")
    environ.update(
        PATH=bin_dir + os.pathsep + environ.get("PATH", ""), VIRTUAL_ENV=str(venv),
        PIP_DISABLE_PIP_VERSION_CHECK="1", HOPWATCH_PURE_PYTHON="",
    )  # fmt: skip
    environ.update(env)
    return subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]], env=environ, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_rebuild_command_hopwatch_prints_builds_the_c_parts_and_changes_nothing_else(
    sdist, tmp_path
):
    """A project's venv (this run's Django and asgiref) installs hopwatch where there is
    no compiler, which leaves pip's cache holding the pure wheel it built; with the
    compiler back, the command ``hopwatch --version`` prints, as printed (only offered
    this sdist in place of the package index), builds both C parts and changes no other
    package. ``--no-binary hopwatch`` alone took the cached pure wheel again, and
    ``--force-reinstall`` alone reinstalled every dependency at its newest (Django 5.2
    became 6.1)."""
    from importlib.metadata import version

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    requirements = ["Django", "asgiref", "structlog", "orjson", "pyinstrument", "msgspec"]
    pins = [f"{name}=={version(name)}" for name in requirements]
    done = _in_venv(venv, "pip", "install", "-q", *pins)  # from the package index
    assert done.returncode == 0, done.stderr[-3000:]
    # this sdist in place of the index's, and the build backend its build isolation installs
    offered = tmp_path / "offered"
    offered.mkdir()
    shutil.copy(sdist, offered)
    done = _in_venv(venv, "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                    "-d", str(offered), "setuptools>=77")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    offer = ["--find-links", str(offered), "--no-index"]
    cache = {"PIP_CACHE_DIR": str(tmp_path / "pip-cache")}  # the user's, as pip fills it
    done = _in_venv(venv, "pip", "install", "-q", *offer, "hopwatch", **cache, **NO_COMPILER)
    assert done.returncode == 0, done.stderr[-3000:]
    before = _in_venv(venv, "pip", "freeze", "--all").stdout
    assert f"Django=={version('Django')}" in before.splitlines()
    said = _in_venv(venv, "hopwatch", "--version").stdout
    assert "hop path: pure Python, several times the cost per hop" in said
    command = " ".join(said.split()).split(" (pip ", 1)[1].split(")", 1)[0].split()

    done = _in_venv(venv, "pip", *command, *offer, **cache)  # the compiler back
    assert done.returncode == 0, done.stderr[-3000:]
    assert _in_venv(venv, "hopwatch", "--version").stdout.splitlines() == [
        "hopwatch 0.1.0",
        "hop path: C (hopwatch._speedups)",
        "report scanner: C (hopwatch.report._accumulate)",
    ]
    assert _in_venv(venv, "pip", "freeze", "--all").stdout == before  # Django's version too
