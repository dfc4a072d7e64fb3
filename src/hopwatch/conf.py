"""hopwatch's settings: one ``HOPWATCH`` dict in the project's settings.

Every setting is one entry of :data:`SETTINGS`: its default, what a valid value
is, and what it means (``docs/settings.md`` shows that table, and a test keeps
the two identical). Settings are checked when hopwatch starts
(:func:`validate`, from ``HopwatchConfig.ready()``): a bad one stops start-up
with one clear error, since production servers never run the system checks.

Read lazily on every access, so ``override_settings(HOPWATCH=...)`` works in
tests (``ENABLED`` excepted: it is read once, at start-up); a bad value given that
way is replaced by its default (and said once on the ``hopwatch`` logger), so it can
never break a request.
"""

from __future__ import annotations

import numbers
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings as django_settings

#: Headers never read as a request id, whatever REQUEST_ID_HEADER says: they carry secrets.
CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-csrftoken", "x-api-key"}
)
#: OUTPUT values that are not a file path.
OUTPUT_TARGETS: Final = ("logging", "stdout")
#: OUTPUT_BUFFER's smallest and largest sizes, other than 0 (off).
OUTPUT_BUFFER_RANGE: Final = (4096, 4 * 1024 * 1024)


@dataclass(frozen=True)
class Setting:
    """One ``HOPWATCH`` key."""

    default: Any
    #: Whether a value is valid.
    valid: Callable[[Any], bool]
    #: What a valid value is, for error messages ("a number from 0.0 to 1.0").
    expected: str
    #: What it does: the "meaning" column of docs/settings.md (markdown).
    meaning: str
    #: A secret: its value is never shown in a message (its length is).
    secret: bool = False


def _number(low: float, high: float | None) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return value >= low and (high is None or value <= high)

    return ok


def _count(value: Any) -> bool:
    # At most sys.maxsize: the accelerator keeps counts and limits as C sizes.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= sys.maxsize


def _positive(value: Any) -> bool:
    return _count(value) and value > 0


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _output(value: Any) -> bool:
    """``logging``, ``stdout``, or something that reads as a file path (a ``str`` or an
    ``os.PathLike``, ``BASE_DIR / "hops.log"``): a directory part or a suffix. A bare word
    ("stderr", "file") is far more likely a mistake than a file name."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)  # a path, never "logging" or "stdout"
    elif value in OUTPUT_TARGETS:
        return True
    if not isinstance(value, str) or not value.strip():
        return False
    head, tail = os.path.split(value)
    return bool(tail) and (bool(head) or "." in tail.strip("."))


def _output_buffer(value: Any) -> bool:
    low, high = OUTPUT_BUFFER_RANGE
    return _count(value) and (value == 0 or low <= value <= high)


#: A header name as HTTP defines one (RFC 9110's token): ASCII only.
_TOKEN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
#: What a header name may be made of, for messages.
TOKEN_CHARACTERS: Final = "ASCII letters, digits and !#$%&'*+-.^_`|~"


def is_header_name(name: object) -> bool:
    """Whether ``name`` is a header name (an HTTP token): only ASCII letters, digits and
    ``!#$%&'*+-.^_`|~``. Django finds a header in ``request.META`` by upper-casing its name
    with ``str.upper()``, which turns some other letters into ASCII ones (U+0131, a
    dotless i, into ``I``; U+017F, a long s, into ``S``): ``"Cook\\u0131e"`` reads
    ``HTTP_COOKIE``."""
    return isinstance(name, str) and _TOKEN.fullmatch(name) is not None


def meta_key(name: str) -> str:
    """The ``request.META`` key Django files the header ``name`` under, folded as its
    handlers fold a header's name (``"HTTP_" + name.upper()``, ``-`` as ``_``)."""
    return "HTTP_" + name.upper().replace("-", "_")


_CREDENTIAL_KEYS: Final = frozenset(meta_key(name) for name in CREDENTIAL_HEADERS)


def hidden_by_django(name: str) -> bool:
    """Whether Django's error reports (the ``DEBUG`` page, the e-mail to ``ADMINS``) hide
    the header ``name``'s value: its ``request.META`` key matches the default
    ``SafeExceptionReporterFilter.hidden_settings`` (``API``, ``AUTH``, ``TOKEN``, ``KEY``,
    ``SECRET``, ``PASS``, ``SIGNATURE``, ``HTTP_COOKIE``, in any case)."""
    from django.views.debug import SafeExceptionReporterFilter

    return SafeExceptionReporterFilter.hidden_settings.search(meta_key(name)) is not None


def is_credential_header(name: str) -> bool:
    """Whether the header ``name`` must never be read as a request id: one that carries
    a credential (``Authorization``, ``Cookie``, ...) or that Django's error reports hide
    as a secret (``X-Hopwatch-Profile-Token``), compared on the ``request.META`` key Django
    reads it under (``X_Api_Key`` is ``X-Api-Key``); or no header name at all (not an HTTP
    token: ``"Cook\\u0131e"`` reaches ``HTTP_COOKIE``)."""
    if not is_header_name(name):
        return True
    return meta_key(name) in _CREDENTIAL_KEYS or hidden_by_django(name)


