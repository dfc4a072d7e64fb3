"""OUTPUT_BUFFER: request lines held in memory and written together (stdout or a file path).

Each test serves real requests through Django's ASGI or WSGI handler. The lines
must reach the output whole, once each and in order: when the held lines reach
the size, a second after the first of them, when the settings change, and when
the process exits; a killed process loses them, and a forked child does not
write its parent's.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from django.test import Client, override_settings

from hopwatch import _emit, _errors, apps
from tests.helpers import asgi_request, wsgi_request

ROOT = Path(__file__).resolve().parent.parent
HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


def held_to(path: Path, size: int = 4096, **options):
    return override_settings(
        MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": str(path), "OUTPUT_BUFFER": size, **options}
    )


def request_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["request_id"] for line in path.read_text().splitlines()]


def one(index: int) -> None:
    asgi_request("/async/", headers=[(b"x-request-id", f"req-{index}".encode())])


@pytest.fixture
def slow_clock(monkeypatch):
    """A held line's second made an hour, for the tests about the other triggers."""
    monkeypatch.setattr(_emit, "HOLD_SECONDS", 3600.0)


@pytest.fixture(autouse=True)
def _closed_after():
    yield
    if apps._emitter is not None:
        apps._emitter.close()  # what is still held is written; the next test starts afresh


def test_lines_are_held_until_they_reach_the_size(tmp_path, slow_clock):
    log = tmp_path / "hops.jsonl"
    seen: list[list[str]] = []
    with held_to(log, 4096):
        for index in range(40):
            one(index)
            seen.append(request_ids(log))
    written = log.read_text().splitlines()
    # Each write is every line held: the file goes from one whole prefix to a longer one.
    sizes = sorted({len(ids) for ids in seen})
    assert sizes[0] == 0 and len(sizes) >= 3
    for ids in seen:
        assert ids == [f"req-{i}" for i in range(len(ids))]
    # ... written by the request whose line made the held characters reach 4096.
    held = 0
    for index, line in enumerate(written):
        held += len(line) + 1
        written_after = len(seen[index])
        if held >= 4096:
            assert written_after == index + 1
            held = 0
        else:
            assert written_after < index + 1
    assert all(json.loads(line)["event"] == "hopwatch.request" for line in written)


def test_a_held_line_is_written_within_a_second(tmp_path):
    log = tmp_path / "hops.jsonl"
    with held_to(log, 1 << 20):
        one(0)
        finished = time.monotonic()
        assert request_ids(log) == []  # held
        thread = apps._emitter._logger._logger._thread
        while not request_ids(log):
            assert time.monotonic() - finished < 30, "the held line was never written"
            time.sleep(0.01)
        waited = time.monotonic() - finished
        assert request_ids(log) == ["req-0"]
        assert waited >= _emit.HOLD_SECONDS * 0.9  # by the thread, not by anything sooner
        assert thread.name == "hopwatch-held-lines" and thread.daemon and thread.is_alive()
    apps._emitter.close()
    thread.join(5)  # closed: the thread ends at once, not after its second
    assert not thread.is_alive()


def test_changing_the_settings_writes_what_is_held(tmp_path, slow_clock, log_lines):
    log = tmp_path / "hops.jsonl"
    with held_to(log, 1 << 20):
        for index in range(3):
            one(index)
        assert request_ids(log) == []
    # The next line, under other settings, closes the held output: its lines are written.
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": "logging"}):
        one(3)
    assert request_ids(log) == ["req-0", "req-1", "req-2"]
    assert [line["request_id"] for line in log_lines.parsed()] == ["req-3"]


def test_hopwatch_flush_writes_what_is_held_now_and_keeps_holding(tmp_path, slow_clock):
    import hopwatch

    log = tmp_path / "hops.jsonl"
    with held_to(log, 1 << 20):
        for index in range(3):
            one(index)
        assert request_ids(log) == []
        hopwatch.flush()
        assert request_ids(log) == ["req-0", "req-1", "req-2"]
        one(3)  # held again: flush() is not the process's end
        assert request_ids(log) == ["req-0", "req-1", "req-2"]
        hopwatch.flush()
        assert request_ids(log) == ["req-0", "req-1", "req-2", "req-3"]


def test_hopwatch_flush_without_a_buffer_writes_nothing_more(tmp_path):
    import hopwatch

    log = tmp_path / "hops.jsonl"
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": str(log)}):
        one(0)
        errors = _errors.total()
        hopwatch.flush()
        assert request_ids(log) == ["req-0"]
        assert _errors.total() == errors


