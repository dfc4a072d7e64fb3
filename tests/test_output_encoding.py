"""Request lines with non-ASCII routes and views on an output that is not UTF-8.

A stdout of another encoding (``PYTHONIOENCODING=ascii``, a C locale without UTF-8
mode, Windows' cp1252 for a redirected stdout) cannot write ``é`` or ``日本``, or
writes them as bytes that are not UTF-8; a ``StreamHandler`` on such a stderr (the
README's ``LOGGING``) writes ``"\\xe9"``, which is not JSON. Every line is written
so that it survives: non-ASCII characters as JSON's own ``\\uXXXX`` escapes where
the stream may not be UTF-8 (always through logging, whose handlers are the
project's), as they are into a file (opened as UTF-8) and a UTF-8 stdout. Real
requests, WSGI and ASGI, in a child process with the encoding in question; the
lines are read back as UTF-8 JSON and by ``hopwatch report``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest
from django.http import HttpResponse
from django.test import Client, override_settings
from django.urls import path

ROOT = Path(__file__).resolve().parent.parent

ROUTE = "/café/<int:pk>/日本/😀/"
VIEW = "__main__.vue_élève"

_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from urllib.parse import quote
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    def vue_élève(request, pk):
        return HttpResponse("ok")

    urlpatterns = [path("café/<int:pk>/日本/😀/", vue_élève)]
    output, buffer = sys.argv[1], int(sys.argv[2])
    logging_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"hopwatch": {"class": "logging.StreamHandler", "formatter": "bare"}},
        "formatters": {"bare": {"format": "%(message)s"}},
        "loggers": {"hopwatch": {"handlers": ["hopwatch"], "level": "INFO", "propagate": False}},
    }
    settings.configure(
        SECRET_KEY="x",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["hopwatch"],
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        ROOT_URLCONF="__main__",
        DATABASES={},
        LOGGING=logging_config,
        HOPWATCH={"OUTPUT": output, "OUTPUT_BUFFER": buffer},
    )
    django.setup()
    from django.core.asgi import get_asgi_application
    from django.test import Client
    from tests.helpers import asgi_call

    assert Client().get(quote("/café/1/日本/😀/")).status_code == 200
    # (not AsyncClient: Django's reads a non-ASCII path as Latin-1, a 404)
    result = asyncio.run(asgi_call(get_asgi_application(), "/café/2/日本/😀/"))
    assert result.status == 200, result
    """
)


def _child_env(**extra: str) -> dict[str, str]:
    # (not PYTHONUNBUFFERED, which the suite's runs set: a server's stdout, a pipe, is
    # block-buffered, and a line is written only as hopwatch flushes it)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("PYTEST_", "DJANGO_", "PYTHONIOENCODING", "LC_", "LANG", "PYTHONUTF8", "PYTHONUNBUFFERED")
        )
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    env.update(extra)
    return env


def _requests(
    tmp_path: Path, output: str, prelude: str = "", *, buffer: int = 0, after: str = "", **env: str
) -> subprocess.CompletedProcess[bytes]:
    """The child's two requests with ``OUTPUT`` ``output`` and ``OUTPUT_BUFFER`` ``buffer``;
    ``prelude`` runs before, ``after`` after them."""
    script = tmp_path / "requests.py"  # a file: a C locale reads `-c`'s non-ASCII as surrogates
    script.write_text(textwrap.dedent(prelude) + _CHILD + textwrap.dedent(after), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), output, str(buffer)],
        cwd=ROOT,
        env=_child_env(**env),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done


def _lines(data: bytes) -> list[dict]:
    """The hopwatch request lines of ``data``, read as UTF-8 (strictly) and JSON."""
    lines = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == "hopwatch.request"]


def _report_routes(path: Path) -> tuple[list[tuple[str, str, str]], str]:
    """(method, route, view) of each row of ``hopwatch report --format csv``, and its summary."""
    done = subprocess.run(
        [sys.executable, "-m", "hopwatch", "report", str(path), "--format", "csv"],
        env=_child_env(PYTHONIOENCODING="utf-8"),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode("utf-8"))))
    return [(r["method"], r["route"], r["view"], r["requests"]) for r in rows], done.stderr.decode()


def _check(data: bytes, tmp_path: Path, *, escaped: bool) -> None:
    lines = _lines(data)
    assert [(line["interface"], line["route"], line["view"]) for line in lines] == [
        ("test-client", ROUTE, VIEW),
        ("asgi", ROUTE, VIEW),
    ]
    # escaped exactly where the stream may not be UTF-8: a UTF-8 one gets the text as is
    assert data.isascii() is escaped
    assert (b'"route":"/caf\\u00e9/<int:pk>/\\u65e5\\u672c/\\ud83d\\ude00/"' in data) is escaped
    log = tmp_path / "read-back.log"
    log.write_bytes(data)
    rows, summary = _report_routes(log)
    assert rows == [("GET", ROUTE, VIEW, "2")]
    assert "2 hopwatch records" in summary and "skipped" not in summary, summary


