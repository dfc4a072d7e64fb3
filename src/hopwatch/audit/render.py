"""The audit for people: a table on a terminal, or plain text; JSON through the document.

Text from settings or code (paths, notes) is made safe for a terminal first
(:func:`_clean`); rich gets ``Text`` objects, never markup.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import IO, Any, Final

from hopwatch._cli import auto_format, is_terminal, printable, rich_width, terminal_width, wrap
from hopwatch.audit import changes
from hopwatch.audit.changes import Ranked
from hopwatch.audit.document import django_6_2_document, document
from hopwatch.audit.facts import ASGI, INTERFACES, WSGI, MiddlewareFacts
from hopwatch.audit.model import (
    ADVICE_ASYNC_ONLY,
    ADVICE_MIXIN,
    ADVICE_PROCESS_VIEW,
    ADVICE_SYNC_ONLY,
    VIEW_KINDS,
    WHEN_EXCEPTION,
    WHEN_TEMPLATE,
    Audit,
    EntryAudit,
)
from hopwatch.audit.traffic import FROM_LOGS, Traffic
from hopwatch.hop_tax import NEW_LOOP

FORMATS: Final = ("auto", "rich", "text", "json")


HOW_TO: Final[dict[str, str]] = {
    ADVICE_MIXIN: (
        "MiddlewareMixin under ASGI: Django calls each sync process_request and"
        " process_response through its own sync_to_async hop. Either rewrite it natively"
        " async (the pattern below: no hop, no thread held), or set async_capable = False on"
        " it (on a subclass you list in MIDDLEWARE if the class is not yours): Django then runs"
        " it, and every middleware above it, sync - one transition in and out instead of a hop"
        " per hook, but the request holds a worker thread until it ends."
    ),
    ADVICE_SYNC_ONLY: (
        "Sync-only middleware under ASGI: Django runs it, and every middleware above it, in a"
        " worker thread (sync_to_async into the chain, async_to_sync out below it), and the"
        " request holds that thread until it ends, even while the view awaits. Making it sync"
        " and async capable (the pattern below; if it is third-party, upgrade it or ask its"
        " maintainers) frees the thread, but each MiddlewareMixin hook above it then hops on"
        " its own again: a trade, not a saving, below a few of them (what to change first"
        " prices it for this stack). A MiddlewareMixin subclass with async_capable = False made"
        " that trade on purpose: fewer hops, one thread held per request."
    ),
    ADVICE_ASYNC_ONLY: (
        "Async-only middleware under WSGI: Django enters it through async_to_sync, a new event"
        " loop in a new thread on every request. Make it sync capable too (the pattern below)."
    ),
    ADVICE_PROCESS_VIEW: (
        "A sync process_view costs one sync_to_async hop per request under ASGI: Django adapts"
        " it to the handler's mode whatever mode the middleware runs in. An async def"
        " process_view costs none under ASGI, but one async_to_sync per request under WSGI."
    ),
}

PATTERN: Final = """\
from asgiref.sync import iscoroutinefunction, markcoroutinefunction

class MyMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)  # Django then awaits this instance

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        # before the view (sync)
        response = self.get_response(request)
        # after the view (sync)
        return response

    async def __acall__(self, request):
        # before the view: no blocking calls (use the async ORM/cache APIs)
        response = await self.get_response(request)
        # after the view
        return response