def test_stdout_is_held_too(capsys, slow_clock):
    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": "stdout", "OUTPUT_BUFFER": 1 << 20}
    ):
        one(0)
        one(1)
        assert capsys.readouterr().out == ""
        apps._emitter.close()
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["request_id"] for line in out] == ["req-0", "req-1"]


def test_held_stdout_lines_go_to_sys_stdout_as_it_is_when_they_are_written(capsys, slow_clock, db):
    """Held lines go to the ``sys.stdout`` of when they were made, not to the stream of
    the first line held: a capture closed since (``redirect_stdout`` around the first
    request, as pytest's ``capsys``) gets none of the later ones."""
    import hopwatch

    first = io.StringIO()
    errors = _errors.total()
    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": "stdout", "OUTPUT_BUFFER": 1 << 20}
    ):
        with contextlib.redirect_stdout(first):
            one(0)
            hopwatch.flush()
        in_first = first.getvalue()
        first.close()
        one(1)
        wsgi_request("/sync/")
        one(2)
        assert capsys.readouterr().out == ""
        hopwatch.flush()
    assert _errors.total() == errors
    assert [json.loads(line)["request_id"] for line in in_first.splitlines()] == ["req-0"]
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["route"], line["interface"]) for line in out] == [
        ("/async/", "asgi"), ("/sync/", "wsgi"), ("/async/", "asgi")
    ]
    assert [out[0]["request_id"], out[2]["request_id"]] == ["req-1", "req-2"]


def test_held_stdout_lines_go_to_the_sys_stdout_they_were_made_under(capsys, slow_clock, db):
    """A held line is written to the ``sys.stdout`` of when it was made, whenever it is
    written (by the second's timer, here ``flush()``): not into a later test's capture.
    A line made under another stream first writes out the lines held for the last one."""
    import hopwatch

    first, second = io.StringIO(), io.StringIO()
    errors = _errors.total()
    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": "stdout", "OUTPUT_BUFFER": 1 << 20}
    ):
        with contextlib.redirect_stdout(first):  # test A's capture
            one(0)
            one(1)
        assert first.getvalue() == ""  # held
        with contextlib.redirect_stdout(second):  # test B's
            print("hello")
            hopwatch.flush()  # test A's lines are written to test A's capture
            assert second.getvalue() == "hello\n"
            one(2)
        with contextlib.redirect_stdout(first):
            one(3)  # test B's line goes to test B's capture first, then this one is held
            written = second.getvalue().splitlines()[1:]
            assert [json.loads(line)["request_id"] for line in written] == ["req-2"]
        hopwatch.flush()
    assert _errors.total() == errors
    assert capsys.readouterr().out == ""
    assert [json.loads(line)["request_id"] for line in first.getvalue().splitlines()] == [
        "req-0", "req-1", "req-3"
    ]
    hello, *lines = second.getvalue().splitlines()
    assert hello == "hello"
    assert [json.loads(line)["request_id"] for line in lines] == ["req-2"]
    # a capture closed before its lines are written (capsys at its test's end): dropped
    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": "stdout", "OUTPUT_BUFFER": 1 << 20}
    ):
        with contextlib.redirect_stdout(first):
            one(4)
        first.close()
        one(5)
        hopwatch.flush()
    assert _errors.total() == errors
    assert [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()] == [
        "req-5"
    ]


def test_held_lines_are_written_as_override_settings_exits(tmp_path, slow_clock, db):
    """A change of where the lines go (here, override_settings' exit) writes what is held
    at once, not at the next line."""
    log = tmp_path / "hops.jsonl"
    with held_to(log, 1 << 20):
        one(0)
        one(1)
        assert request_ids(log) == []
    assert request_ids(log) == ["req-0", "req-1"]


