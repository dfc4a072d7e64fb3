"""Django system checks: each fires where it should and stays quiet elsewhere."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings

import hopwatch
from hopwatch import _versions
from hopwatch._versions import Provider
from hopwatch.checks import (
    check_logging,
    check_middleware,
    check_profile_dir,
    check_settings,
    check_versions,
)
from tests.helpers import check_and_one_request

ROOT = Path(__file__).resolve().parent.parent

HW = "hopwatch.middleware.HopwatchMiddleware"


def ids(messages):
    return [m.id for m in messages]


def test_the_test_settings_pass_every_check():
    hopwatch_ids = [m.id for m in checks.run_checks() if m.id and m.id.startswith("hopwatch.")]
    assert hopwatch_ids == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ({}, []),
        ("yes", ["hopwatch.E001"]),
        ({"ENABLD": True}, ["hopwatch.E002"]),
        ({"SAMPLE_RATE": 1.5}, ["hopwatch.E003"]),
        ({"SAMPLE_RATE": True}, ["hopwatch.E003"]),
        ({"MIN_HOPS": -1, "DETAIL": "yes"}, ["hopwatch.E003", "hopwatch.E003"]),
        ({"EXTRA_FIELDS": 3}, ["hopwatch.E003"]),
        ({"SAMPLE_RATE": 0.25, "DETAIL": True, "EXTRA_FIELDS": "tests.test_log.extra_fields"}, []),
        # a dotted path is imported at start-up: a typo fails there, not silently per line
        ({"EXTRA_FIELDS": "x.y"}, ["hopwatch.E003"]),
        ({"EXTRA_FIELDS": "django.VERSION"}, ["hopwatch.E003"]),  # a tuple, not callable
    ],
)
def test_settings_check(value, expected):
    with override_settings(HOPWATCH=value):
        assert ids(check_settings()) == expected


def test_an_extra_fields_path_that_does_not_import_says_why():
    with override_settings(HOPWATCH={"EXTRA_FIELDS": "myproject.hopwatch_fields"}):
        (message,) = check_settings()
    assert message.msg == (
        "HOPWATCH['EXTRA_FIELDS'] is 'myproject.hopwatch_fields', which cannot be imported"
        " (ModuleNotFoundError: No module named 'myproject')."
    )
    with override_settings(HOPWATCH={"EXTRA_FIELDS": "django.VERSION"}):
        (message,) = check_settings()
    assert message.msg.endswith("which is tuple, not callable.")


def test_a_refused_profile_token_is_never_shown_by_the_check():
    """E003 echoed the whole token ("is 'Sup3rS3cretTok'; it must be ..."): manage.py
    check's output, a CI log. Its length is said, not its value."""
    with override_settings(HOPWATCH={"PROFILE_TOKEN": "Sup3rS3cretTok"}):
        (message,) = check_settings()
    assert message.id == "hopwatch.E003"
    assert message.msg == (
        "HOPWATCH['PROFILE_TOKEN'] is a string of 14 characters (not shown: it is a"
        " secret); it must be None or a secret string of at least 16 characters."
    )
    assert message.hint == (
        "Set HOPWATCH['PROFILE_TOKEN'] to None or a secret string of at least 16 characters,"
        " or remove it for the default (None)."
    )


def test_unknown_key_hint_suggests_the_right_one():
    with override_settings(HOPWATCH={"SAMPLE_RTE": 0.5}):
        (message,) = check_settings()
    assert "SAMPLE_RATE" in message.hint


@pytest.mark.parametrize(
    ("middleware", "installed", "expected"),
    [
        ([HW, "django.middleware.common.CommonMiddleware"], True, []),
        (["django.middleware.common.CommonMiddleware"], True, ["hopwatch.W001"]),
        (["django.middleware.common.CommonMiddleware", HW], True, ["hopwatch.W002"]),
        ([HW], False, ["hopwatch.W003"]),
        (["django.middleware.common.CommonMiddleware", HW], False, ["hopwatch.W002", "hopwatch.W003"]),
    ],
)
def test_middleware_check(middleware, installed, expected):
    apps_list = ["django.contrib.contenttypes", "django.contrib.auth"]
    if installed:
        apps_list.append("hopwatch")
    with override_settings(MIDDLEWARE=middleware, INSTALLED_APPS=apps_list):
        assert ids(check_middleware()) == expected