def request_id_meta_key(name: str) -> str | None:
    """The ``request.META`` key REQUEST_ID_HEADER ``name`` is read from, or None for a
    header never read as a request id (:func:`is_credential_header`)."""
    return None if is_credential_header(name) else meta_key(name)


def _request_id_header(value: Any) -> bool:
    if value is None or value == "":
        return True
    return isinstance(value, str) and not is_credential_header(value)


def _profile_header(value: Any) -> bool:
    if value is None or value == "":
        return True
    return isinstance(value, str) and is_header_name(value) and hidden_by_django(value)


def _meta_spelling(value: Any) -> str | None:
    """The header name meant by a ``request.META`` key given as REQUEST_ID_HEADER
    (``HTTP_X_REQUEST_ID``: ``X-Request-Id``), else None."""
    if not isinstance(value, str) or not value.upper().startswith("HTTP_") or len(value) < 6:
        return None
    return "-".join(word.capitalize() for word in value[5:].split("_"))


def _profile_token(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and len(value) >= 16 and token_fault(value) is None
    )


def token_fault(token: str) -> str | None:
    """Why no request could carry ``token`` in a header to match it, or None. RFC 9110
    keeps a header value to visible ASCII, spaces and tabs; a server strips the
    whitespace around it (the test client does not, so tests would pass). Said
    without the token, or which of its characters is wrong. Asked of a token long
    enough (16+ characters): a shorter one is said to be too short, first."""
    stripped = "servers strip the whitespace around a header value"
    if not token.strip():
        return f"is only whitespace ({stripped})"
    if any(char < " " or char == "\x7f" for char in token):
        return (
            "has a control character in it (a line break, a tab, NUL: clients refuse to"
            " send one in a header value, or servers strip it)"
        )
    if not token.isascii():
        return (
            "has a non-ASCII character in it (Django reads a header value's bytes as"
            " Latin-1: sent as UTF-8, as curl and browsers send it, it never matches)"
        )
    if token != token.strip():
        return f"begins or ends with whitespace ({stripped})"
    return None


_MS = "a number of milliseconds >= 0"

