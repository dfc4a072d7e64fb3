"""``hopwatch audit`` and ``manage.py hopwatch_audit``: set Django up, audit, measure, print.

Exit status: 0 when the audit was printed, 2 for a usage error, settings or
middleware the audit cannot load, or standard output that cannot be written
(one line on stderr names it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import IO, Final

from hopwatch._cli import (
    Parser,
    os_error_reason,
    rich_missing,
    silence_stdout,
    usage_error,
    whole_number,
)
from hopwatch.audit.facts import (
    AuditError,
    _one_line,
    django_6_2_flag_changes,
    gather,
    request_started_hops,
)
from hopwatch.audit.model import DJANGO_6_2, Audit, build_audit, preview_django_6_2
from hopwatch.audit.render import FORMATS, render
from hopwatch.audit.traffic import from_logs
from hopwatch.hop_tax import DEFAULT_SAMPLES, HopTax, measure_hop_tax, measure_overhead

#: The start of the message when standard output cannot be written (full, closed).
STDOUT_ERROR: Final = "cannot write the audit to standard output"
HELP: Final = "list MIDDLEWARE with the hops each entry costs per request, and what to change"


def audit_settings(
    middleware: Sequence[str] | None = None, *, hop_tax: HopTax | None = None
) -> Audit:
    """Audit ``settings.MIDDLEWARE`` (or ``middleware``) of the configured project."""
    import asgiref
    import django
    from django.conf import settings

    paths = _middleware_paths(settings.MIDDLEWARE if middleware is None else middleware)
    facts = gather(paths)
    asgi_application = getattr(settings, "ASGI_APPLICATION", None)
    audit = build_audit(
        facts,
        settings_module=getattr(settings, "SETTINGS_MODULE", None)
        or os.environ.get("DJANGO_SETTINGS_MODULE"),
        django_version=django.get_version(),
        asgiref_version=getattr(asgiref, "__version__", "unknown"),
        asgi_application=str(asgi_application) if asgi_application else None,
        request_started=request_started_hops(),
        hop_tax=hop_tax,
    )
    if django.VERSION[:2] < DJANGO_6_2:
        audit.django_6_2 = preview_django_6_2(
            facts, django_6_2_flag_changes(paths), audit.request_started
        )
    if middleware is None and not settings.is_overridden("MIDDLEWARE"):
        # Split settings: `--settings mysite.settings` names the package, whose
        # __init__ sets nothing (Django's own check passes it silently too).
        audit.problems.append(
            f"{audit.settings_module or 'the settings module'} does not set MIDDLEWARE, so"
            " Django's default (empty) is audited; with split settings, name the module"
            " that sets it (--settings mysite.settings.production)"
        )
    return audit


def _middleware_paths(middleware: object) -> list[str]:
    """MIDDLEWARE as a list, or AuditError when it is not a list or tuple of dotted paths
    (Django would take a string for one path per character, and None for no list at all)."""
    if not isinstance(middleware, list | tuple):
        raise AuditError(
            f"MIDDLEWARE must be a list or tuple of dotted paths, not {_kind(middleware)}"
        )
    for index, path in enumerate(middleware):
        if not isinstance(path, str):
            raise AuditError(
                "MIDDLEWARE must be a list or tuple of dotted paths, but its entry"
                f" {index} is {_kind(path)}"
            )
    return list(middleware)


def _kind(value: object) -> str:
    if value is None:
        return "None"
    if isinstance(value, str):
        return "a string"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


DESCRIPTION: Final = """\
List each MIDDLEWARE entry of a Django project: its sync_capable/async_capable
flags, the mode Django runs it in under ASGI and under WSGI, the hops it costs
per request, whether it holds a worker thread, and what to change. Then the
predicted hops per request for an async and a sync view, and what a hop costs
on this host (measured now, in a helper thread)."""


#: ``--samples``: hops timed per kind (the management command shares it).
samples_type = whole_number(1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--settings",
        metavar="DOTTED.PATH",
        help="the Django settings module (default: $DJANGO_SETTINGS_MODULE)",
    )
    parser.add_argument(
        "--pythonpath",
        metavar="DIR",
        action="append",
        default=[],
        help="a directory to add to sys.path first (repeatable; the current"
        " directory is always added)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="output format (default: rich on a terminal if rich is installed, else text)",
    )
    parser.add_argument(
        "--samples",
        type=samples_type,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help=f"hops timed per kind for the hop tax and hopwatch's own cost"
        f" (default {DEFAULT_SAMPLES})",
    )
    parser.add_argument(
        "--logs",
        nargs="+",
        metavar="PATH",
        help="the project's hopwatch logs (files, directories, globs, .gz, as hopwatch report"
        " reads them): rank the changes by what they save for the traffic in them",
    )


def _error(message: str) -> int:
    return usage_error("audit", message)


def _setup_django(module: str, pythonpath: Sequence[str]) -> None:
    """Configure Django with ``module``, or check it already is. AuditError if not."""
    for entry in [os.getcwd(), *reversed(pythonpath)]:
        entry = os.path.abspath(entry)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from django.conf import settings

    if settings.configured:
        current = getattr(settings, "SETTINGS_MODULE", None)
        if current is not None and current != module:
            raise AuditError(f"Django is already configured with {current!r}, not {module!r}")
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    try:
        import django

        django.setup()
    except Exception as exc:
        raise AuditError(f"cannot load the settings {module!r}: {_one_line(exc)}") from None


def write_audit(
    out: IO[str],
    format_name: str = "auto",
    samples: int = DEFAULT_SAMPLES,
    logs: Sequence[str] | None = None,
) -> None:
    """Audit the configured project and write it (the CLI and the management command).

    ``logs``: the project's hopwatch logs; the changes are then ranked for the traffic
    they hold (raises AuditError when they cannot be read or hold no request)."""
    render(_measured_audit(samples, logs), format_name, out)


def _measured_audit(samples: int, logs: Sequence[str] | None) -> Audit:
    audit = audit_settings()
    if logs:
        audit.traffic = from_logs(logs)  # before measuring: a bad path fails at once
    measure_host(audit, samples)
    return audit


def measure_host(audit: Audit, samples: int = DEFAULT_SAMPLES) -> None:
    """Fill in the hop tax and hopwatch's own cost (a process serving no requests only)."""
    if "hopwatch.apps" in sys.modules:  # MEASURE_HOP_TAX's, if one runs: never beside ours
        sys.modules["hopwatch.apps"].wait_for_hop_tax_measurement(start=False)
    audit.hop_tax = measure_hop_tax(samples)
    audit.overhead = measure_overhead(samples)