SECURITY = "django.middleware.security.SecurityMiddleware"
WHITENOISE = "whitenoise.middleware.WhiteNoiseMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"


@pytest.mark.parametrize(
    "above, named",
    [
        ([SECURITY], SECURITY),
        ([SECURITY, WHITENOISE], f"{SECURITY} and {WHITENOISE}"),
        ([SECURITY, WHITENOISE, SESSION], f"{SECURITY}, {WHITENOISE} and {SESSION}"),
        (  # one past the three named in full (ABOVE_NAMED)
            [SECURITY, WHITENOISE, SESSION, COMMON],
            f"{SECURITY}, {WHITENOISE}, {SESSION} and 1 more",
        ),
        (
            [SECURITY, WHITENOISE, SESSION, COMMON, CSRF],
            f"{SECURITY}, {WHITENOISE}, {SESSION} and 2 more",
        ),
    ],
)
def test_w002_names_every_middleware_above_hopwatch(above, named):
    """Before, it named only the first (SecurityMiddleware) when WhiteNoise and sessions
    stood above hopwatch's too: moving that one left the warning standing."""
    below = "django.middleware.clickjacking.XFrameOptionsMiddleware"
    with override_settings(MIDDLEWARE=[*above, HW, below]):
        (message,) = check_middleware()
    assert message.id == "hopwatch.W002"
    assert message.msg == (
        f"{HW} is not first in MIDDLEWARE: middleware above it ({named}) is not covered"
        " and may change what it sees."
    )


def test_a_file_output_that_cannot_be_written_is_a_warning(tmp_path):
    """Before, a path in a directory that does not exist passed every check, and each
    request's line was an internal error, said once on hopwatch's logger."""
    def problems_of(output):
        with override_settings(HOPWATCH={"OUTPUT": output}):
            return check_logging()

    assert problems_of(str(tmp_path / "hops.log")) == []
    (tmp_path / "old.log").write_text("")
    assert problems_of(str(tmp_path / "old.log")) == []
    (message,) = problems_of(str(tmp_path / "missing" / "hops.log"))
    assert message.id == "hopwatch.W007"
    assert message.msg == (
        f"HOPWATCH[\"OUTPUT\"] is {str(tmp_path / 'missing' / 'hops.log')!r}, which is in"
        f" {str(tmp_path / 'missing')!r}, which does not exist: the request lines would be"
        " lost (each failed write counted as an internal error)."
    )
    (tmp_path / "dir.log").mkdir()
    assert "which is a directory:" in problems_of(str(tmp_path / "dir.log"))[0].msg
    assert not (tmp_path / "hops.log").exists()  # checked, never created


def test_a_profile_dir_no_profile_would_be_written_to_is_a_warning(tmp_path):
    """PROFILE_DIR had no check: a server runs none, but ``manage.py check`` (and a
    deploy's) now says what each profile's run-time judgement would refuse, creating
    nothing."""

    def problems_of(directory, **more):
        with override_settings(HOPWATCH={"PROFILE_DIR": str(directory), **more}):
            return check_profile_dir()

    assert problems_of(tmp_path / "made" / "later") == []
    assert not (tmp_path / "made").exists()  # checked, never created
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    assert problems_of(own) == []
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (message,) = problems_of(shared)
    assert message.id == "hopwatch.W008"
    assert message.msg == (
        f"HOPWATCH[\"PROFILE_DIR\"] {str(shared)!r} may be written to by its group or by"
        " others (mode 0777): no profile would be written there (the requests are served,"
        " their lines name no profile)."
    )
    assert problems_of(shared, ENABLED=False) == []
    with override_settings(HOPWATCH={"PROFILE_DIR": str(shared)}):  # registered, as a security check
        assert "hopwatch.W008" in ids(checks.run_checks(tags=[checks.Tags.security]))
    if os.geteuid() == 0:  # only root can give a directory away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        assert "is owned by uid 65534" in problems_of(theirs)[0].msg
    (tmp_path / "file").write_text("")
    assert "is not a directory" in problems_of(tmp_path / "file")[0].msg
    assert "may not create it in" in problems_of(tmp_path / "file" / "sub")[0].msg
    with override_settings(HOPWATCH={}):
        assert check_profile_dir() == []  # profiling not configured