"""

_LABELS: Final = {
    ADVICE_MIXIN: "A",
    ADVICE_SYNC_ONLY: "B",
    ADVICE_ASYNC_ONLY: "C",
    ADVICE_PROCESS_VIEW: "D",
}


def _clean(text: str) -> str:
    """Text from settings or code, made safe for a terminal: escaped as everything
    hopwatch prints from the project or a log (``hopwatch._cli.escaped``: ``\\x1b``)."""
    return printable(text)


def _capable(fact: MiddlewareFacts) -> str:
    if fact.sync_capable and fact.async_capable:
        return "sync+async"
    return "sync only" if fact.sync_capable else "async only"


def _mode(entry: EntryAudit, interface: str) -> str:
    mode = entry.modes[interface]
    return mode if mode is not None else "not used"


def _hooks_cell(entry: EntryAudit) -> str:
    parts = []
    for hook in entry.hooks:
        name = f"async {hook.name}" if hook.is_async else hook.name
        if hook.when == WHEN_TEMPLATE:
            name += " (TemplateResponse)"
        elif hook.when == WHEN_EXCEPTION:
            name += " (exceptions)"
        parts.append(f"{name} {hook.hops[ASGI]}")
    if entry.own[ASGI]:
        parts.append(f"its own code {entry.own[ASGI]}")
    if entry.adaptation[ASGI]:
        parts.append(f"adapting the chain {entry.adaptation[ASGI]}")
    return ", ".join(parts) if parts else "-"


def _pins_cell(entry: EntryAudit, positions: Mapping[str, int]) -> str:
    if not entry.pins_thread:
        return "no"
    if entry.pinned_by is None:
        return "yes"
    return f"yes (via #{positions[entry.pinned_by]})"


def _change_cell(entry: EntryAudit, baseline: tuple[int, int]) -> str:
    if not entry.advice:
        return "-"
    labels = "".join(f"[{_LABELS[a]}]" for a in entry.advice)
    ifs = []
    django_own = entry.facts.path.split(".", 1)[0] == "django"
    for what_if in entry.what_ifs:
        if django_own and what_if.change == "native-async":
            continue  # nobody rewrites Django's own middleware
        if what_if.change == "sync_capable=True":
            ifs.append(f"{what_if.change}: WSGI {baseline[1]}->{what_if.wsgi_async_view}")
            continue
        text = f"{what_if.change}: {baseline[0]}->{what_if.asgi_async_view}"
        if what_if.change == "async process_view":
            text += f", WSGI {baseline[1]}->{what_if.wsgi_async_view}"
        if what_if.pins_thread:
            text += " (holds a thread)"
        elif entry.pins_thread:
            text += " (no thread held)"
        ifs.append(text)
    return f"{labels} {'; '.join(ifs)}" if ifs else labels


Column = tuple[str, Callable[[EntryAudit], str], bool]


def _columns(audit: Audit) -> list[Column]:
    baseline = (audit.predicted(ASGI, "async_view"), audit.predicted(WSGI, "async_view"))
    positions = {entry.facts.path: entry.position for entry in audit.entries}
    return [
        ("#", lambda e: str(e.position), True),
        ("middleware", lambda e: _clean(e.facts.path), False),
        ("capable", lambda e: _capable(e.facts), False),
        ("mode ASGI/WSGI", lambda e: f"{_mode(e, ASGI)}/{_mode(e, WSGI)}", False),
        ("hops ASGI/WSGI", lambda e: f"{e.hops[ASGI]}/{e.hops[WSGI]}", True),
        ("ASGI hops by hook", _hooks_cell, False),
        ("pins thread", lambda e: _pins_cell(e, positions), False),
        ("change (hops per async-view request)", lambda e: _change_cell(e, baseline), False),
    ]


def _title(audit: Audit) -> str:
    where = _clean(audit.settings_module or "settings")
    asgi = (
        f"ASGI_APPLICATION = {_clean(audit.asgi_application)}"
        if audit.asgi_application
        else "ASGI_APPLICATION not set"
    )
    return (
        f"hopwatch audit: {where} (Django {audit.django_version}, asgiref"
        f" {audit.asgiref_version}; {asgi})"
    )


def _us(value: float) -> str:
    return f"{value:,.0f} µs" if value < 10_000 else f"{value / 1000:,.1f} ms"


def _summary_lines(audit: Audit) -> list[str]:
    lines = ["predicted hops per request (a view that returns a plain response):"]
    for interface in INTERFACES:
        cells = []
        for view_kind in VIEW_KINDS:
            sim = audit.simulations[(interface, view_kind)]
            cell = f"{view_kind.replace('_', ' ')} {sim.count}"
            if audit.hop_tax is not None and sim.count:
                cell += f" (~{_us(audit.hop_tax.cost_us(sim.adapters()))})"
            new_loops = sim.adapters()[NEW_LOOP]
            if new_loops:
                cell += f", {new_loops} new event loop{'s' if new_loops > 1 else ''}"
            cells.append(cell)
        lines.append(f"  {interface.upper()}: " + "; ".join(cells))
    outside = []
    if audit.request_started:
        outside.append("request_started 1")
    outside.append("response.close() 1")
    lines.append(
        f"  outside the chain under ASGI: {', '.join(outside)}; a sync view adds 1 under ASGI,"
        " an async view 1 under WSGI (async_to_sync)"
    )
    tax = audit.hop_tax
    if tax is not None:
        lines.append(
            f"hop tax on this host (10th percentile of {tax.samples}"
            f"{', hopwatch instrumentation on' if tax.instrumented else ''}):"
            f" sync_to_async {_us(tax.sync_to_async_us)},"
            f" async_to_sync {_us(tax.async_to_sync_us)} onto a running loop,"
            f" {_us(tax.new_loop_us)} with a new event loop;"
            f" `hopwatch report --hop-tax {tax.sync_to_async_us:.0f}` prices logged hops at it"
        )
    overhead = audit.overhead
    if overhead is not None:
        added = (
            f"+{_us(overhead.added_us)} ({overhead.added_us / overhead.bare_us:+.0%})"
            if overhead.added_us > 0
            else "nothing this measurement can see"
        )
        lines.append(
            f"hopwatch's own cost per hop on this host: {added} on a bare sync_to_async of"
            f" {_us(overhead.bare_us)} (medians of {overhead.samples} with and without, taking"
            " turns)"
        )
    lines.extend(_clean(line) for line in django_6_2_lines(audit))
    for problem in audit.problems:
        lines.append(f"problem: {_clean(problem)}")
    for entry in audit.entries:
        for note in entry.facts.notes:
            if not note.is_problem:  # problems are listed above
                lines.append(f"note: {_clean(entry.facts.path)} {_clean(note.text)}")
    return lines


def _how_to_lines(audit: Audit) -> list[str]:
    used = [a for a in _LABELS if any(a in entry.advice for entry in audit.entries)]
    if not used:
        return ["nothing to change: no entry adds a hop or holds a thread"]
    lines = ["what to change:"]
    for advice in used:
        lines.append(f"[{_LABELS[advice]}] {HOW_TO[advice]}")
    if any(a != ADVICE_PROCESS_VIEW for a in used):
        lines.append("")
        lines.append("A sync and async capable middleware (Django never adapts it):")
        lines.append("")
        lines.extend("    " + line if line else "" for line in PATTERN.splitlines())
    return lines


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def _traffic_words(traffic: Traffic, priced_by_tax: bool) -> str:
    if traffic.source == FROM_LOGS:
        parts = []
        for interface in INTERFACES:
            kinds = [
                f"{_percent(traffic.share(interface, kind))} {kind.replace('_', ' ')}s"
                for kind in VIEW_KINDS
                if traffic.share(interface, kind)
            ]
            if kinds:
                parts.append(f"{interface.upper()} {', '.join(kinds)}")
        words = (
            f"your traffic: {traffic.requests:,.0f}"
            f" request{'' if round(traffic.requests) == 1 else 's'} to a view in the logs"
            f" ({'; '.join(parts)})"
        )
        unknown = traffic.left_out - traffic.no_view
        left = [
            (count, what)
            for count, what in (
                (traffic.no_view, "that no view served"),
                (unknown, "whose view the logs do not say is sync or async"),
            )
            if round(count)
        ]
        if left:  # ", 374 more that no view served left out"
            listed = [
                f"{count:,.0f} {'more ' if not i else ''}{what}"
                for i, (count, what) in enumerate(left)
            ]
            words += f", {' and '.join(listed)} left out"
        if traffic.price_us is not None:
            return f"{words}; a crossing cost {_us(traffic.price_us)} there"
    else:
        words = (
            "ASGI traffic, half async-view and half sync-view requests (give --logs to rank for"
            " yours)"
        )
    return f"{words}; crossings priced at this host's hop tax" if priced_by_tax else words


def _saving_words(item: Ranked, logs: bool) -> str:
    """What the change does per request, as the JSON's ``saving`` and thread fields say:
    the crossings saved (or added), their time at their price, the worker thread."""
    hops = round(item.hops, 1) + 0.0  # + 0.0: no "-0.0"
    if hops > 0:
        words = f"saves {hops:.1f} crossings per request"
    elif hops < 0:
        words = f"costs {-hops:.1f} more crossings per request"
    else:
        words = "as many crossings per request"
    dearer = False
    if item.us is not None and round(item.us):
        if item.us < 0 and hops > 0:  # fewer crossings, dearer ones (a new event loop)
            words += f", but they cost ~{_us(-item.us)} more: a trade, not a saving"
        elif item.us < 0:
            words += f" (~{_us(-item.us)} more)"
            dearer = True
        else:
            words += f" (~{_us(item.us)}{'' if hops > 0 else ' less'})"
    if logs and item.total_ms is not None and round(item.total_ms / 1000, 2):
        more = " more" if item.total_ms < 0 else ""
        words += f", {abs(item.total_ms) / 1000:,.2f} s{more} over the logged requests"
    if item.change.frees_thread:
        words += f", {'but' if hops < 0 or dearer else 'and'} frees the worker thread each"
        words += " ASGI request holds"
    return words


def _cells_words(item: Ranked, traffic: Traffic) -> str:
    shown = []
    for interface, kind in changes.CELLS:
        before, after = item.change.hops[(interface, kind)]
        if before != after and (traffic.share(interface, kind) or traffic.source != FROM_LOGS):
            shown.append(f"{interface.upper()} {kind.replace('_', ' ')} {before} -> {after}")
    held = (
        "a worker thread is then held for each request"
        if item.change.pins_thread
        else "no thread held"
    )
    return "; ".join([", ".join(shown), held] if shown else [held])


def changes_lines(audit: Audit) -> list[str]:
    """What to change first, ranked for the traffic; which entries need nothing."""
    traffic, ranked = changes.for_audit(audit)
    logs = traffic.source == FROM_LOGS
    priced_by_tax = traffic.price_us is None and audit.hop_tax is not None
    lines = [f"what to change first (ranked for {_traffic_words(traffic, priced_by_tax)}):"]
    if not ranked:
        lines.append("  nothing: no change the audit knows saves a crossing for this traffic")
    for number, item in enumerate(ranked, 1):
        lines.append(f"  {number}. {_clean(item.change.what)}: {_saving_words(item, logs)}")
        if number <= changes.LEADING:  # the one or two that matter: what they change
            lines.append(f"     {_cells_words(item, traffic)}")
    nothing = changes.needs_nothing(audit.entries)
    if nothing:
        names = [f"#{e.position} {_clean(e.facts.path.rsplit('.', 1)[-1])}" for e in nothing]
        lines.append(f"needs nothing: {', '.join(names)}")
    django_own = changes.django_with_hops(audit.entries)
    if django_own:
        positions = ", ".join(f"#{e.position}" for e in django_own)
        lines.append(
            f"Django's own middleware ({positions}): nothing to change in them; a chain-wide"
            " change above is what removes their hops"
        )
    return lines


def _cells(audit: Audit) -> list[list[str]]:
    """The middleware table's text: the headers, then a row per entry."""
    columns = _columns(audit)
    cells = [[header for header, _cell, _right in columns]]
    cells += [[cell(entry) for _header, cell, _right in columns] for entry in audit.entries]
    return cells


