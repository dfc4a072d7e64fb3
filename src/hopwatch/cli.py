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
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, Final, TextIO, cast

from hopwatch._cli import (
    UTF8_FORMATS,
    Parser,
    os_error_reason,
    silence_stdout,
    to_devnull,
    tolerate_narrow_encodings,
    wrap,
)

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


def version_text() -> str:
    """``hopwatch --version``: the version, and which of hopwatch's two C parts this
    install runs (each has a pure-Python fallback, used where the install had no C
    compiler: same results, more time), and why not where it does not."""
    from hopwatch import _hotpath
    from hopwatch.report import scan

    lines = [f"hopwatch {_version()}"]
    parts = (
        ("hop path", "hopwatch._speedups", _hotpath, "several times the cost per hop"),
        ("report scanner", "hopwatch.report._accumulate", scan, "slower per log line"),
    )
    missing = False
    for part, module, owner, cost in parts:
        if owner.IMPLEMENTATION == "c":
            lines.append(f"{part}: C ({module})")
        elif owner.UNAVAILABLE is None:
            lines.append(f"{part}: pure Python (HOPWATCH_PURE_PYTHON is set)")
        else:
            missing = True
            lines.append(f"{part}: pure Python, {cost}")
            lines.append(f"  {module} did not load: {owner.UNAVAILABLE}")
    if missing:
        # wrapped to a terminal's width, never inside the command
        lines.extend(wrap(_hotpath.REBUILD_HINT, 79, keep=[_hotpath.REBUILD_COMMAND]))
    return "\n".join(lines)


class _Version(argparse.Action):
    """--version, its text made only when asked (it imports the hop path)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show the version and whether the hop path and report scanner run in C, then exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        # before main() would: a load error naming a non-ASCII path, on an ASCII stdout
        tolerate_narrow_encodings()
        try:
            print(version_text(), flush=True)
        except BrokenPipeError:  # `hopwatch --version | true`: as the commands, no traceback
            silence_stdout()
        except OSError as exc:  # `> /dev/full`: one line and status 2, as the commands
            silence_stdout()  # what is still buffered goes nowhere: no second error at exit
            reason = os_error_reason(exc)
            parser.exit(2, f"hopwatch: cannot write the version to standard output: {reason}\n")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``command`` (the one about to run) filled in."""
    parser = Parser(
        prog="hopwatch",
        description="See what sync/async thread hops cost your Django app.",
    )
    parser.add_argument("--version", action=_Version)
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


class _Terminated(BaseException):
    """SIGTERM during ``hopwatch report``: unwinds it (its reader processes are stopped
    on the way out), then status 143, as the signal's own would be."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


class _Messages:
    """``sys.stderr`` while a command runs: a message it cannot write (stderr a pipe whose
    reader is gone, as in ``2>&1 | head -0``, or a full disk) is dropped, and leaves the
    exit status the command's own (Python's error would make it 1, "no hopwatch records").
    Everything but writing is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._drop()

    def _drop(self) -> None:
        # what is still buffered, and what comes after, goes to /dev/null: nothing fails
        # again (at exit neither)
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError, AttributeError):
            return
        to_devnull(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # the subcommand is the first word that is not an option (none take a value)
    command = next((word for word in arguments if not word.startswith("-")), None)
    stderr = sys.stderr
    messages = None if stderr is None else _Messages(stderr)
    if messages is not None:
        sys.stderr = cast(TextIO, messages)
    on_term: Any = None
    handles_term = command == "report" and threading.current_thread() is threading.main_thread()
    if handles_term:
        # the report's own (audit keeps the default): its readers end with it
        on_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        # Ctrl-C while the subcommand is imported too: no traceback
        parser = build_parser(command)
        try:
            args = parser.parse_args(arguments)
        except SystemExit as exc:  # --help, --version, usage errors
            return exc.code if isinstance(exc.code, int) else 2
        # a data format on stdout (not -o FILE, written as UTF-8 itself) is UTF-8 there too
        data = getattr(args, "format", None) in UTF8_FORMATS
        tolerate_narrow_encodings(utf8_stdout=data and not getattr(args, "output", None))
        status: int = args.run_command(args)
    except KeyboardInterrupt:
        print("hopwatch: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        return 143
    finally:
        if handles_term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if on_term is None else on_term)
        if messages is not None:
            messages.flush()
            sys.stderr = stderr
    return status


if __name__ == "__main__":
    sys.exit(main())