def _without_permission_bypass() -> list[str] | None:
    """A command prefix that runs a program as this user without the capabilities that
    bypass file permissions (root's CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
    [] for a user who has none, None where root cannot drop them here."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    caps = "dac_override,dac_read_search,fowner"
    if shutil.which("setpriv"):
        return ["setpriv", "--bounding-set=" + ",".join("-" + c for c in caps.split(","))]
    if shutil.which("capsh"):
        drop = ",".join("cap_" + c for c in caps.split(","))
        return ["capsh", f"--drop={drop}", "--", "-c", 'exec "$0" "$@"']
    return None


def _checked_without_permission(tmp_path: Path, hopwatch_setting: str, cwd: Path) -> list[str]:
    """The hopwatch messages (sorted) of ``manage.py check`` run in ``cwd`` by a process
    without permission to write in ``tmp_path / "locked"`` (made read-only here, writable
    again after), the test settings with ``HOPWATCH = hopwatch_setting`` (its source).
    Skips where root cannot drop the capabilities that bypass permissions."""
    prefix = _without_permission_bypass()
    if prefix is None:
        pytest.skip("running as root, with neither setpriv nor capsh to drop CAP_DAC_OVERRIDE")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555, exist_ok=True)
    locked.chmod(0o555)
    (tmp_path / "probe_settings.py").write_text(
        f"from tests.settings import *  # noqa\nHOPWATCH = {hopwatch_setting}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    # the hopwatch under test (a mutant's, a built one's), then the tests' package
    src = str(Path(hopwatch.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), src, str(ROOT)])
    env["DJANGO_SETTINGS_MODULE"] = "probe_settings"
    script = (
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'check'])\n"
    )
    try:
        # exit status 0: the process so started may not write in locked/
        probe = f"import os, sys; sys.exit(os.access({str(locked)!r}, os.W_OK))"
        if subprocess.run([*prefix, sys.executable, "-c", probe], timeout=60).returncode:
            pytest.skip(f"{prefix} could not drop the capabilities that bypass permissions")
        done = subprocess.run(
            [*prefix, sys.executable, "-c", script], cwd=cwd, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stderr.splitlines() if "(hopwatch." in line)


def test_files_this_process_may_not_write_are_warned_by_manage_py_check(tmp_path):
    """W007 for an OUTPUT file that exists and this process may not write to, and W008
    for a missing PROFILE_DIR in a directory it may not create it in: ``manage.py
    check`` in a process without permission to write there (root runs it without the
    capabilities that bypass permissions; root's own run would be right not to warn)."""
    output = tmp_path / "theirs.log"
    output.write_text("{}\n")
    output.chmod(0o444)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    profile_dir = locked / "profiles"
    warned = _checked_without_permission(
        tmp_path, f"{{'OUTPUT': {str(output)!r}, 'PROFILE_DIR': {str(profile_dir)!r}}}", tmp_path
    )
    assert warned == [
        f"?: (hopwatch.W007) HOPWATCH[\"OUTPUT\"] is {str(output)!r}, which exists and this"
        " process may not write to it: the request lines would be lost (each failed write"
        " counted as an internal error).",
        f"?: (hopwatch.W008) HOPWATCH[\"PROFILE_DIR\"] {str(profile_dir)!r} does not exist"
        f" and this process may not create it in {str(locked)!r}: no profile would be"
        " written there (the requests are served, their lines name no profile).",
    ]
    assert output.read_text() == "{}\n" and not profile_dir.exists()  # checked, not touched


def test_a_missing_output_file_in_a_folder_this_process_may_not_write_is_warned(tmp_path):
    """W007 for an OUTPUT file that does not exist, in a folder this process may not
    create it in (``manage.py check`` without permission to write there, as above)."""
    output = tmp_path / "locked" / "hops.log"
    warned = _checked_without_permission(tmp_path, f"{{'OUTPUT': {str(output)!r}}}", tmp_path)
    assert warned == [
        f"?: (hopwatch.W007) HOPWATCH[\"OUTPUT\"] is {str(output)!r}, which does not exist"
        f" and this process may not create it in {str(tmp_path / 'locked')!r}: the request"
        " lines would be lost (each failed write counted as an internal error).",
    ]
    assert not output.exists()  # checked, not created


def test_stdout_output_run_from_a_folder_this_process_may_not_write_is_no_warning(tmp_path):
    """OUTPUT ``"stdout"`` is the process's standard output, not a file ``./stdout``:
    ``manage.py check`` run from a folder it may not write in says nothing of it."""
    warned = _checked_without_permission(tmp_path, "{'OUTPUT': 'stdout'}", tmp_path / "locked")
    assert warned == []


def test_stdout_output_beside_a_directory_named_stdout_is_no_warning(tmp_path, monkeypatch):
    """The same in this process: a directory named ``stdout`` where the check runs is
    not the output (as a file path it would be W007, "is a directory")."""
    (tmp_path / "stdout").mkdir()
    monkeypatch.chdir(tmp_path)
    with override_settings(HOPWATCH={"OUTPUT": "stdout"}):
        assert check_logging() == []
    with override_settings(HOPWATCH={"OUTPUT": "./stdout"}):  # the file path: a directory
        assert [m.msg.split(": the request lines")[0] for m in check_logging()] == [
            f"HOPWATCH[\"OUTPUT\"] is {str(tmp_path / 'stdout')!r}, which is a directory"
        ]  # (a relative path is read against the working directory)


def test_logging_check_fires_when_lines_would_be_lost():
    logger = logging.getLogger("hopwatch-unconfigured")
    assert not logger.handlers
    with override_settings(HOPWATCH={"LOGGER_NAME": "hopwatch-unconfigured"}):
        assert ids(check_logging()) == ["hopwatch.W004"]
    with override_settings(HOPWATCH={"LOGGER_NAME": "hopwatch-unconfigured", "OUTPUT": "stdout"}):
        assert ids(check_logging()) == []
    with override_settings(HOPWATCH={"ENABLED": False, "LOGGER_NAME": "hopwatch-unconfigured"}):
        assert ids(check_logging()) == []
    assert ids(check_logging()) == []  # the test settings configure the hopwatch logger


# --- hopwatch.I001: versions hopwatch was not tested on ----------------------------------


def test_every_environment_of_the_matrix_is_a_tested_version():
    # dev.py's ENVIRONMENTS and hopwatch._versions name the same matrix.
    assert check_versions() == []


@pytest.mark.parametrize(
    ("version", "tested"),
    [
        ((5, 2, 19, "final", 0), True),
        ((5, 2, 0, "final", 0), True),
        ((6, 0, 10, "final", 0), True),
        ((6, 1, 3, "final", 0), True),
        ((6, 1, 0, "rc", 1), False),
        ((6, 2, 0, "alpha", 0), False),
        ((6, 2, 0, "final", 0), False),
        ((7, 0, 0, "final", 0), False),
        ((5, 1, 15, "final", 0), False),
    ],
)
def test_untested_django_versions(version, tested):
    assert (_versions.django_untested(version) is None) == tested


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        ([Provider("asgiref", "3.8.1")], None),
        ([Provider("asgiref", "3.9.1")], None),
        ([Provider("asgiref", "3.13.0")], None),
        ([Provider("asgiref", "3.13.7")], None),
        ([Provider("asgiref", "3.14.0")], "tested with the asgiref distribution 3.8.1 up to"),
        ([Provider("asgiref", "3.8.0")], "tested with the asgiref distribution 3.8.1 up to"),
        ([Provider("asgiref", "3.14.0rc1")], "tested with the asgiref distribution 3.8.1 up to"),
        ([Provider("asgire", "3.13.0")], "comes from the distribution 'asgire' 3.13.0, not asgiref"),
        ([], "no installed distribution provides the imported asgiref module"),
        ([Provider("asgiref", "3.13.0"), Provider("asgire", "3.13.0")], "several distributions (asgiref 3.13.0, asgire 3.13.0)"),
    ],
)
def test_untested_asgiref_distributions(providers, expected):
    reason = _versions.asgiref_untested("3.13.0", providers)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


