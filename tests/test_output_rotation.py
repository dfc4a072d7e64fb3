"""A file OUTPUT follows a rotation (logrotate's rename, then create or not): lines go to
the path again within a second of the first request after it."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client, override_settings

from hopwatch import _emit


def _ids(path):
    return [json.loads(line)["request_id"] for line in path.read_text().splitlines()]


def _request(n):
    Client().get("/sync/", headers={"X-Request-ID": f"r{n}"})


@pytest.mark.parametrize("buffer", [0, 4096], ids=["each-line", "output-buffer"])
@pytest.mark.parametrize("create", [True, False], ids=["rename-and-create", "rename"])
def test_lines_go_to_the_path_again_after_a_rotation(tmp_path, buffer, create, db):
    """Before, the file was opened once: after logrotate's rename every later line went
    into the renamed file, for the life of the process."""
    path, rotated = tmp_path / "hops.log", tmp_path / "hops.log.1"
    with override_settings(HOPWATCH={"OUTPUT": str(path), "OUTPUT_BUFFER": buffer}):
        _request(1)
        _emit.flush()
        path.rename(rotated)
        if create:  # logrotate's "create": an empty file where the old one was
            path.write_text("")
        _request(2)  # within the second: not checked yet, into the renamed file
        _emit.flush()
        time.sleep(1.05)  # the check is made at most once a second
        _request(3)
        _request(4)
        _emit.flush()
    assert _ids(rotated) == ["r1", "r2"]
    assert _ids(path) == ["r3", "r4"]


def test_a_rotation_is_checked_at_most_once_a_second(tmp_path, db):
    """The check is two system calls, made by the first line of each second, by the
    clock the request already read: the other lines pay a comparison."""
    path = tmp_path / "hops.log"
    with override_settings(HOPWATCH={"OUTPUT": str(path)}):
        _request(1)
        emitter = __import__("hopwatch.apps", fromlist=["_emitter"])._emitter
        rotation = emitter._rotation
        due = rotation.due_ns
        assert due > 0
        for n in range(2, 6):
            _request(n)
        assert rotation.due_ns == due  # not checked again within the second
    assert _ids(path) == ["r1", "r2", "r3", "r4", "r5"]


@pytest.mark.parametrize("buffer", [0, 4096], ids=["each-line", "output-buffer"])
def test_a_file_opened_that_ends_inside_a_line_has_that_line_ended_first(tmp_path, buffer, db):
    """A file whose last line a full disk cut (by this output before the settings
    changed or a rotation's check opened it again, or by another process): the first
    line written starts on a line of its own. (The torn line's end was known only to
    the stream that cut it: a file opened again appended its first line to the
    fragment, and both were lost.)"""
    path = tmp_path / "hops.log"
    fragment = '{"event":"hopwatch.request","schema":1,"timest'
    path.write_text('{"event":"other"}\n' + fragment)
    with override_settings(HOPWATCH={"OUTPUT": str(path), "OUTPUT_BUFFER": buffer}):
        _request(1)
        _request(2)
        _emit.flush()
    first, cut, *rest = path.read_text().split("\n")
    assert (first, cut, rest[-1]) == ('{"event":"other"}', fragment, "")
    assert [json.loads(line)["request_id"] for line in rest[:-1]] == ["r1", "r2"]


def test_a_file_opened_that_ends_with_a_whole_line_gets_no_empty_line(tmp_path, db):
    path = tmp_path / "hops.log"
    path.write_text('{"event":"other"}\n')
    with override_settings(HOPWATCH={"OUTPUT": str(path)}):
        _request(1)
    first, line, end = path.read_text().split("\n")
    assert (first, json.loads(line)["request_id"], end) == ('{"event":"other"}', "r1", "")
