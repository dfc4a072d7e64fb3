"""The ``hopwatch`` command on a standard output that is not UTF-8, a closed pipe and
``COLUMNS=0``: the documented output and exit status, never a traceback.

A C locale without UTF-8 mode gives stdout the ASCII codec with ``surrogateescape``,
``PYTHONIOENCODING=ascii`` with ``strict``, a redirected stdout on Windows cp1252.
Text for people gets backslash escapes there ("\\xb5s"); the data formats (csv, html)
are written as UTF-8, as ``-o FILE`` writes them, so that a cell keeps its route.
Each case runs the command in a child process with the environment in question.
"""

from __future__ import annotations

import csv
import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import with_the_reader_gone
from tests.report.samples import line

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
HOPWATCH = [sys.executable, "-m", "hopwatch"]
DJANGO_ADMIN = [sys.executable, "-m", "django"]
C_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
ROUTE = "/café/<int:pk>/日本/"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHONIOENCODING", "LC_", "LANG", "PYTHONUTF8", "DJANGO_", "COLUMNS"))
    }
    env["PYTHONPATH"] = str(SRC)
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*HOPWATCH, *args], env=env, cwd=ROOT, capture_output=True, timeout=120, check=False, **kwargs
    )


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_text(line(route=ROUTE, view="app.views.vue_élève") + "\n", encoding="utf-8")
    return path


ENCODINGS = [C_LOCALE, {"PYTHONIOENCODING": "ascii"}, {"PYTHONIOENCODING": "cp1252"}]
ENCODING_IDS = ["c-locale", "ascii", "cp1252"]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=ENCODING_IDS)
@pytest.mark.parametrize("format_name", ["text", "markdown"])
def test_a_table_on_a_narrow_stdout_gets_escapes(log: Path, encoding, format_name: str) -> None:
    done = _run(["report", str(log), "--format", format_name], _env(**encoding))
    assert (done.returncode, done.stderr) == (0, b"")
    # (markdown escapes the route's "<" and ">" as well)
    if encoding.get("PYTHONIOENCODING") == "cp1252":  # é is in cp1252; 日本 is not
        assert "GET /café/".encode("cp1252") in done.stdout
    else:
        assert b"GET /caf\\xe9/" in done.stdout
    ending = b"/\\u65e5\\u672c/ |" if format_name == "markdown" else b"/\\u65e5\\u672c/ "
    assert ending in done.stdout


@pytest.mark.parametrize("encoding", ENCODINGS, ids=ENCODING_IDS)
@pytest.mark.parametrize("format_name", ["text", "rich"])
def test_a_table_on_a_narrow_stdout_is_padded_as_escaped(
    tmp_path: Path, encoding, format_name: str
) -> None:
    """The stream's escapes are wider than the characters: the cells are escaped before
    they are measured and padded, so every row's columns line up (they were padded to the
    characters' width, and the escapes pushed the rest of the row right)."""
    log = tmp_path / "app.log"
    rows = [line(route=route, request_id=f"r{i}") for i, route in enumerate([ROUTE, "/plain/"])]
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = _run(["report", str(log), "--format", format_name], _env(COLUMNS="200", **encoding))
    assert (done.returncode, done.stderr) == (0, b"")
    lines = done.stdout.decode("cp1252" if "PYTHONIOENCODING" in encoding else "ascii")
    header, *table = lines.split("\n\n")[1].splitlines()
    if format_name == "rich":  # its rule: "─" is in neither encoding
        assert table.pop(0) == "-" * len(header)
    escaped = "/\\u65e5\\u672c/"
    cafe = "café" if encoding.get("PYTHONIOENCODING") == "cp1252" else "caf\\xe9"
    assert [row[:3] + row[3:].split("  ", 1)[0] for row in table] == [
        f"1  GET /{cafe}/<int:pk>{escaped}",
        "2  GET /plain/",
    ]
    end = header.index("requests") + len("requests")
    assert [row[end - 1 : end + 1] for row in table] == ["1 ", "1 "]
    assert len({row.index("ms ") for row in table}) == 1


def test_a_name_cut_on_an_ascii_stdout_is_cut_with_a_tilde(tmp_path: Path) -> None:
    """A "…" would be written as ``\\u2026``, six columns where the table gave it one."""
    log = tmp_path / "app.log"
    route = "/" + "é" * 60 + "/"
    log.write_text(line(route=route) + "\n", encoding="utf-8")
    env = _env(COLUMNS="80", PYTHONIOENCODING="ascii")
    done = _run(["report", str(log), "--format", "rich"], env)
    assert (done.returncode, done.stderr) == (0, b"")
    header, rule, row = done.stdout.decode("ascii").split("\n\n")[1].splitlines()
    assert rule == "-" * len(header) and len(row) <= 80
    label = row[3 : row.index("  ", 3)]
    # cut in the middle of what the stream writes, never inside an escape (half of
    # "\xe9" on either side of the "~" read as other text: "\~9")
    assert label == "GET /" + "\\xe9" * 4 + "~" + "\\xe9" * 5 + "/"
    assert row.index(" 1 ") == header.index("requests") + len("requests") - 2