#: Every setting, in the order docs/settings.md lists them.
SETTINGS: Final[dict[str, Setting]] = {
    "ENABLED": Setting(
        True,
        _flag,
        "True or False",
        "Install the asgiref instrumentation and log requests. Read once, when hopwatch"
        " starts (the app's `ready()`, or the middleware's first load without the app):"
        " `False` patches nothing, records nothing and logs nothing, and the middleware"
        " leaves the chain (Django's `MiddlewareNotUsed`). Changing it later"
        " (`override_settings`) turns hopwatch neither on nor off.",
    ),
    "OUTPUT": Setting(
        "logging",
        _output,
        '"logging", "stdout", or a file path (a str or os.PathLike) with a directory or a'
        ' suffix ("/var/log/app/hops.jsonl", "hops.log")',
        'Where request lines go: `"logging"` (the stdlib logger `LOGGER_NAME`, so your'
        ' handlers and shippers get them), `"stdout"`, or a file path, a string or a'
        ' `pathlib.Path` (`BASE_DIR / "hops.log"`), appended to, one JSON object per line'
        " (a line longer than 4,096 bytes through a pipe that several worker processes share,"
        " a container's stdout, can be torn: see [Long lines on a shared pipe]"
        "(#long-lines-on-a-shared-pipe))."
        " A path needs a directory part or a suffix (`hops.log`,"
        " `./hops`): a bare word such as `\"stderr\"` is refused at start-up rather than"
        " taken for a file name. A relative path is taken from the working directory when"
        " the settings are read: at start-up, or when `HOPWATCH` changes"
        " (`override_settings`, as it enters and as it exits), never at a request (a test"
        " that changes directory does not move the lines). Without `\"hopwatch\"` in"
        " `INSTALLED_APPS`, start-up is when Django first loads the middleware: a server's"
        " handler as the server starts, but the test `Client`'s at its first request, so"
        " there the path is that request's directory (and a change of `HOPWATCH` before it"
        " is read then too). `\"stdout\"` is `sys.stdout` as it is when each line is written"
        " (a test's capture, pytest's `capsys` or `redirect_stdout`, gets the lines written"
        " inside it, and only those). Check `hopwatch.W007` warns when this process cannot append"
        " to the file (its directory missing, say). The file is followed across a rotation"
        " (logrotate's rename, with `create` or without; `copytruncate` works too): at most"
        " once a second, as a line goes out, hopwatch compares the path with the open file"
        " and reopens it when it was moved (no system call per request); the lines of that"
        " second may still go to the renamed file, so use `delaycompress`. A file is written"
        " one line at a time, each in one `write` (or the held lines of `OUTPUT_BUFFER` in"
        " one): a line the file cannot take (a full disk) is lost and counted in the next"
        " written line's `hopwatch_errors`, never written later; when the disk fills in the"
        " middle of a line, the part it took stays, ended by a newline at the next write"
        " (also when the file is opened again first: a change of the settings, a rotation,"
        " another process's output), and `hopwatch report` skips it as `truncated`. A file"
        " is written"
        " in UTF-8, and so is `\"stdout\"` when its encoding is UTF-8; a line with"
        " non-ASCII characters (`/café/`) going through `\"logging\"` (whose handlers'"
        " streams may have any encoding) or to a stdout of another encoding (a C locale,"
        " `PYTHONIOENCODING`, Windows' cp1252) has them written as JSON escapes"
        " (`/caf\\u00e9/`), which `hopwatch report` reads back as the same text.",
    ),
    "OUTPUT_BUFFER": Setting(
        0,
        _output_buffer,
        "0, or a whole number of characters from 4096 to 4194304",
        "`0`: each line is written when its request ends. A number (`65536`), with `OUTPUT`"
        " `\"stdout\"` or a file path: lines are held in memory and written together, when they"
        " reach that many characters, a second after the first of them at the latest, when"
        " `OUTPUT` or `OUTPUT_BUFFER` changes (`override_settings`, as it enters and as it"
        " exits), and when the process exits (gunicorn's, Daphne's and Granian's workers"
        " on `SIGTERM`, and Hypercorn's when it runs one). It saves most requests their `write`"
        " system call (measured: 14 to 18 µs, about 1.2% of a small request's CPU time). A"
        " write that fails (a full disk) loses the held lines it did not write whole and"
        " counts one internal error; the internal errors those lines were to report"
        " (`hopwatch_errors`) are reported by the next line written, as a lost line's are. A"
        " process that ends without exiting loses the lines it holds: `SIGKILL`, the OOM killer,"
        " and uvicorn (also as gunicorn's worker class), which ends its process with the"
        " `SIGTERM` it shut down on, unless your ASGI module calls `hopwatch.flush()` at the"
        " lifespan shutdown; and Hypercorn with several workers, which ends the ones still"
        " running with `SIGTERM` once the first has exited; and waitress, which leaves"
        " `SIGTERM` to its default action. See the FAQ, \"How do I make it cheaper under"
        " load?\". With `\"stdout\"`, each held line goes to the `sys.stdout` of when it was"
        " made, whenever it is written (a line made under another one first has those"
        " written out): a test's capture gets its own lines, not a later test's; the lines"
        " of a capture closed before they are written are dropped (pytest closes"
        " `capsys`'s at the test's end)."
        " Refused with `OUTPUT` `\"logging\"`: your handlers decide when"
        " their records are written.",
    ),
    "LOGGER_NAME": Setting(
        "hopwatch",
        lambda v: isinstance(v, str) and bool(v),
        "a logger name",
        "The stdlib logger used when `OUTPUT` is `\"logging\"`. Its lines need a handler"
        " that takes INFO records: on that logger or one it propagates to, at level INFO or"
        " lower, its filters passing them. Check `hopwatch.W004` warns when none does (a"
        " level above INFO, a handler at `WARNING`, Django's `require_debug_true` with"
        " `DEBUG` off), and so does hopwatch's own logger, once, as the first line goes out"
        " (a server runs no system checks; `SILENCED_SYSTEM_CHECKS` silences both; a filter"
        " on the `hopwatch` logger's handlers drops that warning too). Filters are judged"
        " by asking them about an empty INFO record of that logger, never written: one that"
        " reads the message may judge the lines otherwise.",
    ),
    "REQUEST_ID_HEADER": Setting(
        "X-Request-ID",
        _request_id_header,
        "a header name (" + TOKEN_CHARACTERS + ") that carries no credential and that"
        " Django's error reports do not hide, or None",
        "A request header whose value becomes `request_id`, when it is 1-128 characters of"
        " `A-Za-z0-9._:/+=-`. Otherwise (or `None`, or `\"\"`) an id is generated. Written as the"
        " client sends it (`X-Request-ID`); its `request.META` key (`HTTP_X_REQUEST_ID`) is"
        " refused, saying what to write. A name must be an HTTP token: ASCII letters, digits"
        " and the punctuation RFC 9110 allows (`-`, `_`, `.`, ...), since Django upper-cases a"
        " name to find it, which turns some other letters into ASCII ones (with U+0131, a"
        " dotless i, in place of its i, `Cookie` still reads `Cookie`). Refused however"
        " they are spelt (`X_Api_Key`: Django reads `_` as `-`): headers that carry"
        " credentials (`Authorization`, `Cookie`, `X-Api-Key`, ...), any header Django's error"
        " reports hide as a secret (`API`, `AUTH`, `TOKEN`, `KEY`, `SECRET`, `PASS` or"
        " `SIGNATURE` in its name), and `PROFILE_HEADER`, whose token would be logged.",
    ),
    "SAMPLE_RATE": Setting(
        1.0,
        _number(0.0, 1.0),
        "a number from 0.0 to 1.0",
        "Fraction of requests to log, 0.0-1.0. Counting is never sampled: each logged line is"
        " exact; lines below 1.0 carry `sample_rate`, and `hopwatch report` weighs each line by"
        " `1 / sample_rate`. The line is about half of hopwatch's cost per request: see the FAQ,"
        " \"How do I make it cheaper under load?\".",
    ),
    "MIN_HOPS": Setting(
        0,
        _count,
        "a whole number >= 0 (at most sys.maxsize)",
        "Log only requests with at least this many hops.",
    ),
    "MIN_HOP_MS": Setting(
        0.0,
        _number(0.0, None),
        _MS,
        "Log only requests whose hops took at least this many milliseconds in total"
        " (`hop_ms`).",
    ),
    "SITES_LIMIT": Setting(
        10,
        _positive,
        "a whole number > 0 (at most sys.maxsize)",
        "How many causes the line lists in `sites` (largest first, the view's crossing always"
        " among them: `1` lists the view's crossing when the view was called across, else the top"
        " cause; `0` is refused, as the line could not list the view's); the rest are counted in"
        " `sites_dropped`, and `hopwatch report` shows their crossings and overhead as left out of"
        " the lines. A stack with more causes than this gets exact totals but per-cause counts"
        " that are lower bounds: an async view behind startproject's middleware alone makes 15"
        " crossings of 15 causes, so the default leaves 5 out of every such line (`sites_dropped:"
        " 5`), more with ORM calls. Raise it (to 20, say) to name every cause; each cause costs"
        " the line 160 to 260 bytes, so 20 causes make a line of 3.7 to 5.9 KB, past what a pipe"
        " shared by several workers keeps whole: see [Long lines on a shared pipe]"
        "(#long-lines-on-a-shared-pipe).",
    ),
    "DETAIL": Setting(
        False,
        _flag,
        "True or False",
        "Detail mode: add `detail`, one entry per hop (direction, cause, call site, depth,"
        " thread, wait/run/resume times, when it was called, the crossing it was made in and"
        " the calling thread): what `hopwatch report --format html` draws each request's"
        " timeline from. Each hop listed costs the line 390 to 540 bytes: 4.7 KB for 6 hops,"
        " 7.9 KB for startproject's async view (15), 12.8 KB for 21, past what a pipe shared by"
        " several workers keeps whole: see [Long lines on a shared pipe]"
        "(#long-lines-on-a-shared-pipe).",
    ),
    "DETAIL_LIMIT": Setting(
        100,
        _count,
        "a whole number >= 0 (at most sys.maxsize)",
        "The most hops listed in `detail`; the rest are counted in `detail_dropped` (all"
        " counts stay exact). With `OTEL_SPANS`, also the most crossings per request that"
        " become spans.",
    ),
    "EXTRA_FIELDS": Setting(
        None,
        lambda v: v is None or callable(v) or isinstance(v, str),
        "None, a callable or its dotted path",
        "A callable, or its dotted path, called as `hook(request, record)` for each logged"
        " request (`record` is a [`RequestRecord`](how-it-works.md#the-python-api)); the dict"
        " it returns is added to the line (documented field names cannot be replaced). A path"
        " is imported at start-up, where one that does not import, or names no callable, is"
        " refused. Errors in the hook are counted, never raised; so is a hook that returns"
        " anything but a dict or None (a list of pairs). It runs as the line is built"
        " (under ASGI, on the event loop: return what the request has loaded, not a lazy"
        " `request.user`, which would query there). A value that cannot be written as JSON (its"
        " `str()` raises, or text with a lone surrogate, which UTF-8 cannot write: in a"
        " value or a field's name) is left out of the line and counted; an integer past 64 bits is"
        " written as text.",
    ),
    "LOG_RAW_PATHS": Setting(
        False,
        _flag,
        "True or False",
        "A request no URL pattern resolved (a 404, or one a middleware answered first: an"
        " HTTPS or trailing-slash redirect, a CORS preflight) has no route. Off, its `route` is"
        " `\"(unresolved)\"`: its raw path, which may carry an e-mail address or a token, is"
        " never logged. On, the raw path is logged instead, without query string or control"
        " characters, cut to `PATH_MAX_LENGTH`.",
    ),
    "PATH_MAX_LENGTH": Setting(
        200,
        _positive,
        "a whole number > 0 (at most sys.maxsize)",
        "With `LOG_RAW_PATHS`, a raw path longer than this is cut to this many characters"
        " and `...` is added (so the route is at most this many plus 3).",
    ),
    "MEASURE_HOP_TAX": Setting(
        False,
        _flag,
        "True or False",
        "Measure once per process, in a background thread its first request starts (never in"
        " a request), what a no-op hop costs on this host; the lines written after it carry"
        " `hop_tax_us`, and `hopwatch report` shows what each endpoint's hops cost at that"
        " price (`tax/req`). A process that serves no request (`manage.py` commands, the"
        " master of gunicorn `--preload`) measures nothing; each worker forked from it"
        " measures its own (a child keeps a measurement its parent finished); a process that"
        " ends mid-measurement stops it cleanly. `hopwatch audit` always measures it. Workers"
        " that start serving at once on few cores compete for them and read it high (the"
        " report shows the range across processes); `hopwatch audit` on an idle host gives"
        " the floor. Under gevent or eventlet (threading monkey-patched) nothing is measured, and"
        " one warning says so: a thread there would share the requests' own.",
    ),
    "PROCESS_LINE_SECONDS": Setting(
        0,
        _number(0.0, 86400.0),
        "seconds from 0 (off) to 86400",
        "Write one `hopwatch.process` line every this many seconds per process (thread pools,"
        " threads alive, the queue the default pool's crossings found, ThreadSensitiveContexts"
        " open at once; see [threads and executors](threads.md)), to the same output as the"
        " request lines. `0`: off. Read at start-up; the line's thread starts with the"
        " process's first request (so each forked worker has its own).",
    ),
    "OTEL_METRICS": Setting(
        False,
        _flag,
        "True or False",
        "Record each request's crossings, crossing overhead, the work reached through"
        " crossings and pinned time as OpenTelemetry histograms, and crossings by cause as a"
        " counter, through the global `MeterProvider` (meter `hopwatch`), by route, method and"
        " status. Needs `pip install 'hopwatch[otel]'` and an SDK set up by your project. Read"
        " at start-up: off, OpenTelemetry is not imported. See"
        " [OpenTelemetry](opentelemetry.md).",
    ),
    "OTEL_SPANS": Setting(
        False,
        _flag,
        "True or False",
        "Make each crossing a child span of the request's span (current when the request"
        " reaches hopwatch's middleware), with its real times, cause and call site; the"
        " request's totals as attributes. Built when the request ends, at most `DETAIL_LIMIT`"
        " per request. Same requirements as `OTEL_METRICS`.",
    ),
    "PROFILE_DIR": Setting(
        None,
        lambda v: v is None or isinstance(v, str | os.PathLike),
        "None or a path",
        "Profiling is off unless this is set: the directory profiles are written to, this"
        " user's own and writable by no one else, inside directories that only this user or"
        " root may write to, or sticky ones such as `/tmp`; writable by a group only when it"
        " is this user's private group (check `hopwatch.W008` warns when it is not). Missing"
        " directories are made with mode 0700. See [profiling](profiling.md).",
    ),
    "PROFILE_TOKEN": Setting(
        None,
        _profile_token,
        "None or a secret string of at least 16 characters",
        "A secret (16+ characters): a request whose `PROFILE_HEADER` carries it is profiled."
        " Visible ASCII characters only, spaces inside it allowed: one with whitespace around"
        " it (servers strip it from a header value), only whitespace, a control character (a"
        " line break, a tab) or a non-ASCII one (Django reads a header's bytes as Latin-1;"
        " curl and browsers send UTF-8) would match no request a server passes on, and is"
        " refused at start-up, as is a shorter one (said to be too short, whatever its"
        " characters; an empty string too: leave the setting out or None to turn token"
        " profiles off). Never shown in a message: a refused one is said by its length and"
        " what is wrong with it.",
        secret=True,
    ),
    "PROFILE_HEADER": Setting(
        "X-Hopwatch-Profile-Token",
        _profile_header,
        "a header name (" + TOKEN_CHARACTERS + ") that Django's error reports hide (with"
        " TOKEN, KEY or SECRET in it), or None",
        "The header carrying the token. Django's error reports (the `DEBUG` page, the"
        " e-mail to `ADMINS`) show a failed request's headers, except those whose"
        " `request.META` key has `API`, `AUTH`, `TOKEN`, `KEY`, `SECRET`, `PASS` or"
        " `SIGNATURE` in it: a name they would show (`X-Hopwatch-Profile`) is refused at"
        " start-up, as is one that is not an HTTP token (ASCII letters, digits and the"
        " punctuation RFC 9110 allows).",
    ),
    "PROFILE_STAFF_PARAM": Setting(
        None,
        _optional_text,
        "a parameter name or None",
        "A query parameter name: a request carrying it is profiled if its user is active staff"
        " (checked at the end of the request; otherwise the profile is discarded).",
    ),
    "PROFILE_INLINE_PARAM": Setting(
        "hopwatch-profile-inline",
        _optional_text,
        "a parameter name or None",
        "With this query parameter, an authorised request gets the HTML profile as its"
        " response instead of the page.",
    ),
    "PROFILE_AUTO_SAMPLE": Setting(
        0.0,
        _number(0.0, 1.0),
        "a number from 0.0 to 1.0",
        "Fraction of requests profiled tentatively for automatic capture; kept only when slow"
        " (below): set `PROFILE_AUTO_MIN_HOP_MS` or `PROFILE_AUTO_MIN_DURATION_MS`, since with"
        " both at 0 (their defaults) every sampled request is profiled and none is kept.",
    ),
    "PROFILE_AUTO_MIN_HOP_MS": Setting(
        0.0,
        _number(0.0, None),
        _MS,
        "Automatic capture keeps a profile when the request's hop time reaches this (0: not"
        " used).",
    ),
    "PROFILE_AUTO_MIN_DURATION_MS": Setting(
        0.0,
        _number(0.0, None),
        _MS,
        "... or when its duration reaches this (0: not used).",
    ),
    "PROFILE_RATE_LIMIT": Setting(
        6,
        _positive,
        "a whole number > 0 (at most sys.maxsize)",
        "At most this many profiles started per minute by each trigger (token, staff,"
        " automatic): samples never use up what a token or staff user asks for.",
    ),
    "PROFILE_INTERVAL": Setting(
        0.001,
        _number(0.0001, 1.0),
        "seconds between samples, 0.0001-1.0",
        "pyinstrument's sampling interval, in seconds.",
    ),
}