@pytest.mark.parametrize("buffer", [0, 4096], ids=["each-line", "held"])
@pytest.mark.parametrize("encoding", ["ascii", "cp1252", "latin-1"])
def test_stdout_of_another_encoding_gets_every_line_escaped(encoding, buffer, tmp_path):
    """Each line as it comes, and held lines (``OUTPUT_BUFFER``, written at the exit)."""
    done = _requests(tmp_path, "stdout", buffer=buffer, PYTHONIOENCODING=encoding)
    assert b"internal error" not in done.stderr, done.stderr.decode(errors="replace")
    _check(done.stdout, tmp_path, escaped=True)


def test_stdout_of_a_c_locale_without_utf8_mode(tmp_path):
    done = _requests(tmp_path, "stdout", LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    _check(done.stdout, tmp_path, escaped=True)


def test_a_utf8_stdout_gets_the_characters_as_they_are(tmp_path):
    done = _requests(tmp_path, "stdout", PYTHONIOENCODING="utf-8")
    _check(done.stdout, tmp_path, escaped=False)


def test_each_stdout_line_is_flushed_as_it_is_written(tmp_path):
    """stdout a pipe, block-buffered (no PYTHONUNBUFFERED): each line is on the pipe
    once its request ends, as a log collector tailing it needs; a worker that ends
    without Python's exit (``os._exit``, a kill) has lost none of them."""
    done = _requests(tmp_path, "stdout", after="import os; os._exit(0)", PYTHONIOENCODING="utf-8")
    _check(done.stdout, tmp_path, escaped=False)


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF8", "utf_8"])
def test_a_stdout_rewrapped_as_utf8_by_another_name_gets_the_characters_as_they_are(
    encoding, tmp_path
):
    """The common ``sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="UTF-8")``:
    the wrapper keeps the name as given, which is UTF-8 all the same."""
    prelude = f"""
        import io, sys
        sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="{encoding}", line_buffering=True)
        assert sys.stdout.encoding == "{encoding}"
    """
    done = _requests(tmp_path, "stdout", prelude)
    _check(done.stdout, tmp_path, escaped=False)


#: sys.stdout replaced by a text stream that writes UTF-8 to the real one, with
#: ``encoding`` (TextIOBase's: None, a stream that keeps text as text).
_STDOUT_OF = """
    import io, sys

    class _Text(io.TextIOBase):
        def write(self, text):
            sys.__stdout__.buffer.write(text.encode("utf-8"))
            return len(text)

        def flush(self):
            sys.__stdout__.buffer.flush()

    class _Unknown(_Text):
        encoding = "x-no-such-codec"

    sys.stdout = {stream}()
"""


def test_a_stdout_without_an_encoding_gets_the_characters_as_they_are(tmp_path):
    """A stdout that keeps text as text (``encoding`` None, as io.StringIO's): no escapes."""
    done = _requests(tmp_path, "stdout", _STDOUT_OF.format(stream="_Text"))
    _check(done.stdout, tmp_path, escaped=False)


def test_a_stdout_of_an_encoding_python_does_not_know_gets_every_line_escaped(tmp_path):
    done = _requests(tmp_path, "stdout", _STDOUT_OF.format(stream="_Unknown"))
    _check(done.stdout, tmp_path, escaped=True)


@pytest.mark.parametrize(
    "env",
    [
        {"PYTHONIOENCODING": "ascii"},
        {"PYTHONIOENCODING": "cp1252"},
        {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
        {"PYTHONIOENCODING": "utf-8"},
    ],
    ids=["ascii", "cp1252", "c-locale", "utf-8"],
)
def test_logging_to_a_stream_handler_writes_lines_escaped_whatever_its_encoding(env, tmp_path):
    """The README's LOGGING: a StreamHandler on stderr, whose encoding hopwatch cannot
    know (a handler may be added or its stream set later): escaped always."""
    done = _requests(tmp_path, "logging", **env)
    _check(done.stderr, tmp_path, escaped=True)


def test_a_file_is_utf8_whatever_the_locale(tmp_path):
    path = tmp_path / "hops.log"
    _requests(tmp_path, str(path), LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", PYTHONIOENCODING="ascii")
    _check(path.read_bytes(), tmp_path, escaped=False)


def _vue(request):
    return HttpResponse("ok")


urlpatterns = [path("café/", _vue)]  # the ROOT_URLCONF of the test below


def test_each_stdout_line_is_escaped_for_the_stdout_it_goes_to(capsys):
    """``"stdout"``: a line is escaped for the ``sys.stdout`` it is written to, not for
    the one of the first line (where the logger is made): the first line into an ASCII
    ``redirect_stdout`` is escaped, the next, onto a UTF-8 stdout, keeps ``é``."""
    narrow = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        HOPWATCH={"OUTPUT": "stdout"},
    ):
        with contextlib.redirect_stdout(narrow):
            assert Client().get(quote("/café/")).status_code == 200
        assert Client().get(quote("/café/")).status_code == 200
    narrow.flush()
    assert [line["route"] for line in _lines(narrow.buffer.getvalue())] == ["/café/"]
    assert b'"route":"/caf\\u00e9/"' in narrow.buffer.getvalue()
    out = capsys.readouterr().out
    assert [line["route"] for line in _lines(out.encode())] == ["/café/"]
    assert '"route":"/café/"' in out
