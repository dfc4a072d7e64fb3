"""``hopwatch audit`` on bad settings and an output it cannot write: one line on stderr,
exit status 2, no traceback (docs/audit.md)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import into_a_full_file, with_the_reader_gone

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    "PYTHONPATH": str(ROOT / "src"),
}
AUDIT = [sys.executable, "-m", "hopwatch", "audit", "--samples", "1"]


@pytest.mark.parametrize("format_name", ["text", "json", "rich"])
def test_a_failed_write_to_stdout_is_one_line_and_status_2(
    tmp_path: Path, format_name: str
) -> None:
    if format_name == "rich":
        pytest.importorskip("rich")
    done = into_a_full_file(
        [*AUDIT, "--settings", "tests.settings", "--format", format_name],
        tmp_path / "stdout",
        cwd=ROOT,
        env=ENV,
        timeout=120,
    )
    assert done.stderr.decode() == (
        "hopwatch audit: error: cannot write the audit to standard output: File too large\n"
    )
    assert done.returncode == 2


def test_a_closed_stdout_is_one_line_and_status_2() -> None:
    command = f"{shlex.join(AUDIT)} --settings tests.settings >&-"
    done = subprocess.run(
        command, shell=True, cwd=ROOT, env=ENV, capture_output=True, timeout=120, check=False
    )
    assert done.stderr.decode() == (
        "hopwatch audit: error: cannot write the audit to standard output: it is closed\n"
    )
    assert done.returncode == 2


@pytest.mark.parametrize("format_name", ["rich", "text", "json"])
def test_a_reader_gone_before_the_audit_is_status_0_whatever_the_format(
    format_name: str,
) -> None:
    if format_name == "rich":
        pytest.importorskip("rich")
    status, err = with_the_reader_gone(
        [*AUDIT, "--settings", "tests.settings", "--format", format_name],
        timeout=120,
        cwd=ROOT,
        env=ENV,
    )
    assert (status, err) == (0, "")


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ("None", "not None"),
        ("5", "not an int"),
        ('"django.middleware.common.CommonMiddleware"', "not a string"),
        ('{"django.middleware.common.CommonMiddleware"}', "not a set"),
        ('["django.middleware.common.CommonMiddleware", None]', "but its entry 1 is None"),
    ],
)
def test_middleware_that_is_not_a_list_of_dotted_paths_is_one_line_and_status_2(
    tmp_path: Path, middleware: str, expected: str
) -> None:
    (tmp_path / "odd_settings.py").write_text(f'SECRET_KEY = "x"\nMIDDLEWARE = {middleware}\n')
    done = _audit_settings(tmp_path, "odd_settings")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"hopwatch audit: error: MIDDLEWARE must be a list or tuple of dotted paths, {expected}\n"
    )


def _audit_settings(
    tmp_path: Path, module: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """``hopwatch audit`` on the settings module ``module`` written in ``tmp_path``."""
    return subprocess.run(
        [*AUDIT, "--settings", module, "--pythonpath", str(tmp_path), *options],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("sets_it", [False, True])
def test_a_settings_module_that_does_not_set_middleware_is_said_so(
    tmp_path: Path, sets_it: bool
) -> None:
    """With split settings, ``--settings mysite.settings`` names the package, whose
    ``__init__`` sets no MIDDLEWARE: the audit said only "MIDDLEWARE is empty", as if
    the project had none."""
    text = 'SECRET_KEY = "x"\n' + ("MIDDLEWARE = []\n" if sets_it else "")
    (tmp_path / "split_settings.py").write_text(text)
    done = _audit_settings(tmp_path, "split_settings", "--format", "text")
    assert done.returncode == 0, done.stderr
    said = "problem: split_settings does not set MIDDLEWARE, so Django's default (empty) is audited"
    assert (said in " ".join(done.stdout.split())) is not sets_it


#: What a project's exception text can carry: clear the screen, set the window title.
CONTROL = "\x1b[2J\x1b]0;owned\x07"
#: ... and how the one line on stderr writes it (as hopwatch report escapes a path).
ESCAPED = "\\x1b[2J\\x1b]0;owned\\x07"


@pytest.mark.parametrize(
    ("files", "module", "expected"),
    [
        (
            {
                "mw_settings.py": 'SECRET_KEY = "x"\nMIDDLEWARE = ["evil_mw.Anything"]\n',
                "evil_mw.py": f"raise RuntimeError('bad FEATURE_FLAGS=' + {CONTROL!r})\n",
            },
            "mw_settings",
            "cannot import middleware 'evil_mw.Anything': RuntimeError: bad FEATURE_FLAGS="
            + ESCAPED,
        ),
        (
            {"bad_settings.py": f"raise ValueError('DATABASE_URL is invalid: ' + {CONTROL!r})\n"},
            "bad_settings",
            "cannot load the settings 'bad_settings': ValueError: DATABASE_URL is invalid: "
            + ESCAPED,
        ),
    ],
    ids=["middleware", "settings"],
)
def test_the_projects_control_characters_reach_stderr_escaped(
    tmp_path: Path, files: dict[str, str], module: str, expected: str
) -> None:
    """Before: the exception's text went to stderr as it was, its escape sequences
    cleared the user's screen and set the terminal's title."""
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    done = _audit_settings(tmp_path, module)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"hopwatch audit: error: {expected}\n"


def test_the_one_line_escapes_every_character_as_the_report_does() -> None:
    """A one-line error and the report (hopwatch.report.text.clean, with its cached
    table) escape every code point alike: one rule, hopwatch._cli.escaped."""
    from hopwatch._cli import printable
    from hopwatch.report.text import clean

    every = "".join(map(chr, range(sys.maxunicode + 1)))
    assert printable(every) == clean(every)
    assert printable("caf\u00e9 \u65e5\U0001f600 \x1b[2J\u202e\u200b\x85") == (
        "caf\u00e9 \u65e5\U0001f600 \\x1b[2J\\u202e\\u200b\\x85"
    )