def test_the_installed_asgiref_is_found_by_its_distribution():
    import asgiref

    (provider,) = _versions.module_providers(asgiref)
    assert provider.name == "asgiref" and provider.version == asgiref.__version__


def _fork_wheel(directory: Path) -> Path:
    """A wheel of a fork named ``asgire`` that installs itself as the ``asgiref`` module.

    Its files are the installed asgiref's, so it works; its metadata names
    another distribution, and its ``asgiref.__version__`` is upstream's.
    """
    import asgiref

    source = Path(asgiref.__file__).parent
    dist_info = f"asgire-{asgiref.__version__}.dist-info"
    wheel = directory / f"asgire-{asgiref.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, f"asgiref/{path.relative_to(source).as_posix()}")
        archive.writestr(
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: asgire\nVersion: {asgiref.__version__}\n",
        )
        archive.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: hopwatch-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{dist_info}/RECORD", "")  # pip writes the real one
    return wheel


def test_a_fork_installed_as_the_asgiref_module_is_named_and_hopwatch_keeps_working(tmp_path):
    target = tmp_path / "site"
    wheel = _fork_wheel(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True, timeout=120,
    )  # fmt: skip
    seen, stderr = check_and_one_request(
        "import asgiref", "asgiref.__file__", [str(target), str(ROOT)], tmp_path
    )
    assert seen["seen"].startswith(str(target))  # the fork's module was the one imported
    assert seen["status"] == 200 and seen["hops"] == [2]  # request_started and close, as ever
    # check prints the I001 message on stderr (an INFO)
    assert "(hopwatch.I001) hopwatch runs on asgiref" in stderr
    assert "the asgiref module comes from the distribution 'asgire'" in stderr