#: Every setting with its default.
DEFAULTS: Final[dict[str, Any]] = {name: setting.default for name, setting in SETTINGS.items()}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with ``settings.HOPWATCH``: a system check's id, message and hint."""

    id: str  # hopwatch.E001, E002 or E003
    key: str | None
    message: str
    hint: str


def lines_lost_to(logger_name: str) -> str | None:
    """Why request lines sent to the stdlib logger ``logger_name`` at INFO are lost, or
    None when they are not: the words of check hopwatch.W004 and of the same warning at
    run time (``hopwatch._emit``).

    A line reaches a handler as ``Logger.handle`` would take it there: the logger
    enabled for INFO and its filters passing the record, then each handler of the
    logger and of the loggers it propagates to whose level is INFO or lower and whose
    filters pass it. Filters are asked about a probe: an INFO record of that logger's
    name with an empty message, never emitted (``logging.Filter`` and Django's
    ``CallbackFilter`` such as ``require_debug_true`` judge it as they would a line; a
    filter that reads the message, or counts what it is asked, may judge otherwise)."""
    import logging

    logger = logging.getLogger(logger_name)
    where = f"hopwatch writes request lines to the logger {logger_name!r} at INFO, but"
    if not logger.isEnabledFor(logging.INFO):
        return f"{where} that logger is disabled or its level is above INFO: the lines are lost."
    probe = logging.LogRecord(logger_name, logging.INFO, __file__, 0, "", (), None)
    if not logger.filter(probe):
        return f"{where} that logger's filters drop them: the lines are lost."
    refused: list[str] = []
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler.level > logging.INFO:
                refused.append(f"{_named(handler)} (level {logging.getLevelName(handler.level)})")
            elif not handler.filter(probe):
                refused.append(f"{_named(handler)} (its filters)")
            else:
                return None
        current = current.parent if current.propagate else None
    if not refused:
        return (
            f"{where} neither it nor a logger it propagates to has a handler: the lines are"
            " lost."
        )
    return (
        f"{where} every handler that would receive them refuses INFO records: "
        + ", ".join(refused)
        + ": the lines are lost."
    )