@pytest.mark.parametrize("encoding", ENCODINGS, ids=ENCODING_IDS)
def test_csv_on_a_narrow_stdout_is_utf8_and_keeps_the_route(log: Path, encoding) -> None:
    done = _run(["report", str(log), "--format", "csv"], _env(**encoding))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode("utf-8"))))
    assert [(row["route"], row["view"]) for row in rows] == [(ROUTE, "app.views.vue_élève")]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=ENCODING_IDS)
def test_html_on_a_narrow_stdout_is_the_utf8_page_it_says_it_is(
    log: Path, encoding, tmp_path: Path
) -> None:
    done = _run(["report", str(log), "--format", "html"], _env(**encoding))
    assert (done.returncode, done.stderr) == (0, b"")
    page = done.stdout.decode("utf-8")
    assert '<meta charset="utf-8">' in page
    assert "<td>GET /café/&lt;int:pk&gt;/日本/</td>" in page


def test_a_strict_narrow_stderr_gets_escapes_too(log: Path, tmp_path: Path) -> None:
    """Python starts stderr with backslashreplace, but a program that calls the CLI
    may have rewrapped it strictly: "wrote …/café/…" is escaped there, not a traceback."""
    target = tmp_path / "café" / "out.csv"
    target.parent.mkdir()
    script = (
        "import io, sys\n"
        "sys.stderr = io.TextIOWrapper(sys.stderr.buffer, encoding='ascii', errors='strict')\n"
        "from hopwatch.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "sys.stderr.flush()\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "report", str(log), "--format", "csv", "-o", str(target)],
        env=_env(PYTHONIOENCODING="utf-8"),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    wrote = f"hopwatch report: wrote {tmp_path}/caf\\xe9/out.csv\n".encode()
    assert done.stderr.endswith(wrote), done.stderr
    assert [row["route"] for row in csv.DictReader(target.open(encoding="utf-8"))] == [ROUTE]


def test_the_hop_tax_and_the_audit_on_a_c_locale_say_us_escaped(tmp_path: Path) -> None:
    """"µs" is in every audit and every --hop-tax report: a traceback on any log."""
    ascii_log = tmp_path / "ascii.log"
    ascii_log.write_text(line(route="/items/") + "\n")
    done = _run(["report", str(ascii_log), "--hop-tax", "68", "--format", "text"], _env(**C_LOCALE))
    assert (done.returncode, done.stderr) == (0, b"")
    assert b"; hops priced at 68.0 \\xb5s (--hop-tax)\n" in done.stdout
    done = _run(
        ["audit", "--settings", "tests.settings", "--samples", "1", "--format", "text"],
        _env(**C_LOCALE),
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert b" \\xb5s" in done.stdout


def test_manage_py_hopwatch_audit_on_an_ascii_stdout_gets_escapes() -> None:
    env = _env(PYTHONIOENCODING="ascii", PYTHONPATH=os.pathsep.join([str(ROOT), str(SRC)]))
    done = subprocess.run(
        [*DJANGO_ADMIN, "hopwatch_audit", "--settings", "tests.settings", "--samples", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert b" \\xb5s" in done.stdout  # the text format: auto, on a pipe


def test_an_endpoint_typed_on_a_c_locale_is_found(log: Path) -> None:
    """argv's UTF-8 bytes arrive as surrogate escapes there: read back as UTF-8."""
    done = _run(
        ["report", str(log), "--format", "text", "--endpoint", f"GET {ROUTE}"], _env(**C_LOCALE)
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.startswith(b"hopwatch report: GET /caf\\xe9/<int:pk>/\\u65e5\\u672c/, cause by cause\n")


def test_version_into_a_pipe_whose_reader_left_is_silent_and_status_0() -> None:
    assert with_the_reader_gone([*HOPWATCH, "--version"], timeout=60, env=_env()) == (0, "")


@pytest.mark.parametrize(
    "command",
    [["report", "{log}"], ["audit", "--settings", "tests.settings", "--samples", "1"]],
    ids=["report", "audit"],
)
def test_columns_0_on_a_terminal_is_read_as_unset(command: list[str], log: Path) -> None:
    """rich read COLUMNS=0 as a console 0 wide: "invalid width 0" from the first wrap."""
    pytest.importorskip("rich")
    leader, follower = pty.openpty()  # a terminal of no known size: shutil's 80 columns
    try:
        done = subprocess.run(
            [*HOPWATCH, *(word.format(log=log) for word in command)],
            env=_env(COLUMNS="0", TERM="xterm"),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and all was read
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
    assert (done.returncode, done.stderr) == (0, b"")
    assert b"hopwatch" in output