def test_the_start_up_warning_of_a_missing_accelerator_is_silenced_as_its_check(monkeypatch):
    from hopwatch import _hotpath, apps

    said = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = said.append  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(collector)
    monkeypatch.setattr(_hotpath, "UNAVAILABLE", "a build that failed")
    try:
        for silenced in (["hopwatch.W006"], []):
            monkeypatch.setattr(apps, "_accelerator_warned", False)
            with override_settings(SILENCED_SYSTEM_CHECKS=silenced):
                apps._warn_without_accelerator()
    finally:
        logging.getLogger("hopwatch").removeHandler(collector)
    assert [record.getMessage().endswith("(hopwatch.W006)") for record in said] == [True]


@pytest.mark.parametrize("chosen", [False, True], ids=["not-loadable", "pure-python-chosen"])
def test_a_c_accelerator_that_does_not_load_is_reported_and_hopwatch_keeps_counting(chosen):
    """W006 when hopwatch._speedups cannot be imported (here: blocked in sys.modules, as
    a failed build or load leaves it), not when HOPWATCH_PURE_PYTHON chose the reference;
    either way the pure-Python path counts the request's hops."""
    seen, stderr = check_and_one_request(
        'import sys; sys.modules["hopwatch._speedups"] = None  # the import raises ImportError',
        "sys.modules['hopwatch._hotpath'].IMPLEMENTATION",
        [str(ROOT)],
        ROOT,
        HOPWATCH_PURE_PYTHON="1" if chosen else "",
        DJANGO_SETTINGS_MODULE="tests.settings_stderr",
    )
    assert seen == {"seen": "python", "status": 200, "hops": [2]}
    reported = "(hopwatch.W006) hopwatch's C accelerator (hopwatch._speedups) did not load"
    assert (reported in stderr) is not chosen
    # and once at start-up on the hopwatch logger, which a server's logs carry (it runs
    # no system checks)
    logged = (
        "hopwatch's C accelerator (hopwatch._speedups) did not load (import of"
        " hopwatch._speedups halted; None in sys.modules): hopwatch runs its pure-Python"
        " hop path, with the same counts and names, at several times the cost per hop."
        " Reinstall hopwatch where a C compiler"
    )
    assert stderr.count(logged) == (0 if chosen else 1)
    if not chosen:
        assert "import of hopwatch._speedups halted" in stderr