def test_lines_from_many_threads_are_whole_and_each_written_once(tmp_path, slow_clock, db):
    """WSGI requests on eight threads at once, a small size: many writes race."""
    log = tmp_path / "hops.jsonl"
    with held_to(log, 4096):

        def serve(worker: int) -> None:
            client = Client(headers={"x-request-id": f"w{worker}"})
            for index in range(25):
                assert client.get("/sync/", headers={"x-request-id": f"w{worker}-{index}"}).status_code == 200

        threads = [threading.Thread(target=serve, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        apps._emitter.close()
    ids = request_ids(log)  # json.loads of every line: each is whole
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(8) for i in range(25))
    for worker in range(8):  # each thread's lines in its order
        mine = [i for i in ids if i.startswith(f"w{worker}-")]
        assert mine == [f"w{worker}-{i}" for i in range(25)]


@pytest.mark.internal_errors
def test_a_failed_write_loses_its_lines_counts_one_error_and_never_fails_a_request(tmp_path, db):
    log = tmp_path / "hops.jsonl"
    with held_to(log, 4096):
        assert asgi_request("/async/").status == 200
        apps._emitter._logger._logger._stream.close()  # the disk goes away under it
        statuses = [asgi_request("/async/").status for _ in range(12)]
        statuses.append(int(wsgi_request("/sync/")[0][:3]))
    assert statuses == [200] * 13
    assert _errors.total() >= 1
    assert log.read_text() == ""  # nothing half-written


def test_a_buffer_given_at_run_time_with_the_logging_output_is_said_once_and_not_used(
    log_lines,
):
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(handler)
    try:
        with override_settings(
            MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": "logging", "OUTPUT_BUFFER": 65536}
        ):
            one(0)
            assert [line["request_id"] for line in log_lines.parsed()] == ["req-0"]  # not held
            one(1)
    finally:
        logging.getLogger("hopwatch").removeHandler(handler)
    assert [line["request_id"] for line in log_lines.parsed()] == ["req-0", "req-1"]
    warnings = [message for message in said if "OUTPUT_BUFFER" in message]
    assert warnings == [
        "HOPWATCH['OUTPUT_BUFFER'] is 65536, but OUTPUT is \"logging\": your logging handlers"
        " decide when their records are written. hopwatch uses the default (0) instead."
    ]


# --- the process's end, and fork ------------------------------------------------------------

_PROCESS = textwrap.dedent(
    """
    import json, multiprocessing, os, signal, sys, threading, time
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.test import override_settings
    from tests.helpers import asgi_request

    log, how = sys.argv[1], sys.argv[2]
    settings = override_settings(
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        HOPWATCH={"OUTPUT": log, "OUTPUT_BUFFER": 1 << 20},
    )
    settings.enable()
    for index in range(5):
        asgi_request("/async/", headers=[(b"x-request-id", b"parent-%d" % index)])
    print(sum(1 for _ in open(log)), flush=True)  # held: 0
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "fork":
        child = os.fork()
        if child == 0:
            asgi_request("/async/", headers=[(b"x-request-id", b"child-0")])
            sys.exit(0)  # a normal exit: atexit writes what the child holds
        os.waitpid(child, 0)
    if how == "multiprocessing":  # as granian starts its workers, and stops them
        def late():  # a thread the child's end waits for, serving a request after it began
            from django.core.handlers.wsgi import WSGIHandler
            from tests.helpers import wsgi_environ

            time.sleep(0.5)  # (a new crossing would find the executors shut: WSGI, no hop)
            environ = wsgi_environ("/sync/", headers={"X-Request-ID": "child-late"})
            WSGIHandler()(environ, lambda *args: None).close()

        def worker():
            threading.Thread(target=late).start()
            asgi_request("/async/", headers=[(b"x-request-id", b"child-0")])

        child = multiprocessing.get_context("fork").Process(target=worker)
        child.start()
        child.join()
        print(child.exitcode, flush=True)
    sys.exit(0)
    """
)


def _child_env() -> dict[str, str]:
    """The environment for a Python child that sets Django up itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    return env


def _run(tmp_path: Path, how: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = tmp_path / "hops.jsonl"
    log.touch()
    env = _child_env()
    done = subprocess.run(
        [sys.executable, "-c", _PROCESS, str(log), how],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, request_ids(log)


def test_a_normal_exit_writes_what_is_held(tmp_path):
    done, ids = _run(tmp_path, "exit")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0"]
    assert ids == [f"parent-{i}" for i in range(5)]


def test_a_killed_process_loses_what_it_held(tmp_path):
    """The price OUTPUT_BUFFER's docs name: SIGKILL runs no exit handler."""
    done, ids = _run(tmp_path, "kill")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0"]
    assert ids == []


def test_a_forked_child_does_not_write_its_parents_held_lines(tmp_path):
    done, ids = _run(tmp_path, "fork")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(ids) == ["child-0", *(f"parent-{i}" for i in range(5))]
    assert ids.index("child-0") == 0  # the child exited first; the parent wrote its own at exit


def test_a_multiprocessing_child_writes_what_it_holds_when_it_ends(tmp_path):
    """A forked multiprocessing child ends with os._exit and runs no atexit handler
    of its parent's; granian's workers end so on SIGTERM. Its held line is written as
    it ends, and the line of a thread that its end waits for, when that thread writes it."""
    done, ids = _run(tmp_path, "multiprocessing")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "0"]  # nothing written before; the child's exit code
    assert ids == ["child-0", "child-late", *(f"parent-{i}" for i in range(5))]