def _wrapped(line: str, width: int, indent_items: bool = False) -> list[str]:
    """``line`` wrapped to ``width``, each continuation under its line's text; with
    ``indent_items`` (a list), under a numbered item's text, past its number, and two
    columns in under a heading. A number and its unit stay on one line."""
    lead = len(line) - len(line.lstrip())
    numbered = indent_items and line[lead:].split(".")[0].isdigit()
    indent = " " * (lead + 3 if numbered else lead if lead or not indent_items else 2)
    return wrap(line, width, indent) or [""]


def render_text(audit: Audit, out: IO[str], *, width: int | None = None) -> None:
    """Plain text. With ``width`` (a terminal without rich), fitted to it: the prose
    wrapped as the rich table's is, and the table, if it is wider, one block per entry."""
    columns = _columns(audit)
    cells = _cells(audit)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    table = []
    for line in cells:
        parts = []
        for i, (value, (_header, _cell, right)) in enumerate(zip(line, columns, strict=True)):
            last = i == len(columns) - 1
            aligned = value.rjust(widths[i]) if right else value.ljust(widths[i])
            parts.append(value if last and not right else aligned)
        table.append("  ".join(parts).rstrip())
    if width is not None and max(len(line) for line in table) > width:
        table = _entry_blocks(cells, width)

    def write(lines: list[str], indent_items: bool = False, code: bool = False) -> None:
        for line in lines:
            if width is None or (code and line.startswith("    ")):  # code is never wrapped
                out.write(line + "\n")
                continue
            for part in _wrapped(line, width, indent_items):
                out.write(part + "\n")

    write([_title(audit), ""])
    if audit.entries:
        write([*changes_lines(audit), ""], indent_items=True)
        out.write("\n".join(table) + "\n")
    else:
        out.write("MIDDLEWARE is empty\n")
    write(["", *_summary_lines(audit), ""])
    write("\n".join(_how_to_lines(audit)).rstrip().split("\n"), code=True)


