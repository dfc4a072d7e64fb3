"""pytest plugin for running asgiref's own test suite, with or without hopwatch.

Loaded with ``-p asgiref_suite_plugin`` by ``asgiref_suite.run()`` in a
subprocess (not by hopwatch's own test run). The environment says what to do:

* ``HOPWATCH_SUITE_MODE``: ``plain`` (hopwatch is not even imported) or
  ``hopwatch`` (``hopwatch.install()`` runs when this plugin is loaded, before
  asgiref's tests are collected; only the asgiref core patch, no Django);
* ``HOPWATCH_SUITE_OUT``: where to write the JSON result: the outcome of each
  test (``passed``, ``failed``, ``error``, ``skipped``, ``xfailed``,
  ``xpassed``), the asgiref that was tested, and in ``hopwatch`` mode proof
  that the patch was in place and saw the suite's hops.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MODE = os.environ["HOPWATCH_SUITE_MODE"]
OUT = os.environ["HOPWATCH_SUITE_OUT"]
assert MODE in ("plain", "hopwatch"), MODE

if MODE == "hopwatch":
    import hopwatch

    hopwatch.install()

_outcomes: dict[str, str] = {}


def _outcome(report: Any) -> str | None:
    if hasattr(report, "wasxfail"):
        if report.skipped:
            return "xfailed"
        if report.passed and report.when == "call":
            return "xpassed"
    if report.skipped:
        return "skipped"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.passed and report.when == "call":
        return "passed"
    return None


def pytest_runtest_logreport(report: Any) -> None:
    outcome = _outcome(report)
    if outcome is None:
        return
    previous = _outcomes.get(report.nodeid)
    # A teardown error after a pass is an error; otherwise the first verdict stands.
    if previous is None or (outcome == "error" and previous == "passed"):
        _outcomes[report.nodeid] = outcome


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _outcomes[f"<collection> {report.nodeid}"] = "error"


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    import asgiref
    from asgiref.sync import AsyncToSync, SyncToAsync

    result: dict[str, Any] = {
        "mode": MODE,
        "outcomes": _outcomes,
        "exitstatus": int(exitstatus),
        "asgiref_version": asgiref.__version__,
        "asgiref_file": os.path.realpath(asgiref.__file__),
        "hopwatch_imported": "hopwatch" in sys.modules,
    }
    if MODE == "hopwatch":
        from hopwatch import _errors, _patch
        from hopwatch._recorder import late, unscoped

        result["patched_at_end"] = (
            SyncToAsync.__dict__["__call__"] is _patch.patched(SyncToAsync)
            and AsyncToSync.__dict__["__call__"] is _patch.patched(AsyncToSync)
        )
        result["hops_seen"] = len(unscoped) + len(late)
        result["internal_errors"] = _errors.total()
    with open(OUT, "w", encoding="utf-8") as out:
        json.dump(result, out)