def _named(handler: object) -> str:
    name = getattr(handler, "name", None)
    return f"{type(handler).__name__} {name!r}" if name else type(handler).__name__


def silenced(check_id: str) -> bool:
    """Whether ``SILENCED_SYSTEM_CHECKS`` holds ``check_id``: hopwatch's warnings at run
    time that repeat a system check (a server runs none) are silenced with it."""
    if not django_settings.configured:  # hopwatch's testing tools without Django
        return False
    return check_id in getattr(django_settings, "SILENCED_SYSTEM_CHECKS", ())


class _NotCallable(TypeError):
    pass


def resolve_hook(hook: str | Callable[..., Any]) -> Callable[..., Any]:
    """The EXTRA_FIELDS callable itself: imported when it is given as a dotted path."""
    if isinstance(hook, str):
        from django.utils.module_loading import import_string

        hook = import_string(hook)
        if not callable(hook):
            raise _NotCallable(f"is {type(hook).__name__}, not callable")
    return hook


def _why_not(exc: Exception) -> str:
    if isinstance(exc, _NotCallable):
        return str(exc)
    return f"cannot be imported ({type(exc).__name__}: {exc})"


def problems(user: object) -> list[Problem]:
    """Everything wrong with a ``HOPWATCH`` value (None, the setting absent, is fine)."""
    import difflib

    if user is None:
        return []
    if not isinstance(user, dict):
        return [
            Problem(
                "hopwatch.E001",
                None,
                f"HOPWATCH must be a dict, not {type(user).__name__}.",
                'Write HOPWATCH = {"ENABLED": True, ...} in your settings.',
            )
        ]
    found = []
    for key in user:
        if key not in SETTINGS:
            close = difflib.get_close_matches(str(key), SETTINGS, n=1)
            found.append(
                Problem(
                    "hopwatch.E002",
                    str(key),
                    f"HOPWATCH has an unknown key {key!r}.",
                    f"Did you mean {close[0]!r}?"
                    if close
                    else "See docs/settings.md in hopwatch's source distribution.",
                )
            )
    about_headers = _header_problems(user)
    token = user.get("PROFILE_TOKEN")
    # Too short is said first (as before token_fault): its characters only of one long enough.
    fault = token_fault(token) if isinstance(token, str) and len(token) >= 16 else None
    if token == "":
        # os.environ.get("HOPWATCH_PROFILE_TOKEN", ""), the variable unset: not "only whitespace".
        about_headers["PROFILE_TOKEN"] = Problem(
            "hopwatch.E003",
            "PROFILE_TOKEN",
            "HOPWATCH['PROFILE_TOKEN'] is an empty string; it must be None or a secret string of"
            " at least 16 characters.",
            "Leave PROFILE_TOKEN out, or set it to None, to turn token profiles off (read from"
            " the environment: os.environ.get('HOPWATCH_PROFILE_TOKEN'), None when it is unset,"
            ' not a default of ""); or set it to a secret string of at least 16 characters.',
        )
    elif fault is not None:
        about_headers["PROFILE_TOKEN"] = Problem(
            "hopwatch.E003",
            "PROFILE_TOKEN",
            f"HOPWATCH['PROFILE_TOKEN'] is {_shown(SETTINGS['PROFILE_TOKEN'], token)} that"
            f" {fault}: no request could carry it to match.",
            "Set HOPWATCH['PROFILE_TOKEN'] to a secret string of at least 16 visible ASCII"
            " characters (spaces inside it only), or remove it for the default (None).",
        )
    for key, setting in SETTINGS.items():
        if key in about_headers:
            found.append(about_headers[key])
        elif key in user and not setting.valid(user[key]):
            found.append(
                Problem(
                    "hopwatch.E003",
                    key,
                    f"HOPWATCH[{key!r}] is {_shown(setting, user[key])}; it must be"
                    f" {setting.expected}.",
                    f"Set HOPWATCH[{key!r}] to {setting.expected}, or remove it for the default"
                    f" ({setting.default!r}).",
                )
            )
    for key, valid in (
        ("REQUEST_ID_HEADER", _request_id_header),
        ("PROFILE_HEADER", _profile_header),
    ):
        header = user.get(key)
        meant = _meta_spelling(header) if valid(header) else None
        if meant is not None:
            found.append(
                Problem(
                    "hopwatch.E003",
                    key,
                    f"HOPWATCH[{key!r}] is {header!r}, a request.META key, not a"
                    " header name: no header is read by that name.",
                    f"Write the header's name as the client sends it: {meant!r}.",
                )
            )
    hook = user.get("EXTRA_FIELDS")
    if isinstance(hook, str):
        try:
            resolve_hook(hook)
        except Exception as exc:
            found.append(
                Problem(
                    "hopwatch.E003",
                    "EXTRA_FIELDS",
                    f"HOPWATCH['EXTRA_FIELDS'] is {hook!r}, which {_why_not(exc)}.",
                    "Set it to the dotted path of a callable taking (request, record), or to"
                    " the callable itself, or remove it.",
                )
            )
    buffer = user.get("OUTPUT_BUFFER", 0)
    if _output_buffer(buffer) and buffer and user.get("OUTPUT", DEFAULTS["OUTPUT"]) == "logging":
        found.append(
            Problem(
                "hopwatch.E003",
                "OUTPUT_BUFFER",
                f"HOPWATCH['OUTPUT_BUFFER'] is {buffer!r}, but OUTPUT is \"logging\": your"
                " logging handlers decide when their records are written.",
                'Set HOPWATCH["OUTPUT"] to "stdout" or a file path, or remove OUTPUT_BUFFER.',
            )
        )
    return found