def _entry_blocks(cells: list[list[str]], width: int) -> list[str]:
    """The middleware table as one block per entry: "#  middleware", then each
    other column as "header: value", wrapped to ``width``."""
    headers, *rows = cells
    lines: list[str] = []
    for row in rows:
        lines.extend(wrap(f"{row[0]}  {row[1]}", width, "   ") or [""])
        for header, value in zip(headers[2:], row[2:], strict=True):
            lines.extend(wrap(f"    {header}: {value}", width, "      ") or [""])
    return lines


def render_rich(audit: Audit, out: IO[str], *, width: int | None = None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(
        file=out, highlight=False, emoji=False, markup=False, width=rich_width(width)
    )
    columns = _columns(audit)
    table = Table(title=Text(_title(audit)), header_style="bold", box=box.SIMPLE_HEAD)
    # one item per line in the cells that list several
    split = {"ASGI hops by hook": ", ", "change (hops per async-view request)": "; "}
    for header, _cell, right in columns:
        table.add_column(
            Text(header),
            justify="right" if right else "left",
            no_wrap=header == "#",
            overflow="fold",
        )
    for entry in audit.entries:
        table.add_row(
            *(
                Text(cell(entry).replace(split[header], "\n") if header in split else cell(entry))
                for header, cell, _right in columns
            )
        )
    if audit.entries:
        console.print(Text(_title(audit), style="bold"))
        console.print(Text(""))
        for line in changes_lines(audit):
            # wrapped here, so that a continuation lines up under its item's text
            for part in _wrapped(line, console.width, indent_items=True):
                console.print(Text(part), no_wrap=True, overflow="ignore", crop=False)
        table.title = None
        unbounded = console.options.update_width(1_000_000)
        if console.measure(table, options=unbounded).maximum > console.width:
            # narrower than the table: one block per entry, as the text format does,
            # not eight columns folded a few letters wide
            console.print(Text(""))
            for line in _entry_blocks(_cells(audit), console.width):
                console.print(Text(line), no_wrap=True, overflow="ignore", crop=False)
            console.print(Text(""))
        else:
            console.print(table)
    else:
        console.print(Text(_title(audit)))
        console.print(Text("MIDDLEWARE is empty"))

    def prose(line: str) -> None:
        """Wrapped as the text format wraps it, continuations under the line's text."""
        for part in _wrapped(line, console.width):
            console.print(Text(part), no_wrap=True, overflow="ignore", crop=False)

    for line in _summary_lines(audit):
        prose(line)
    console.print(Text(""))
    for line in _how_to_lines(audit):
        if line.startswith("    "):  # code: never wrapped
            console.print(Text(line), soft_wrap=True)
        else:
            prose(line)


def render_json(audit: Audit, out: IO[str]) -> None:
    json.dump(document(audit), out, indent=2, ensure_ascii=True, allow_nan=False)
    out.write("\n")


RENDERERS: Final[dict[str, Callable[[Audit, IO[str]], None]]] = {
    "rich": render_rich,
    "text": render_text,
    "json": render_json,
}


def render(audit: Audit, format_name: str, out: IO[str]) -> None:
    if format_name == "auto":
        format_name = auto_format(out)
        if format_name == "text" and is_terminal(out):
            # no rich: the plain text, fitted to the terminal as rich's table is
            render_text(audit, out, width=terminal_width())
            return
    RENDERERS[format_name](audit, out)


def render_to_string(audit: Audit, format_name: str) -> str:
    buffer = io.StringIO()
    RENDERERS["text" if format_name == "auto" else format_name](audit, buffer)
    return buffer.getvalue()


def _pinned_words(side: dict[str, Any]) -> str:
    if side["pinned_by"] is None:
        return "nothing pinned"
    hops = side["pinned_hops"]
    timed = f", ~{_us(side['pinned_hop_time_us'])}" if side["pinned_hop_time_us"] else ""
    return (
        f"pinned: the view + {hops} hop{'s' if hops != 1 else ''}{timed}"
        f" (by {side['pinned_by'].rsplit('.', 1)[-1]})"
    )


def django_6_2_lines(audit: Audit) -> list[str]:
    """The text lines of the preview (none when there is nothing to say)."""
    document = django_6_2_document(audit)
    if document is None:
        return []
    affected = document["affected"]
    lines = [
        f"Django 6.2 (ticket #37177) makes Django's own MiddlewareMixin subclasses sync-only"
        f" (async_capable = False): {len(affected)} entr{'ies' if len(affected) != 1 else 'y'}"
        " here. Under ASGI, per request:"
    ]
    for kind in VIEW_KINDS:
        before, after = document[ASGI][kind]["before"], document[ASGI][kind]["after"]
        timed = ""
        if before["hop_time_us"] is not None:
            timed = f" (~{_us(before['hop_time_us'])} -> ~{_us(after['hop_time_us'])})"
        lines.append(
            f"  {kind.replace('_', ' ')}: {before['hops']} -> {after['hops']} hops{timed};"
            f" {_pinned_words(before)} -> {_pinned_words(after)}"
        )
    lines.append(
        "  pinned: a worker thread held for the view's whole duration plus those hops, on every"
        " request (pinned_ms in the request lines), even while the view awaits I/O: one thread"
        " per request in flight. To keep today's behaviour for one, list a subclass of it with"
        " async_capable = True."
    )
    return lines
