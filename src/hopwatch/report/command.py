"""``hopwatch report``: its options, and running it to an exit status.

Exit status: 0 when hopwatch records were found and reported, 1 when none were
found (or the filters left none), 2 for a usage error, an input that cannot be
read or an output that cannot be written (one line on stderr names it).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final

import hopwatch.schema as schema
from hopwatch._cli import (
    argv_text,
    auto_format,
    is_terminal,
    os_error_reason,
    rich_missing,
    silence_stdout,
    terminal_width,
    usage_error,
    whole_number,
)
from hopwatch.report import inputs, output, parallel, parse, rank, render, visual
from hopwatch.report.scan import Filters, StatusFilter
from hopwatch.report.text import clean

FORMATS: Final = ("auto", "rich", "text", "json", "markdown", "csv", *visual.FORMATS)
HELP: Final = "rank the worst endpoints from captured hopwatch logs"
DESCRIPTION: Final = """\
Read hopwatch.request lines from log files, directories, globs, gzip, bzip2 or
xz files or stdin ("-"), mixed with anything else, and rank endpoints by what
their sync/async thread hops cost: the crossing overhead (queue wait plus
hand-off back), not the code that ran inside. Under the table: what each
column means, and the causes to change first. See docs/report.md in
hopwatch's source distribution for every column and option."""
EPILOG: Final = """\
sort keys: overhead (default: crossing overhead in all), overhead-mean,
overhead-p95, work, total (hop time), requests, mean, p50, p95, p99, hops,
max-hops, hop-share, wait-share (the wait % column), threads, loops, pinned
(pinned/req), hop-tax; with --by site: overhead (default), overhead-mean,
total, requests, mean, count, endpoints. What each ranks by: docs/report.md,
"Sort keys".
exit status: 0 reported, 1 no hopwatch records found, 2 usage error,
unreadable input or unwritable output."""

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)", re.IGNORECASE)
_UNITS: Final = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_STATUS_ITEM: Final = re.compile(r"[1-9]\d\d|[1-9]xx|none", re.IGNORECASE)


def parse_time(value: str, now: datetime | None = None) -> str:
    """A canonical UTC timestamp from ISO 8601 (naive means UTC) or a duration before now."""
    text = value.strip()
    relative = _DURATION.fullmatch(text)
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2).lower()]
        try:
            moment = (now or datetime.now(UTC)) - timedelta(seconds=seconds)
        except OverflowError:
            raise argparse.ArgumentTypeError(f"duration {value!r} is too long") from None
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        text += "T00:00"
    canonical = parse.canonical_timestamp(text)
    if canonical is None:
        raise argparse.ArgumentTypeError(
            f"invalid time {value!r}: use ISO 8601 such as 2026-11-24T10:00 (Z or +01:00; "
            "naive means UTC) or a duration before now such as 30m, 2h, 7d"
        )
    return canonical


def parse_status(value: str) -> StatusFilter:
    include: set[str] = set()
    exclude: set[str] = set()
    for raw in value.split(","):
        item = raw.strip()
        negate = item.startswith("!")
        item = item[1:].strip() if negate else item
        if item.lower() == "null":
            item = "none"
        if not _STATUS_ITEM.fullmatch(item):
            raise argparse.ArgumentTypeError(
                f"invalid status {raw.strip()!r}: use a code (404), a class (5xx) or none, "
                "with ! in front to exclude it"
            )
        (exclude if negate else include).add(item.lower())
    return StatusFilter(frozenset(include), frozenset(exclude), value.strip())


def parse_names(value: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def parse_interfaces(value: str) -> frozenset[str]:
    """The interfaces hopwatch writes (schema.INTERFACES): a typo would filter out
    every record, so it is a usage error that names them."""
    names = parse_names(value)
    unknown = sorted(names.difference(schema.INTERFACES))
    if unknown:
        named = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise argparse.ArgumentTypeError(
            f"invalid interface{plural} {named}: choose from {', '.join(schema.INTERFACES)}"
        )
    return names


def parse_hop_tax(value: str) -> float:
    try:
        number = float(value.strip().removesuffix("us").removesuffix("µs"))
    except ValueError:
        number = math.nan
    if not 0 < number < rank.MAX_HOP_TAX_US:  # also false for nan
        raise argparse.ArgumentTypeError(
            f"invalid hop tax {value!r}: give microseconds per hop above 0 and below"
            f" {rank.MAX_HOP_TAX_US:,}, such as 250 (hopwatch audit measures it)"
        )
    return number


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="log file, directory, glob or - for stdin (default: stdin when piped)",
    )
    parser.add_argument(
        "--by",
        choices=rank.BY_CHOICES,
        default="route",
        help="group by route and method (default), by view, or rank the causes",
    )
    parser.add_argument(
        "--sort",
        choices=rank.SORT_CHOICES,
        default=rank.DEFAULT_SORT,
        metavar="KEY",
        help="rank by this key, largest first (default: crossing overhead in all; total hop"
        " time for logs without overhead_ms)",
    )
    parser.add_argument(
        "--endpoint",
        metavar="LABEL",
        type=argv_text,
        help="one endpoint in detail: its causes, call sites, counts, overhead and what to"
        ' change ("GET /items/<int:pk>/", its route alone, or with --by view a view)',
    )
    parser.add_argument(
        "--top",
        type=whole_number(0),
        default=20,
        metavar="N",
        help="show the first N rows (default 20; 0 shows all)",
    )
    parser.add_argument(
        "--min-requests",
        type=whole_number(0),
        default=1,
        metavar="N",
        help="leave out rows with fewer logged requests (default 1)",
    )
    parser.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="only requests at or after TIME (ISO 8601 or 30m, 2h, 7d ago)",
    )
    parser.add_argument(
        "--until", type=parse_time, metavar="TIME", help="only requests before TIME"
    )
    parser.add_argument(
        "--status",
        type=parse_status,
        metavar="LIST",
        help="only these statuses: 200,5xx,none; !404 excludes",
    )
    parser.add_argument(
        "--interface",
        type=parse_interfaces,
        metavar="LIST",
        help=f"only these interfaces: {', '.join(schema.INTERFACES)}",
    )
    parser.add_argument(
        "--hop-tax",
        type=parse_hop_tax,
        metavar="US",
        help="price every hop at US microseconds (as hopwatch audit measured on the host)"
        " instead of the hop_tax_us the lines carry",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="output format (default: rich on a terminal if rich is installed, else text);"
        " html: a page with charts and timelines; trace: Chrome trace events (Perfetto)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    parser.add_argument(
        "--request-id",
        metavar="ID",
        type=argv_text,
        help="html, trace: draw the timeline of this request (logged in detail mode)",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="every column at its full width (a terminal otherwise gets the columns that fit)",
    )
    parser.add_argument(
        "--legend",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="explain each column in one line under the table (default: on)",
    )
    parser.add_argument(
        "--jobs",
        type=whole_number(1),
        metavar="N",
        help="processes to read with (default: one per core for large input)",
    )