def _shown(setting: Setting, value: Any) -> str:
    """A setting's value as a message shows it: a secret's is never shown, only its
    length (a message reaches logs, the console and ``manage.py check``'s output)."""
    if not setting.secret:
        return repr(value)
    if isinstance(value, str):
        return f"a string of {len(value)} characters (not shown: it is a secret)"
    return f"a value of type {type(value).__name__} (not shown: it is a secret)"


def _header_problems(user: dict[Any, Any]) -> dict[str, Problem]:
    """What is wrong with REQUEST_ID_HEADER and PROFILE_HEADER beyond their type, said
    more exactly than "it must be ...": a name that is no HTTP token, and a request id
    read from the header that carries the profiling token."""
    found: dict[str, Problem] = {}
    for key in ("REQUEST_ID_HEADER", "PROFILE_HEADER"):
        value = user.get(key)
        if isinstance(value, str) and value and not is_header_name(value):
            folded = (
                ""
                if value.isascii()
                else " (Django upper-cases a name to find it, which turns some other letters"
                f" into ASCII ones: it would read request.META[{meta_key(value)!a}])"
            )
            found[key] = Problem(
                "hopwatch.E003",
                key,
                f"HOPWATCH[{key!r}] is {value!a}, which is not a header name: a name is"
                f" {TOKEN_CHARACTERS} only{folded}.",
                "Write the header's name as the client sends it, or remove it for the default"
                f" ({SETTINGS[key].default!r}).",
            )
        elif (
            key == "PROFILE_HEADER"
            and isinstance(value, str)
            and is_header_name(value)
            and not hidden_by_django(value)
        ):
            found[key] = Problem(
                "hopwatch.E003",
                key,
                f"HOPWATCH['PROFILE_HEADER'] is {value!r}, whose request.META key"
                f" ({meta_key(value)}) Django's error reports do not hide: a profiled request"
                " that fails would show the profiling token on the DEBUG page and in the"
                " e-mail to ADMINS.",
                "Name the header with TOKEN, KEY or SECRET in it (the default is"
                f" {DEFAULTS['PROFILE_HEADER']!r}), or remove it.",
            )
    header = user.get("REQUEST_ID_HEADER")
    profile = user.get("PROFILE_HEADER", DEFAULTS["PROFILE_HEADER"])
    if not _profile_header(profile):
        profile = DEFAULTS["PROFILE_HEADER"]  # what hopwatch reads instead
    if (
        "REQUEST_ID_HEADER" not in found
        and isinstance(header, str)
        and is_header_name(header)
        and isinstance(profile, str)
        and is_header_name(profile)
        and meta_key(header) == meta_key(profile)
    ):
        found["REQUEST_ID_HEADER"] = Problem(
            "hopwatch.E003",
            "REQUEST_ID_HEADER",
            f"HOPWATCH['REQUEST_ID_HEADER'] is {header!r}, the header that carries the"
            f" profiling token (PROFILE_HEADER, {profile!r}): the token would be logged as"
            " request_id and put in profile file names.",
            "Set REQUEST_ID_HEADER to the header your proxy sends request ids in (the"
            f" default is {DEFAULTS['REQUEST_ID_HEADER']!r}), or remove it.",
        )
    return found


