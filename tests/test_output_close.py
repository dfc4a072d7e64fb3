"""Closing a file ``OUTPUT`` while a line is being written (``override_settings``
switching ``OUTPUT`` while a live server's thread serves, ``hopwatch.uninstall()``):
the close waits for the line. The descriptor of the file, once closed, may be the
number of the next file the app opens, and a line written after that would go into
the app's file.
"""

from __future__ import annotations

import os
import threading

from hopwatch import _emit


class _Gated(_emit._LineFile):
    """hopwatch's file stream, held inside its write until the test lets it go."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        assert self.release.wait(10)
        return super().write(text)


def test_closing_a_file_output_waits_for_the_line_being_written(tmp_path):
    path = tmp_path / "hops.log"
    stream = _Gated(str(path))
    writer = _emit._LineWriter(stream, close=True)  # type: ignore[arg-type]
    line = threading.Thread(target=writer.msg, args=('{"event":"hopwatch.request"}',))
    line.start()
    assert stream.entered.wait(10)
    closer = threading.Thread(target=writer.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "closed while a line was being written"
    assert not stream.closed
    # what the app would open next takes the lowest free number: not the output's
    app_file = os.open(tmp_path / "app.csv", os.O_WRONLY | os.O_CREAT)
    try:
        stream.release.set()
        line.join(10)
        closer.join(10)
    finally:
        os.close(app_file)
    assert stream.closed
    assert path.read_text() == '{"event":"hopwatch.request"}\n'
    assert (tmp_path / "app.csv").read_text() == ""
