"""The example site in debug mode: django-debug-toolbar with hopwatch's Hops panel.

    python3 dev.py site                      (sets up the virtualenv, then runs this)
    python -m example_site.debug [--port 8000] [--lifetime 3600]

Makes a fresh database in example_site/var/, then serves the site under uvicorn
(ASGI) on http://127.0.0.1:PORT/ with EXAMPLE_SITE_DEBUG=1 until Ctrl-C (or
``--lifetime`` seconds). Open that address in a browser and click "Hops" in the
toolbar. This mode is for looking, not measuring: the demo (`python3 dev.py
demo`) never runs it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from example_site.demo import ROOT, SITE, prepare, say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--lifetime", type=float, default=3600.0, help="stop after this")
    parser.add_argument("--var", type=Path, default=SITE / "var", help="where db and logs go")
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_site.settings",
        "EXAMPLE_SITE_VAR": str(args.var),
        "EXAMPLE_SITE_DEBUG": "1",
        "PYTHONPATH": str(ROOT),
    }
    say(f"preparing a fresh database in {args.var}")
    prepare(args.var, env)
    say(f"the example site in debug mode: open http://127.0.0.1:{args.port}/ (Ctrl-C stops it)")
    command = [sys.executable, "-m", "example_site.servers", "asgi"]
    command += ["--port", str(args.port), "--lifetime", str(args.lifetime)]
    try:
        return subprocess.call(command, env={**env, "HOPWATCH_LOG": str(args.var / "debug.log")})
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