def validate() -> None:
    """Raise ``ImproperlyConfigured`` naming every problem of ``settings.HOPWATCH``.

    Called when hopwatch starts (``HopwatchConfig.ready()``, or the middleware when the
    app is not installed), so a bad setting stops the process at start-up.
    """
    found = problems(getattr(django_settings, "HOPWATCH", None))
    if found:
        from django.core.exceptions import ImproperlyConfigured

        lines = [f"{problem.message} {problem.hint}" for problem in found]
        raise ImproperlyConfigured(
            "hopwatch: bad settings (see docs/settings.md in hopwatch's source distribution): "
            + " ".join(lines)
        )


_warned: set[str] = set()


def _warn_once(problem: Problem) -> None:
    """A problem met after start-up (``override_settings``): said once, on hopwatch's
    logger, with what hopwatch does instead."""
    if problem.message in _warned or len(_warned) > 100:
        return
    _warned.add(problem.message)
    import logging

    if problem.key is None:  # HOPWATCH is not a dict
        instead = "hopwatch uses the defaults instead."
    elif problem.key in SETTINGS:
        instead = f"hopwatch uses the default ({DEFAULTS[problem.key]!r}) instead."
    else:  # an unknown key
        instead = f"{problem.hint} hopwatch ignores it."
    logging.getLogger("hopwatch").warning("%s %s", problem.message, instead)


