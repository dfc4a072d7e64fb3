"""``manage.py hopwatch_audit``: the middleware audit of this project (see ``hopwatch.audit``)."""

from __future__ import annotations

import io
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hopwatch import audit
from hopwatch._cli import (
    has_rich,
    printable,
    rich_missing,
    terminal_width,
    tolerate_narrow_encodings,
)
from hopwatch.audit.command import samples_type
from hopwatch.audit.traffic import from_logs


class Command(BaseCommand):
    help = (
        "List each MIDDLEWARE entry: its flags, the mode Django runs it in under ASGI and"
        " WSGI, the hops it costs per request, whether it holds a thread, and what to change;"
        " then the predicted hops per request, what a hop costs on this host, and what"
        " hopwatch adds to it."
    )
    requires_system_checks: list[str] = []  # the audit is useful on a project with warnings

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--format",
            choices=audit.FORMATS,
            default="auto",
            help="output format (default: rich on a terminal if rich is installed, else text)",
        )
        parser.add_argument(
            "--samples",
            type=samples_type,
            default=audit.DEFAULT_SAMPLES,
            metavar="N",
            help=f"hops timed per kind for the hop tax and hopwatch's own cost"
            f" (default {audit.DEFAULT_SAMPLES})",
        )
        parser.add_argument(
            "--logs",
            nargs="+",
            metavar="PATH",
            help="the project's hopwatch logs: rank the changes for the traffic in them",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # "µs" on a stdout that cannot write it (an ASCII locale): an escape, as the
        # hopwatch command writes it, not a UnicodeEncodeError once the hop tax is timed
        tolerate_narrow_encodings()
        format_name = options["format"]
        on_terminal = format_name == "auto" and self.stdout.isatty()
        if format_name == "auto":
            format_name = "rich" if on_terminal and has_rich() else "text"
        elif format_name == "rich" and (missing := rich_missing()) is not None:
            raise CommandError(missing, returncode=2)
        try:
            report = audit.audit_settings()
            if options["logs"]:
                report.traffic = from_logs(options["logs"])
        except audit.AuditError as exc:
            # escaped as the hopwatch command's one line is: the project's words in it
            raise CommandError(printable(str(exc)), returncode=2) from None
        audit.measure_host(report, options["samples"])
        buffer = io.StringIO()
        if format_name == "rich":
            audit.render_rich(report, buffer, width=terminal_width())
        elif format_name == "text":  # fitted on a terminal (auto without rich)
            audit.render_text(report, buffer, width=terminal_width() if on_terminal else None)
        else:
            audit.RENDERERS[format_name](report, buffer)
        self.stdout.write(buffer.getvalue(), ending="")

