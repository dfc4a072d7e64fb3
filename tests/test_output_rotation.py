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