# --- hopwatch.W004: where the lines would go, handler by handler -------------------------


def test_lines_lost_to_follows_the_record_to_each_handler_it_would_reach():
    """Before, a logger enabled for INFO with any handler in its chain passed, whatever
    the handlers' levels and filters."""
    from django.utils.log import CallbackFilter, RequireDebugTrue

    from hopwatch.conf import lines_lost_to

    parent, child = logging.getLogger("hw-w004"), logging.getLogger("hw-w004.lines")
    parent.setLevel(logging.INFO)
    parent.propagate = False  # not to the root's handlers (pytest's own)
    warning_only = logging.NullHandler(logging.WARNING)
    warning_only.name = "console"
    try:
        parent.addHandler(warning_only)
        assert "refuses INFO records: NullHandler 'console' (level WARNING)" in lines_lost_to(
            "hw-w004.lines"
        )
        debug_only = logging.NullHandler()
        debug_only.addFilter(RequireDebugTrue())  # DEBUG is False in the test settings
        child.addHandler(debug_only)
        assert "NullHandler (its filters), NullHandler 'console'" in lines_lost_to(
            "hw-w004.lines"
        )
        with override_settings(DEBUG=True):
            assert lines_lost_to("hw-w004.lines") is None
        child.removeHandler(debug_only)
        parent.addHandler(logging.NullHandler(logging.INFO))  # one that takes them
        assert lines_lost_to("hw-w004.lines") is None
        child.propagate = False  # ... but the record never gets there
        assert "neither it nor a logger it propagates to has a handler" in lines_lost_to(
            "hw-w004.lines"
        )
        child.propagate = True
        child.addFilter(CallbackFilter(lambda record: False))  # the logger's own filter
        assert "that logger's filters drop them" in lines_lost_to("hw-w004.lines")
    finally:
        for logger in (parent, child):
            logger.handlers.clear()
            logger.filters.clear()
            logger.propagate = True
        parent.setLevel(logging.NOTSET)


_ROOT_AT_WARNING = """
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
"""

_DEBUG_ONLY = """
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"require_debug_true": {"()": "django.utils.log.RequireDebugTrue"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["require_debug_true"]},
    },
    "loggers": {"hopwatch": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
"""


@pytest.mark.parametrize(
    ("logging_settings", "why"),
    [
        (_ROOT_AT_WARNING, "StreamHandler 'console' (level WARNING)"),
        (_DEBUG_ONLY, "StreamHandler 'console' (its filters)"),
    ],
    ids=["root-handler-at-warning", "require-debug-true"],
)
def test_w004_and_the_run_time_warning_see_a_handler_that_refuses_info(
    tmp_path, logging_settings, why
):
    """The tester's LOGGING: check said nothing, requests wrote nothing and warned nothing."""
    from tests.test_startup import run

    seen, stderr = run(
        tmp_path,
        logging_settings,
        """
        import io, json
        from django.core.management import call_command
        from django.test import Client
        out = io.StringIO()
        call_command("check", stdout=out, stderr=out)
        Client().get("/sync/")
        Client().get("/sync/")
        print(json.dumps({"check": out.getvalue()}))
        """,
    )
    lost = (
        "hopwatch writes request lines to the logger 'hopwatch' at INFO, but every handler"
        f" that would receive them refuses INFO records: {why}: the lines are lost."
    )
    assert f"(hopwatch.W004) {lost}" in seen["check"]
    if logging_settings is _ROOT_AT_WARNING:  # the warning gets through; no line does
        assert stderr == [f"{lost} Add a handler for it to LOGGING, or set HOPWATCH[\"OUTPUT\"]"
                          ' to "stdout" or a file (hopwatch.W004).']  # fmt: skip
    else:  # the same filter drops the warning too: nothing on stderr, as said in the docs
        assert stderr == []
