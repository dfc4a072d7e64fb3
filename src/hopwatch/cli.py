"""The ``hopwatch`` command: ``hopwatch report ...`` and ``hopwatch audit ...``.

Each subcommand lives in its own module with ``HELP`` (one line),
``configure(parser)`` and ``run(args) -> int``; add it to :data:`COMMANDS`.
Only the module of the subcommand being run is imported (all of them for
``hopwatch --help``); ``report`` never needs Django, ``audit`` imports it only
when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

from hopwatch._cli import Parser

#: subcommand name -> module implementing it
COMMANDS: Final = {
    "report": "hopwatch.report.command",
    "audit": "hopwatch.audit.command",
}


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("hopwatch")
    except (ImportError, PackageNotFoundError):
        return "unknown"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``command`` (the one about to run) filled in."""
    parser = Parser(
        prog="hopwatch",
        description="See what sync/async thread hops cost your Django app.",
    )
    parser.add_argument("--version", action="version", version=f"hopwatch {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        if command is not None and name != command:
            commands.add_parser(name)  # not the one running: no need to import it
            continue
        module = importlib.import_module(module_name)  # all of them for "hopwatch --help"
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        if name == command:
            module.configure(sub)
            sub.set_defaults(run_command=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # the subcommand is the first word that is not an option (none take a value)
    command = next((word for word in arguments if not word.startswith("-")), None)
    parser = build_parser(command)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    _tolerate_narrow_encodings()
    try:
        status: int = args.run_command(args)
    except KeyboardInterrupt:
        print("hopwatch: interrupted", file=sys.stderr)
        return 130
    return status


def _tolerate_narrow_encodings() -> None:
    """A terminal or pipe that cannot encode "…" or "µ" gets an escape, not a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # closed, or not a text wrapper after all
                pass


if __name__ == "__main__":
    sys.exit(main())