# --- stdout shared by processes: a pipe -----------------------------------------------------

_SHARER = textwrap.dedent(
    """
    import os, sys
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.test import override_settings
    from tests.helpers import asgi_request

    override_settings(
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        HOPWATCH={"OUTPUT": "stdout", "OUTPUT_BUFFER": 65536},
    ).enable()
    tag = sys.argv[1]
    for index in range(int(sys.argv[2])):
        asgi_request("/async/", headers=[(b"x-request-id", b"%s-%d" % (tag.encode(), index))])
    """
)


def test_processes_sharing_a_pipe_as_stdout_never_tear_each_others_lines(tmp_path):
    """A server's workers share the container's stdout, a pipe. A pipe write of more
    than PIPE_BUF bytes can be split around another process's write when the pipe is
    full (a slow reader), so held lines go in whole-line pieces of at most that."""
    read_end, write_end = os.pipe()
    env = _child_env()
    count = 300
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _SHARER, tag, str(count)],
            cwd=ROOT,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
        for tag in ("a", "b")
    ]
    os.close(write_end)
    received = bytearray()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(1000):  # a slow reader: the pipe fills, the writers wait
            received += chunk
            time.sleep(0.002)
    for writer in writers:
        assert writer.wait(120) == 0, writer.stderr.read().decode()[-2000:]
    lines = received.decode().splitlines()
    ids = [json.loads(line)["request_id"] for line in lines]  # every line whole
    assert sorted(ids) == sorted(f"{tag}-{i}" for tag in ("a", "b") for i in range(count))
    assert len(received) > 4 * 65536  # enough to fill the pipe many times over


class _RecordedText(io.StringIO):
    """A text stream on ``fd`` (a pipe's, a file's) that records each write reaching
    it (each flush) instead of making it."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.writes: list[str] = []

    def fileno(self) -> int:
        return self._fd

    def flush(self) -> None:
        if self.getvalue():
            self.writes.append(self.getvalue())
            self.seek(0)
            self.truncate()


def test_into_a_pipe_each_write_is_whole_lines_of_at_most_pipe_buf_bytes(slow_clock):
    read_end, write_end = os.pipe()
    try:
        stream = _RecordedText(write_end)
        held = _emit._HeldLines(stream, 65536)
        assert held._piece == select.PIPE_BUF
        lines = ["a" * 1500, "é" * 1500, "b" * 1000, "c" * 5000, "d" * 10, "e" * 2000]
        for line in lines:
            held.msg(line)
        held.close()
    finally:
        os.close(read_end)
        os.close(write_end)
    # "é" is two bytes: 1,500 of them are 3,001 bytes with the newline, not 1,501
    assert stream.writes == ["a" * 1500 + "\n", "é" * 1500 + "\n" + "b" * 1000 + "\n",
                             "c" * 5000 + "\n", "d" * 10 + "\n" + "e" * 2000 + "\n"]
    assert all(len(w.encode()) <= select.PIPE_BUF for w in stream.writes if w != "c" * 5000 + "\n")


def test_into_a_regular_file_the_held_lines_go_in_one_write(tmp_path, slow_clock):
    with open(tmp_path / "lines.jsonl", "a", encoding="utf-8") as file:
        stream = _RecordedText(file.fileno())
        held = _emit._HeldLines(stream, 65536)
        assert held._piece == 0
        for line in ("a" * 3000, "é" * 3000):
            held.msg(line)
        held.close()
    assert stream.writes == ["a" * 3000 + "\n" + "é" * 3000 + "\n"]


# --- a failed write: the errors its lost lines were to report --------------------------------

_FILLS_UP = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.test import override_settings
    import hopwatch
    from hopwatch import _emit, _errors, _recorder
    from tests.helpers import asgi_request

    log, how = sys.argv[1], sys.argv[2]
    _emit.HOLD_SECONDS = 3600.0  # written by the triggers below, never by the thread

    class Unwritable:
        def __str__(self):
            raise RuntimeError("no text")

    def fields(request, record):  # lines of about 1,800 characters; a full- line's field
        # "bad" is left out, one internal error, reported by the line itself
        fields = {"pad": "x" * 1000}
        if record.request_id.startswith("full-"):
            fields["bad"] = Unwritable()
        return fields

    def held(size):
        return override_settings(
            MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
            HOPWATCH={"OUTPUT": log, "OUTPUT_BUFFER": size, "EXTRA_FIELDS": fields},
        )

    outcomes = []
    _recorder.add_sink(lambda record: outcomes.append([record.request_id, record.line]), last=True)
    statuses = []

    def serve(*ids):
        for rid in ids:
            statuses.append(asgi_request("/async/", headers=[(b"x-request-id", rid.encode())]).status)

    # "full": the third line held reaches the size, and its request writes them
    held(4096 if how == "full" else 1 << 20).enable()
    serve("before-0")
    hopwatch.flush()
    # The disk fills up: the file may take one line and 100 bytes more, then writes fail
    # (EFBIG): the first held line goes whole, the second is cut
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    size = os.path.getsize(log)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * size + 100, hard))
    serve("full-0", "full-1", "full-2")
    if how == "flush":
        hopwatch.flush()
    if how == "close":  # the settings change: the held lines are written as the output closes
        held(0).enable()
    errors_while_full = _errors.total()
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # and has room again
    serve("after-0", "after-1")
    hopwatch.flush()
    print(json.dumps({"statuses": statuses, "outcomes": outcomes,
                      "errors_while_full": errors_while_full, "errors": _errors.total()}))
    """
)