#: ``django.conf.settings``' own cache of the settings it has been asked for (its
#: instance dict, read without its ``__getattribute__``). Django keeps it exact: it
#: is cleared when ``override_settings`` swaps the settings (``_wrapped``) and a
#: setting assigned or deleted at run time is popped from it.
_lazy_cache: dict[str, Any] = object.__getattribute__(django_settings, "__dict__")
_ABSENT: Final = object()


class Settings:
    """Attribute access to the merged settings: ``hopwatch_settings.SAMPLE_RATE``.

    The merged dict is cached until ``settings.HOPWATCH`` is another object
    (``override_settings`` replaces it). A lookup reads Django's own cache of
    the setting (a dict read and an identity check, not a merge, not a call
    into ``LazySettings``). When the project sets no ``HOPWATCH`` at all, the
    defaults hold until the settings object is swapped (``override_settings``);
    assigning ``settings.HOPWATCH`` at run time where it was absent is not
    seen (Django asks that settings are changed with ``override_settings``).
    """

    def __init__(self) -> None:
        self._source: object = _ABSENT
        self._absent_in: object = None  # the settings object HOPWATCH was absent from
        self._merged: dict[str, Any] = dict(DEFAULTS)
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def follow(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(merged)`` now and with each new merged dict (the settings
        changed): what follows from a setting is then worked out once per change,
        not once per request."""
        if listener not in self._listeners:
            self._listeners.append(listener)
        listener(self._merged)

    def merged(self) -> dict[str, Any]:
        """All settings, defaults filled in (a snapshot: do not mutate)."""
        user = _lazy_cache.get("HOPWATCH", _ABSENT)
        if user is _ABSENT:
            wrapped = _lazy_cache.get("_wrapped")
            if self._absent_in is wrapped and wrapped is not None:
                return self._merged
            user = getattr(django_settings, "HOPWATCH", _ABSENT)
            self._absent_in = _lazy_cache.get("_wrapped") if user is _ABSENT else None
        if user is not self._source:
            merged = dict(DEFAULTS)
            if isinstance(user, dict):
                merged.update((k, v) for k, v in user.items() if k in SETTINGS)
            # validated at start-up; changed since: each problem said once
            for problem in problems(None if user is _ABSENT else user):
                if problem.key in SETTINGS:
                    merged[problem.key] = DEFAULTS[problem.key]
                _warn_once(problem)
            output = merged["OUTPUT"]
            if output not in OUTPUT_TARGETS:
                # A relative path is the working directory's of now (start-up, or the
                # change of HOPWATCH), not of the first line: a test that changed
                # directory (monkeypatch.chdir) before the first request would
                # otherwise have the whole run's lines written there.
                merged["OUTPUT"] = os.path.abspath(output)
            self._merged, self._source = merged, user
            for listener in self._listeners:
                listener(merged)
        return self._merged

    def __getattr__(self, name: str) -> Any:
        # Reached only for a name that is no setting: each setting is a property
        # (below), found on the class without the AttributeError that reaching
        # __getattr__ costs (an exception object and its message, per read).
        raise AttributeError(f"hopwatch has no setting {name!r}")


def _setting(name: str) -> property:
    def read(self: Settings) -> Any:
        return self.merged()[name]

    read.__name__ = name
    return property(read, doc=f"settings.HOPWATCH[{name!r}], or its default.")


for _name in SETTINGS:
    setattr(Settings, _name, _setting(_name))
del _name

hopwatch_settings = Settings()