def run(args: argparse.Namespace, stdout: IO[str] | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    module = args.settings or os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        return _error(
            "no Django settings: pass --settings dotted.path or set DJANGO_SETTINGS_MODULE"
        )
    if args.format == "rich" and (missing := rich_missing()) is not None:
        return _error(missing)
    if out is None:  # fd 1 closed (`>&-`): Python sets sys.stdout to None
        return _error(f"{STDOUT_ERROR}: it is closed")
    try:
        _setup_django(module, args.pythonpath)
        audit = _measured_audit(args.samples, args.logs)
    except AuditError as exc:
        return _error(str(exc))
    except SystemExit as exc:  # the project's code (settings, a middleware) called sys.exit()
        return _error(
            f"the project's code exited (sys.exit({exc.code!r})) while the audit loaded"
            f" the settings {module!r} and their middleware"
        )
    try:
        render(audit, args.format, out)
        out.flush()
    except BrokenPipeError:
        silence_stdout()
    except SystemExit:
        # rich's Console.on_broken_pipe, for the same closed pipe (| head): it puts
        # /dev/null on stdout and exits with status 1, where the other formats give 0
        silence_stdout()
    except OSError as exc:  # standard output is full, or failing
        silence_stdout()  # what is still buffered goes nowhere: no second error at exit
        return _error(f"{STDOUT_ERROR}: {os_error_reason(exc)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``hopwatch audit ...`` on its own (the ``hopwatch`` command dispatches here too)."""
    parser = Parser(prog="hopwatch audit")
    configure(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