def _echo_filters(args: argparse.Namespace) -> dict[str, Any]:
    echoed: dict[str, Any] = {}
    if args.since:
        echoed["since"] = args.since
    if args.until:
        echoed["until"] = args.until
    if args.status:
        echoed["status"] = args.status.text
    if args.interface:
        echoed["interface"] = sorted(args.interface)
    return echoed


def _usage_error(message: str) -> int:
    return usage_error("report", message)


def run(args: argparse.Namespace, stdout: IO[str] | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    if args.since and args.until and args.since >= args.until:
        return _usage_error("--since must be earlier than --until")
    if args.format == "rich" and (missing := rich_missing()) is not None:
        return _usage_error(missing)
    if args.request_id is not None and args.format not in visual.FORMATS:
        return _usage_error("--request-id draws a timeline: use it with --format html or trace")
    paths = list(args.paths)
    if not paths:
        if sys.stdin is None or sys.stdin.isatty():
            return _usage_error("no input: give log files, directories or globs, or - for stdin")
        paths = [inputs.STDIN]
    options = rank.ReportOptions(
        by=args.by,
        sort=args.sort,
        top=args.top,
        min_requests=args.min_requests,
        filters=_echo_filters(args),
        hop_tax_us=args.hop_tax,
        endpoint=args.endpoint,
    )
    try:
        options.check()
    except rank.OptionError as exc:
        return _usage_error(str(exc))
    filters = Filters(
        since=args.since, until=args.until, status=args.status, interfaces=args.interface
    )
    try:
        target = output.Output(args.output, out)  # checked before reading anything
        sources = inputs.resolve(paths)
        target.check_inputs([(source.name, source.identity) for source in sources])
        extra = visual.extra_for(args.format, args.request_id)
        partial = parallel.read_all(sources, filters, args.jobs, extra)
    except (inputs.InputError, output.OutputError) as exc:
        print(f"hopwatch report: {exc}", file=sys.stderr)
        return 2
    try:
        document = rank.build_document(partial, options, [source.name for source in sources])
    except rank.NoSuchEndpoint as exc:
        print(f"hopwatch report: {exc}", file=sys.stderr)
        return 1
    format_name = args.format
    width = None
    if format_name == "auto":
        format_name = auto_format(target.stream)
    if format_name == "text" and is_terminal(target.stream):
        width = terminal_width()  # the plain table on a terminal, fitted as rich's is
    problem = visual.nothing_to_draw(format_name, document, partial)
    if problem is not None:
        print(f"hopwatch report: {problem}", file=sys.stderr)
        return 1
    drawer = visual.renderer(format_name, partial)
    try:
        if drawer is not None:
            drawer(document, target.stream)
        else:
            render.render(
                document,
                format_name,
                target.stream,
                width=width,
                wide=args.wide,
                legend=args.legend,
            )
        target.finish()
    except BrokenPipeError:
        silence_stdout()
    except SystemExit:
        # rich's Console.on_broken_pipe, for the same closed pipe (| head): it puts
        # /dev/null on stdout and exits with status 1, where the other formats go on
        silence_stdout()
    except output.OutputError as exc:
        print(f"hopwatch report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # stdout (a file written to -o is written by target.finish())
        silence_stdout()  # what is still buffered goes nowhere: no second error at exit
        print(f"hopwatch report: {output.STDOUT_ERROR}: {os_error_reason(exc)}", file=sys.stderr)
        return 2
    if format_name in ("csv", "trace"):
        # no room for it in the output; json carries it in "summary", the page shows it
        print(f"hopwatch report: {render.summary_line(document)}", file=sys.stderr)
    if args.output:
        print(f"hopwatch report: wrote {clean(args.output)}", file=sys.stderr)
    return 0 if document["summary"]["reported"] > 0 else 1
