"""The settings table: documented exactly, checked when hopwatch starts, never a request's problem."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.test import override_settings

from hopwatch.conf import SETTINGS, hopwatch_settings, problems

ROOT = Path(__file__).resolve().parent.parent
_ROW = re.compile(r"^\| `(?P<key>[A-Z_]+)` \| `(?P<default>[^`]*)` \| (?P<meaning>.*) \|$")


def _doc_rows() -> list[tuple[str, str, str]]:
    text = (ROOT / "docs" / "settings.md").read_text()
    return [
        (found["key"], found["default"], found["meaning"])
        for found in map(_ROW.match, text.splitlines())
        if found
    ]


def _shown(default: object) -> str:
    return json.dumps(default) if isinstance(default, str) else repr(default)


def test_the_docs_table_is_the_settings_table():
    expected = [(key, _shown(s.default), s.meaning) for key, s in SETTINGS.items()]
    rows = _doc_rows()
    table = "\n".join(f"| `{k}` | `{d}` | {m} |" for k, d, m in expected)
    assert rows == expected, f"docs/settings.md's table should read:\n{table}"


def test_every_default_is_valid():
    assert [key for key, s in SETTINGS.items() if not s.valid(s.default)] == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("logging", True),
        ("stdout", True),
        ("/var/log/app/hops.jsonl", True),
        ("hops.log", True),
        ("./hops", True),
        ("logs/hops", True),
        ("stderr", False),  # was: a file named "stderr" in the working directory
        ("file", False),
        ("", False),
        ("   ", False),
        ("logs/", False),
        (".hidden", False),
        (3, False),
    ],
)
def test_output_must_be_a_target_or_read_as_a_path(value, ok):
    assert (problems({"OUTPUT": value}) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (4096, True), (65536, True), (4194304, True), (4095, False), (4194305, False),
     (-1, False), (True, False), (False, False), (0.0, False), (65536.0, False), ("64k", False),
     (None, False)],
)
def test_output_buffer_is_off_or_a_size_in_range(value, ok):
    assert (problems({"OUTPUT": "stdout", "OUTPUT_BUFFER": value}) == []) is ok
    assert (problems({"OUTPUT": "hops.log", "OUTPUT_BUFFER": value}) == []) is ok
    # with the logging output, only 0
    assert (problems({"OUTPUT_BUFFER": value}) == []) is (ok and value == 0)


# A process that starts Django with HOPWATCH set to the JSON on its command line.
_START = textwrap.dedent(
    """
    import json, sys
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=["hopwatch"],
        HOPWATCH=json.loads(sys.argv[1]),
        LOGGING_CONFIG=None,
    )
    import django
    django.setup()
    print("started")
    """
)


def _start(tmp_path: Path, hopwatch: dict) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-c", _START, json.dumps(hopwatch)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("hopwatch", "said"),
    [
        # A string: every line used to be dropped after one internal error.
        ({"MIN_HOP_MS": "1"}, "HOPWATCH['MIN_HOP_MS'] is '1'; it must be a number of milliseconds >= 0."),
        ({"OUTPUT": "stderr"}, "HOPWATCH['OUTPUT'] is 'stderr'; it must be \"logging\", \"stdout\", or a file path"),
        ({"SAMPLE_RTE": 0.5}, "HOPWATCH has an unknown key 'SAMPLE_RTE'. Did you mean 'SAMPLE_RATE'?"),
        # Held lines under the logging output: the handlers decide when records are written.
        ({"OUTPUT_BUFFER": 65536}, "HOPWATCH['OUTPUT_BUFFER'] is 65536, but OUTPUT is \"logging\""),
        ({"OUTPUT": "hops.log", "OUTPUT_BUFFER": 100}, "HOPWATCH['OUTPUT_BUFFER'] is 100; it must be 0, or"),
        # Off is checked too: a typo must not pass unseen because hopwatch is off.
        ({"ENABLED": False, "MIN_HOPS": -1}, "HOPWATCH['MIN_HOPS'] is -1"),
        # Past a C size: every line was lost to an OverflowError on the accelerator's path.
        ({"SITES_LIMIT": 2**63}, "HOPWATCH['SITES_LIMIT'] is 9223372036854775808; it must be a whole number > 0 (at most sys.maxsize)."),
        # 0 was accepted, and the line then left out the view's crossing it always lists.
        ({"SITES_LIMIT": 0}, "HOPWATCH['SITES_LIMIT'] is 0; it must be a whole number > 0 (at most sys.maxsize). Set HOPWATCH['SITES_LIMIT'] to a whole number > 0 (at most sys.maxsize), or remove it for the default (10)."),
        ({"DETAIL_LIMIT": 2**64}, "HOPWATCH['DETAIL_LIMIT'] is 18446744073709551616; it must be"),
        # A credential header spelt with underscores reaches the same request.META key.
        ({"REQUEST_ID_HEADER": "X_Api_Key"}, "HOPWATCH['REQUEST_ID_HEADER'] is 'X_Api_Key'; it must be a header name (ASCII letters, digits and !#$%&'*+-.^_`|~) that carries no credential"),
        ({"REQUEST_ID_HEADER": "Proxy_Authorization"}, "HOPWATCH['REQUEST_ID_HEADER'] is 'Proxy_Authorization'; it must be"),
        # Django's error reports showed the token sent in a header named so (DEBUG page, ADMINS' e-mail).
        ({"PROFILE_HEADER": "X-Hopwatch-Profile"}, "HOPWATCH['PROFILE_HEADER'] is 'X-Hopwatch-Profile', whose request.META key (HTTP_X_HOPWATCH_PROFILE) Django's error reports do not hide: a profiled request that fails would show the profiling token on the DEBUG page and in the e-mail to ADMINS. Name the header with TOKEN, KEY or SECRET in it (the default is 'X-Hopwatch-Profile-Token'), or remove it."),
        # A dotless i: "Cook\u0131e".lower() is no credential, but Django's upper() reads HTTP_COOKIE.
        ({"REQUEST_ID_HEADER": "Cook\u0131e"}, "HOPWATCH['REQUEST_ID_HEADER'] is 'Cook\\u0131e', which is not a header name: a name is ASCII letters, digits and !#$%&'*+-.^_`|~ only (Django upper-cases a name to find it, which turns some other letters into ASCII ones: it would read request.META['HTTP_COOKIE'])."),
        ({"PROFILE_HEADER": "X-Profil\u0131ng-Token"}, "HOPWATCH['PROFILE_HEADER'] is 'X-Profil\\u0131ng-Token', which is not a header name"),
        # The profiling token was logged as request_id and put in profile file names.
        ({"REQUEST_ID_HEADER": "x_hopwatch_profile_token"}, "HOPWATCH['REQUEST_ID_HEADER'] is 'x_hopwatch_profile_token', the header that carries the profiling token (PROFILE_HEADER, 'X-Hopwatch-Profile-Token'): the token would be logged as request_id and put in profile file names."),
        ({"REQUEST_ID_HEADER": "X-Prof-Secret", "PROFILE_HEADER": "x-prof-secret"}, "HOPWATCH['REQUEST_ID_HEADER'] is 'X-Prof-Secret', the header that carries the profiling token (PROFILE_HEADER, 'x-prof-secret')"),
        # request.META's spelling matched no header, without a word.
        ({"REQUEST_ID_HEADER": "HTTP_X_REQUEST_ID"}, "HOPWATCH['REQUEST_ID_HEADER'] is 'HTTP_X_REQUEST_ID', a request.META key, not a header name: no header is read by that name. Write the header's name as the client sends it: 'X-Request-Id'."),
        # No path: each profile would be an internal error, and manage.py check a TypeError.
        ({"PROFILE_DIR": True}, "HOPWATCH['PROFILE_DIR'] is True; it must be None or a path. Set HOPWATCH['PROFILE_DIR'] to None or a path, or remove it for the default (None)."),
        ({"PROFILE_DIR": 3}, "HOPWATCH['PROFILE_DIR'] is 3; it must be None or a path."),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_clear_error(tmp_path, hopwatch, said):
    done = _start(tmp_path, hopwatch)
    assert done.returncode != 0 and "started" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: hopwatch: bad settings")
    assert said in last
    assert list(tmp_path.iterdir()) == []  # no file named "stderr", nothing else either


_HEADER_REFUSED = (
    "; it must be a header name (ASCII letters, digits and !#$%&'*+-.^_`|~) that carries no"
    " credential and that Django's error reports do not hide, or None."
)


@pytest.mark.parametrize(
    ("hopwatch", "said"),
    [
        # docs/settings.md: "at least 16 characters"; 16 was once refused.
        ({"PROFILE_TOKEN": "t" * 16}, []),
        # Visible ASCII with spaces inside: a header value as servers pass it on.
        ({"PROFILE_TOKEN": "a token, 16 ch!~"}, []),
        # "seconds between samples, 0.0001-1.0": both ends in, 0 (no interval) out.
        ({"PROFILE_INTERVAL": 0.0001}, []),
        ({"PROFILE_INTERVAL": 1.0}, []),
        ({"PROFILE_INTERVAL": 0.0}, ["HOPWATCH['PROFILE_INTERVAL'] is 0.0; it must be seconds between samples, 0.0001-1.0."]),
        # "seconds from 0 (off) to 86400": a day at most.
        ({"PROCESS_LINE_SECONDS": 0}, []),
        ({"PROCESS_LINE_SECONDS": 86400}, []),
        ({"PROCESS_LINE_SECONDS": 86400.5}, ["HOPWATCH['PROCESS_LINE_SECONDS'] is 86400.5; it must be seconds from 0 (off) to 86400."]),
        # "HTTP_" alone is no request.META key of a header: a header name like another.
        ({"REQUEST_ID_HEADER": "HTTP_"}, []),
        # Credential headers, Set-Cookie among them; one in request.META's spelling is
        # refused once, as a credential (not also as a META key).
        ({"REQUEST_ID_HEADER": "Set-Cookie"}, ["HOPWATCH['REQUEST_ID_HEADER'] is 'Set-Cookie'" + _HEADER_REFUSED]),
        ({"REQUEST_ID_HEADER": "HTTP_AUTHORIZATION"}, ["HOPWATCH['REQUEST_ID_HEADER'] is 'HTTP_AUTHORIZATION'" + _HEADER_REFUSED]),
        # None, or "" (os.environ.get("REQUEST_ID_HEADER", "")): no header read, ids generated.
        ({"REQUEST_ID_HEADER": None}, []),
        ({"REQUEST_ID_HEADER": ""}, []),
        # "None or a path": a str or any os.PathLike; nothing else.
        ({"PROFILE_DIR": None}, []),
        ({"PROFILE_DIR": "profiles"}, []),
        ({"PROFILE_DIR": Path("profiles")}, []),
        ({"PROFILE_DIR": True}, ["HOPWATCH['PROFILE_DIR'] is True; it must be None or a path."]),
        ({"PROFILE_DIR": b"profiles"}, ["HOPWATCH['PROFILE_DIR'] is b'profiles'; it must be None or a path."]),
    ],
)  # fmt: skip
def test_values_at_the_edges_of_what_the_docs_allow(hopwatch, said):
    assert [problem.message for problem in problems(hopwatch)] == said


def test_a_refused_profile_token_is_never_shown_at_start_up(tmp_path):
    """ImproperlyConfigured carried the whole token: the console, a crash reporter, the
    deploy log. Its length is said instead."""
    done = _start(tmp_path, {"PROFILE_TOKEN": "Sup3rS3cretTok"})
    assert done.returncode != 0 and "started" not in done.stdout
    assert "Sup3rS3cretTok" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: hopwatch: bad settings (see"
        " docs/settings.md in hopwatch's source distribution): HOPWATCH['PROFILE_TOKEN'] is a"
        " string of 14 characters (not"
        " shown: it is a secret); it must be None or a secret string of at least 16"
        " characters. Set HOPWATCH['PROFILE_TOKEN'] to None or a secret string of at least 16"
        " characters, or remove it for the default (None)."
    )


_NO_REQUEST_MATCHES = ": no request could carry it to match. Set HOPWATCH['PROFILE_TOKEN'] to a secret string of at least 16 visible ASCII characters (spaces inside it only), or remove it for the default (None)."


@pytest.mark.parametrize(
    ("token", "fault"),
    [
        ("Sup3rS3cretT0ken-one\n", "has a control character in it (a line break, a tab, NUL: clients refuse to send one in a header value, or servers strip it)"),
        ("Sup3rS3cret\tT0ken-two", "has a control character in it (a line break, a tab, NUL: clients refuse to send one in a header value, or servers strip it)"),
        ("Sup3rS3cretT0ken-\x7f", "has a control character in it (a line break, a tab, NUL: clients refuse to send one in a header value, or servers strip it)"),
        (" Sup3rS3cretT0ken-three ", "begins or ends with whitespace (servers strip the whitespace around a header value)"),
        ("Sup3rS3cretT0ken-four ", "begins or ends with whitespace (servers strip the whitespace around a header value)"),
        (" " * 16, "is only whitespace (servers strip the whitespace around a header value)"),
        ("\n" * 16, "is only whitespace (servers strip the whitespace around a header value)"),
        ("Sup3rS3cretT0ken-fünf", "has a non-ASCII character in it (Django reads a header value's bytes as Latin-1: sent as UTF-8, as curl and browsers send it, it never matches)"),
    ],
    ids=["newline", "tab", "del", "spaces-around", "trailing-space", "all-spaces", "all-newlines", "non-ascii"],
)  # fmt: skip
def test_a_profile_token_no_request_could_match_stops_start_up(tmp_path, token, fault):
    """A server strips the whitespace around a header value and no client sends a line
    break in one: such a token passed start-up and `manage.py check` (and the test
    client, which sends a header as given), then profiled no request in production.
    One line says what is wrong, by its length, never the token."""
    done = _start(tmp_path, {"PROFILE_TOKEN": token})
    assert done.returncode != 0 and "started" not in done.stdout
    assert token.strip() not in done.stderr or not token.strip()
    assert done.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: hopwatch: bad settings (see"
        " docs/settings.md in hopwatch's source distribution): HOPWATCH['PROFILE_TOKEN'] is a"
        f" string of {len(token)} characters"
        f" (not shown: it is a secret) that {fault}{_NO_REQUEST_MATCHES}"
    )


_TOO_SHORT = (
    "; it must be None or a secret string of at least 16 characters. Set"
    " HOPWATCH['PROFILE_TOKEN'] to None or a secret string of at least 16 characters, or"
    " remove it for the default (None)."
)


@pytest.mark.parametrize(
    ("token", "said"),
    [
        # os.environ.get("HOPWATCH_PROFILE_TOKEN", ""), the variable unset: was "is only whitespace".
        ("", "is an empty string; it must be None or a secret string of at least 16 characters. Leave PROFILE_TOKEN out, or set it to None, to turn token profiles off (read from the environment: os.environ.get('HOPWATCH_PROFILE_TOKEN'), None when it is unset, not a default of \"\"); or set it to a secret string of at least 16 characters."),
        # Too short is said first, as before the character rules: was "has a control character".
        ("abc\n", "is a string of 4 characters (not shown: it is a secret)" + _TOO_SHORT),
        ("   ", "is a string of 3 characters (not shown: it is a secret)" + _TOO_SHORT),
        ("Sup3rS3cr\u00e9t", "is a string of 11 characters (not shown: it is a secret)" + _TOO_SHORT),
    ],
    ids=["empty", "short-with-newline", "short-whitespace", "short-non-ascii"],
)  # fmt: skip
def test_a_profile_token_too_short_is_said_to_be_too_short_first(tmp_path, token, said):
    """The length rule (the message before the character rules came) is said for a token
    shorter than 16 characters, whatever its characters; an empty one, the usual
    os.environ.get default, has its own hint."""
    done = _start(tmp_path, {"PROFILE_TOKEN": token})
    assert done.returncode != 0 and "started" not in done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: hopwatch: bad settings (see"
        " docs/settings.md in hopwatch's source distribution): HOPWATCH['PROFILE_TOKEN']"
        f" {said}"
    )


def test_a_refused_profile_token_is_never_shown_at_run_time(log_lines, db):
    """Given with override_settings, the warning that it is ignored quoted it in full."""
    from django.test import Client

    said: list[str] = []
    handler = logging.Handler(logging.WARNING)  # not the lines
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(handler)
    try:
        with override_settings(HOPWATCH={"PROFILE_TOKEN": "Sup3rS3cret-run"}):
            Client().get("/sync/")
            assert hopwatch_settings.PROFILE_TOKEN is None
    finally:
        logging.getLogger("hopwatch").removeHandler(handler)
    assert said == [
        "HOPWATCH['PROFILE_TOKEN'] is a string of 15 characters (not shown: it is a secret);"
        " it must be None or a secret string of at least 16 characters. hopwatch uses the"
        " default (None) instead."
    ]


def test_a_header_name_that_is_no_http_token_never_reads_another_header(log_lines, db):
    """``"Cook\\u0131e"`` (U+0131, a dotless i) passed the credential check, which compared
    ``name.lower()``; the middleware's META key, ``"HTTP_" + name.upper()``, is
    ``HTTP_COOKIE``: the session cookie was logged as ``request_id``."""
    from django.test import Client

    from hopwatch import middleware

    with override_settings(HOPWATCH={"REQUEST_ID_HEADER": "Cook\u0131e"}):
        Client().get("/sync/", headers={"Cookie": "sessionid=abc123", "X-Request-ID": "rid-1"})
    (line,) = log_lines.parsed()
    assert line["request_id"] == "rid-1"  # refused: the default, X-Request-ID, read instead
    assert middleware._new_meta_key("Cook\u0131e") is None  # the middleware's own guard agrees
    assert middleware._new_meta_key("X-Request-ID") == "HTTP_X_REQUEST_ID"


def test_an_empty_request_id_header_starts_and_every_id_is_generated(tmp_path, log_lines, db):
    """``"REQUEST_ID_HEADER": ""`` (as ``os.environ.get("REQUEST_ID_HEADER", "")`` gives
    when the variable is unset) means what ``None`` does: no header is read as the id."""
    from django.test import Client

    done = _start(tmp_path, {"REQUEST_ID_HEADER": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "started"
    with override_settings(HOPWATCH={"REQUEST_ID_HEADER": ""}):
        Client().get("/sync/", headers={"X-Request-ID": "abc-123"})
        Client().get("/sync/", headers={"X-Request-ID": "abc-123"})
    ids = [line["request_id"] for line in log_lines.parsed()]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(re.fullmatch(r"[0-9a-f]{16}", rid) for rid in ids), ids


def test_good_settings_start(tmp_path):
    done = _start(tmp_path, {"OUTPUT": "hops.log", "MIN_HOP_MS": 1, "SAMPLE_RATE": 0.5})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "started"


def test_a_bad_value_given_at_run_time_falls_back_to_its_default():
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(handler)  # it does not propagate (tests.settings)
    try:
        with override_settings(HOPWATCH={"MIN_HOP_MS": "1", "MIN_HOPS": 2}):
            assert hopwatch_settings.MIN_HOP_MS == 0.0  # not "1", which broke every comparison
            assert hopwatch_settings.MIN_HOPS == 2
    finally:
        logging.getLogger("hopwatch").removeHandler(handler)
    assert said == [
        "HOPWATCH['MIN_HOP_MS'] is '1'; it must be a number of milliseconds >= 0."
        " hopwatch uses the default (0.0) instead."
    ]


def test_settings_follow_django_whether_hopwatch_is_set_absent_or_swapped(settings):
    """hopwatch reads Django's own cache of the setting: every way a test or a
    project changes settings is seen, and an absent HOPWATCH means the defaults."""
    from django.conf import settings as django_settings

    default = SETTINGS["SITES_LIMIT"].default
    with override_settings():
        del django_settings.HOPWATCH
        assert hopwatch_settings.merged()["SITES_LIMIT"] == default
        with override_settings(HOPWATCH={"SITES_LIMIT": 3}):
            assert hopwatch_settings.SITES_LIMIT == 3
        assert hopwatch_settings.merged()["SITES_LIMIT"] == default  # absent again, not 3
        assert hopwatch_settings.merged() == {name: s.default for name, s in SETTINGS.items()}
    settings.HOPWATCH = {"SITES_LIMIT": 4}  # pytest-django's fixture
    assert hopwatch_settings.SITES_LIMIT == 4
    django_settings.HOPWATCH = {"SITES_LIMIT": 5}  # assigned at run time where it is set
    assert hopwatch_settings.SITES_LIMIT == 5


def test_every_setting_reads_as_an_attribute_and_a_wrong_name_is_an_error():
    """Each setting is a property (read without the AttributeError a __getattr__
    fallback costs per read); a name that is no setting says so."""
    from hopwatch.conf import Settings

    with override_settings(HOPWATCH={"SITES_LIMIT": 3, "MIN_HOPS": 2}):
        for name, setting in SETTINGS.items():
            assert isinstance(vars(Settings).get(name), property), name
            expected = {"SITES_LIMIT": 3, "MIN_HOPS": 2}.get(name, setting.default)
            assert getattr(hopwatch_settings, name) == expected, name
    with pytest.raises(AttributeError, match="hopwatch has no setting 'SITES_LIMT'"):
        hopwatch_settings.SITES_LIMT  # noqa: B018


@pytest.mark.parametrize("header", ["X_Api_Key", "x_api_key", "Proxy_Authorization"])
def test_a_credential_header_spelt_with_underscores_never_becomes_the_request_id(
    header, log_lines, db
):
    """Django reads ``-`` and ``_`` in a header name alike: ``X_Api_Key`` read the
    X-Api-Key header, and its secret was logged as ``request_id``."""
    from django.test import Client

    from hopwatch import middleware

    with override_settings(HOPWATCH={"REQUEST_ID_HEADER": header}):
        Client().get("/sync/", headers={"X-Api-Key": "sk_live_abc", "Proxy-Authorization": "sk_live_abc"})
    (line,) = log_lines.parsed()
    assert line["request_id"] != "sk_live_abc"
    assert middleware._new_meta_key(header) is None  # the middleware's own guard agrees


def test_the_meta_spelling_of_the_request_id_header_is_refused_at_run_time_too(log_lines, db):
    from django.test import Client

    with override_settings(HOPWATCH={"REQUEST_ID_HEADER": "HTTP_X_REQUEST_ID"}):
        Client().get("/sync/", headers={"X-Request-ID": "abc-123"})
    (line,) = log_lines.parsed()
    assert line["request_id"] == "abc-123"  # the default, X-Request-ID, read instead


def test_a_pathlib_output_is_a_file_path(tmp_path, log_lines, db):
    """``"OUTPUT": BASE_DIR / "hops.log"`` stopped start-up: "it must be ... a file path"."""
    from django.test import Client

    from hopwatch.checks import check_logging
    from hopwatch.conf import validate

    target = tmp_path / "hops.log"
    assert problems({"OUTPUT": target}) == []
    assert problems({"OUTPUT": Path("stdout")}) != []  # a bare word, as a str would be
    assert problems({"OUTPUT": Path("logs") / "hops"}) == []
    with override_settings(HOPWATCH={"OUTPUT": target}):
        validate()  # what start-up runs: no ImproperlyConfigured
        assert check_logging() == []
        Client().get("/sync/")
        Client().get("/sync/")
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["route"] for line in lines] == ["/sync/", "/sync/"]
    with override_settings(HOPWATCH={"OUTPUT": tmp_path / "missing" / "hops.log"}):
        (message,) = check_logging()
    assert message.msg.startswith(f"HOPWATCH[\"OUTPUT\"] is {str(tmp_path / 'missing' / 'hops.log')!r}")


def test_an_unknown_key_or_a_hopwatch_that_is_no_dict_is_said_once_at_run_time(log_lines, db):
    """Both were ignored without a word under override_settings; settings.md says a bad
    value given that way is said once on the hopwatch logger."""
    from django.test import Client

    said: list[str] = []
    handler = logging.Handler(logging.WARNING)  # not the lines
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(handler)
    try:
        for _ in range(2):  # each snapshot again: said once
            with override_settings(HOPWATCH={"SAMPL_RATE": 0.0}):
                Client().get("/sync/")
            with override_settings(HOPWATCH=["x"]):
                Client().get("/sync/")
    finally:
        logging.getLogger("hopwatch").removeHandler(handler)
    assert said == [
        "HOPWATCH has an unknown key 'SAMPL_RATE'. Did you mean 'SAMPLE_RATE'? hopwatch"
        " ignores it.",
        "HOPWATCH must be a dict, not list. hopwatch uses the defaults instead.",
    ]
    assert len(log_lines.parsed()) == 4  # the defaults: every request logged
