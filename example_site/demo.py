"""The demo: the example site under real servers, traffic, then ``hopwatch report``.

    python3 dev.py demo                      (sets up the virtualenv, then runs this)
    python -m example_site.demo [--requests 40] [--concurrency 8] [--format table]

1. makes a fresh database in example_site/var/ (migrations and fixture data);
2. starts the site under uvicorn (ASGI) and under wsgiref (WSGI), on 127.0.0.1;
3. sends a bounded number of requests to every example endpoint;
4. stops both servers (they also stop by themselves after a few minutes);
5. runs ``hopwatch report`` on the two captured logs, and writes the same report as
   a page (``--format html``, with each endpoint's slowest request on a timeline: the
   servers log in detail mode) next to them.

Run it again at will: each run starts from a clean example_site/var/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(__file__).resolve().parent

#: (path, server) for every example endpoint; products/<pk>/ cycles through ids.
ENDPOINTS = [
    ("/hello/", "asgi"),
    ("/hello-sync/", "asgi"),
    ("/products/one-by-one/", "asgi"),
    ("/products/", "asgi"),
    ("/products/{pk}/", "asgi"),
    ("/mw/legacy/", "asgi"),
    ("/mw/rewrite/", "asgi"),
    ("/export/sync-iterator/", "asgi"),
    ("/export/", "asgi"),
    ("/orders/sync-receiver/", "asgi"),
    ("/orders/", "asgi"),
    ("/boom/", "asgi"),
    ("/under-wsgi/", "wsgi"),
]


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(var: Path, env: dict[str, str]) -> None:
    if var.exists():
        shutil.rmtree(var)
    var.mkdir(parents=True)
    manage = [sys.executable, str(SITE / "manage.py")]
    for command in (["migrate", "--verbosity", "0"], ["loaddata", "products", "--verbosity", "0"]):
        if subprocess.run([*manage, *command], env=env, cwd=ROOT).returncode != 0:
            raise SystemExit(f"demo: `manage.py {command[0]}` failed (its error is above)")


@contextmanager
def servers(var: Path, env: dict[str, str], lifetime: float) -> Iterator[dict[str, int]]:
    ports = {"asgi": free_port(), "wsgi": free_port()}
    processes = []
    try:
        for interface, port in ports.items():
            server_env = {**env, "HOPWATCH_LOG": str(var / f"{interface}.log")}
            command = [sys.executable, "-m", "example_site.servers", interface]
            command += ["--port", str(port), "--lifetime", str(lifetime)]
            processes.append(subprocess.Popen(command, env=server_env, cwd=ROOT))
        for interface, port in ports.items():
            wait_until_up(port, interface)
        yield ports
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_up(port: int, interface: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    path = "/hello/" if interface == "asgi" else "/under-wsgi/"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
                reply.read()
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"demo: the {interface} server did not start on 127.0.0.1:{port}")


def fetch(url: str) -> int | str:
    """The status of a GET of ``url``; what went wrong, when it got none (the
    connection refused, reset, or closed in the middle of the response)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as error:  # /boom/ answers 500, by design
        error.read()
        return int(error.code)
    except urllib.error.URLError as error:
        return str(error.reason)
    except (http.client.HTTPException, OSError) as error:
        return str(error) or type(error).__name__


def drive(ports: dict[str, int], requests: int, concurrency: int) -> int:
    urls = []
    for path, interface in ENDPOINTS:
        for i in range(requests):
            urls.append(f"http://127.0.0.1:{ports[interface]}{path.format(pk=i % 20 + 1)}")
    # Interleave endpoints, so each sees the same load.
    urls.sort(key=lambda url: hash(url) % 7)
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(fetch, urls))
    # A request that got no whole response: one line, the first error of each path (the
    # server's own error, if it had one, is in its output above).
    failed: dict[str, list[str]] = {}
    for url, status in zip(urls, statuses, strict=True):
        if isinstance(status, str):
            failed.setdefault(urllib.parse.urlsplit(url).path, []).append(status)
    if failed:
        where = ", ".join(f"{path} ({errors[0]})" for path, errors in failed.items())
        count = sum(len(errors) for errors in failed.values())
        said = f"{count} of {len(urls)} requests ended without a whole response"
        raise SystemExit(f"demo: {said}: {where}")
    unexpected = [s for s in statuses if s not in (200, 500)]
    if unexpected:
        raise SystemExit(f"demo: unexpected statuses {sorted(set(unexpected))}")
    return len(statuses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the example site, send traffic, report.")
    parser.add_argument("--requests", type=int, default=40, help="requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lifetime", type=float, default=300.0, help="servers stop after this")
    parser.add_argument("--var", type=Path, default=SITE / "var", help="where db and logs go")
    parser.add_argument(
        "--format", default="table", help="report format: table, json, markdown or csv"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 64:
        parser.error("--requests takes 1-10000 and --concurrency 1-64")

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_site.settings",  # whatever the caller had set
        "EXAMPLE_SITE_VAR": str(args.var),
        "PYTHONPATH": str(ROOT),
    }
    # Measured runs: never the debug mode (toolbar), whatever the caller's shell says.
    env.pop("EXAMPLE_SITE_DEBUG", None)
    env["EXAMPLE_SITE_DETAIL"] = "1"  # each crossing in the lines, for the page's timelines
    say(f"preparing a fresh database in {args.var}")
    prepare(args.var, env)
    say("the example site on 127.0.0.1: uvicorn (ASGI) and wsgiref (WSGI)")
    started = time.monotonic()
    with servers(args.var, env, args.lifetime) as ports:
        say(
            f"sending {args.requests} requests to each of {len(ENDPOINTS)} endpoints,"
            f" {args.concurrency} at a time"
        )
        say("(/export/sync-iterator/ streams a sync iterator under ASGI on purpose:")
        say(" Django warns of it once below, and hopwatch counts the hop it costs)")
        sent = drive(ports, args.requests, args.concurrency)
    say(f"{sent} requests in {time.monotonic() - started:.1f}s; servers stopped")
    logs = [str(args.var / "asgi.log"), str(args.var / "wsgi.log")]
    say(f"hopwatch report {' '.join(os.path.relpath(p, ROOT) for p in logs)}\n")
    command = [sys.executable, "-m", "hopwatch", "report", *logs]
    if args.format != "table":
        command += ["--format", args.format]
    status = subprocess.call(command, cwd=ROOT)
    page = args.var / "report.html"
    html = [sys.executable, "-m", "hopwatch", "report", *logs, "--format", "html", "-o", str(page)]
    done = subprocess.run(html, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        # (the path on a line of its own: at 80 columns a long one wrapped the sentence)
        say("the same report as a page, with timelines (open it in a browser):")
        say(f"  {page}")
    else:
        say(f"could not write the page {page}: {done.stderr.strip()}")
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