@pytest.mark.parametrize("how", ["flush", "full", "close"])
def test_the_errors_held_lines_lost_to_a_full_disk_were_to_report_are_reported_later(
    tmp_path, how
):
    """Three held lines each report an internal error of their own (a field of the
    EXTRA_FIELDS hook that cannot be written); the disk fills up as they are written (RLIMIT_FSIZE in a child
    process), by ``hopwatch.flush()``, by the request whose line reached the size, or
    as the settings change: the first is written whole, with its error; the other two
    are lost, and the first line written after reports their errors and the failed
    write's. (Their errors vanished: the next line reported the failed write alone.)"""
    log = tmp_path / "hops.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _FILLS_UP, str(log), how],
        cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["statuses"] == [200] * 6  # the app never noticed
    # three errors of the hook, one of the failed write
    assert seen["errors_while_full"] == seen["errors"] == 4
    # the request whose line made the write that failed: its line failed
    lost_by = "failed" if how == "full" else "written"
    assert seen["outcomes"] == [
        ["before-0", "written"], ["full-0", "written"], ["full-1", "written"],
        ["full-2", lost_by], ["after-0", "written"], ["after-1", "written"],
    ]  # fmt: skip
    first, kept, fragment, *rest = log.read_bytes().split(b"\n")
    assert fragment.startswith(b'{"event":"hopwatch.request",')  # the start of full-1's
    with pytest.raises(ValueError):
        json.loads(fragment)
    assert rest[-1] == b""
    lines = [json.loads(line) for line in (first, kept, *rest[:-1])]
    assert [(line["request_id"], line.get("hopwatch_errors")) for line in lines] == [
        ("before-0", None), ("full-0", 1), ("after-0", 3), ("after-1", None)
    ]  # fmt: skip


@pytest.mark.internal_errors
def test_the_errors_of_held_stdout_lines_dropped_with_their_capture_are_reported_later(
    slow_clock,
):
    """Held ``"stdout"`` lines whose capture is closed before they are written are
    dropped (no one can read them there): the internal errors they were to report are
    reported by the next line written."""
    import hopwatch

    def failing_hook(request, record):
        if record.request_id == "req-0":
            raise RuntimeError("EXTRA_FIELDS fails")

    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY,
        HOPWATCH={"OUTPUT": "stdout", "OUTPUT_BUFFER": 1 << 20, "EXTRA_FIELDS": failing_hook},
    ):
        gone = io.StringIO()
        with contextlib.redirect_stdout(gone):
            one(0)  # held, with its hook's error
        gone.close()  # as pytest's capsys at its test's end
        kept = io.StringIO()
        with contextlib.redirect_stdout(kept):
            one(1)  # req-0's line, made under the closed capture, dropped
            one(2)
            hopwatch.flush()
    lines = [json.loads(line) for line in kept.getvalue().splitlines()]
    assert [(line["request_id"], line.get("hopwatch_errors")) for line in lines] == [
        ("req-1", None), ("req-2", 1)
    ]  # fmt: skip
    assert _errors.total() == 1
