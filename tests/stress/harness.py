"""Start the stress site under a real uvicorn process and read what it logged."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers import stop_server

ROOT = Path(__file__).resolve().parents[2]

#: Hops of an async view behind the example site's middleware (startproject's seven).
BASE = 15

#: Exact hops per request for example-site endpoints under ASGI. Endpoints
#: whose count depends on the request are in :func:`expected_hops`.
EXAMPLE_ENDPOINTS: dict[str, int] = {
    "/hello/": 15,
    "/hello-sync/": 16,
    "/products/": 16,
    "/products/one-by-one/": 36,  # 20 products: one aget each
    "/export/": 16,
    "/export/sync-iterator/": 17,
    "/mw/legacy/": 5,
    "/mw/rewrite/": 15,
    "/boom/": 18,
    "/orders/": 15,
    "/orders/sync-receiver/": 16,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site_env(var: Path, log: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.stress.settings",
        EXAMPLE_SITE_VAR=str(var),
        HOPWATCH_LOG=str(log),
        PYTHONPATH=str(ROOT),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def prepare_database(var: Path) -> Path:
    """A migrated database with the example site's 20 products, in ``var``."""
    var.mkdir(parents=True, exist_ok=True)
    env = site_env(var, var / "unused.log")
    for command in (["migrate", "--verbosity", "0"], ["loaddata", "products", "--verbosity", "0"]):
        subprocess.run(
            [sys.executable, "-m", "django", *command], env=env, cwd=ROOT, check=True, timeout=120
        )
    return var / "db.sqlite3"


class Server:
    """One ``python -m tests.stress.server`` process and its log."""

    def __init__(self, directory: Path, template_db: Path, **options: Any) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template_db, self.dir / "db.sqlite3")
        self.log = self.dir / "hopwatch.log"
        self.summary_file = self.dir / "summary.json"
        self.stderr_file = self.dir / "server.stderr"
        self.options = options
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        for _attempt in range(3):  # the free port can be taken before uvicorn binds it
            self.port = free_port()
            command = [sys.executable, "-m", "tests.stress.server", "--port", str(self.port)]
            command += ["--summary", str(self.summary_file)]
            command += ["--lifetime", str(self.options.get("lifetime", 120))]
            if self.options.get("graceful_timeout") is not None:
                command += ["--graceful-timeout", str(self.options["graceful_timeout"])]
            env = site_env(self.dir, self.log, **self.options.get("env", {}))
            with self.stderr_file.open("ab") as stderr:
                self.process = subprocess.Popen(
                    command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    # A bare connection: no HTTP request, so no log line.
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.1)
            self.kill()
        raise RuntimeError(f"the stress server did not start: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")[-4000:]

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM, wait for the process to exit by itself, and return its summary."""
        self.terminate()
        code = self.wait(timeout)
        assert code == 0, f"server exited with {code}: {self.stderr()}"
        return self.summary()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def summary(self) -> dict[str, Any]:
        return json.loads(self.summary_file.read_text())

    def raw_lines(self) -> list[str]:
        if not self.log.exists():
            return []
        return self.log.read_text(encoding="utf-8").splitlines()

    def lines(self) -> list[dict[str, Any]]:
        """The hopwatch.request lines logged so far (every line must be one)."""
        parsed = [json.loads(line) for line in self.raw_lines()]
        assert all(line["event"] == "hopwatch.request" for line in parsed)
        return parsed


@contextlib.contextmanager
def running(directory: Path, template_db: Path, **options: Any) -> Iterator[Server]:
    server = Server(directory, template_db, **options)
    server.start()
    try:
        yield server
    finally:
        stop_server(server, 30)


def by_request_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{request_id: line}, requiring each id exactly once."""
    found: dict[str, dict[str, Any]] = {}
    for line in lines:
        rid = line["request_id"]
        assert rid not in found, f"two lines for request {rid}"
        found[rid] = line
    return found


def site_counts(line: dict[str, Any]) -> dict[str, int]:
    """{site: count} of a line, both directions summed."""
    counts: dict[str, int] = {}
    for site in line["sites"]:
        counts[site["site"]] = counts.get(site["site"], 0) + site["count"]
    return counts
