"""The hop path: the C accelerator when it is built, else the pure-Python reference.

Both modules have the same names and the same behaviour (see
``_hotpath_py``'s docstring for how a crossing is measured). Set
``HOPWATCH_PURE_PYTHON=1`` to use the pure-Python one (the test command runs
the suite both ways); ``IMPLEMENTATION`` says which one this process uses.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from hopwatch import __version__, _hotpath_py

impl: Any = _hotpath_py
IMPLEMENTATION = "python"
#: Why the C accelerator is not used although nobody asked for pure Python (not
#: built, or built and not loadable), for the system check hopwatch.W006, the
#: start-up warning (hopwatch.apps) and ``hopwatch --version``; None when it is
#: used or HOPWATCH_PURE_PYTHON chose the reference.
UNAVAILABLE: str | None = None
#: What to do about it (the same three say it): this version built again from its
#: sdist and nothing else changed. pip's --no-binary alone still takes a wheel of
#: it from pip's cache (the pure one this install built), hence --no-cache-dir;
#: --force-reinstall alone reinstalls and upgrades every dependency too (Django
#: among them), hence --no-deps and this version pinned.
REBUILD_COMMAND = (
    "pip install --force-reinstall --no-deps --no-cache-dir --no-binary hopwatch"
    f" hopwatch=={__version__}"
)
REBUILD_HINT = (
    "Reinstall hopwatch where a C compiler and Python's headers are present"
    f" ({REBUILD_COMMAND}), or install a wheel built on such a machine"
    " (docs/getting-started.md in hopwatch's source distribution)."
)


def unavailable_message() -> str:
    """What the system check hopwatch.W006 and the start-up warning say when
    ``UNAVAILABLE`` is set."""
    return (
        f"hopwatch's C accelerator (hopwatch._speedups) did not load ({UNAVAILABLE}):"
        " hopwatch runs its pure-Python hop path, with the same counts and names, at"
        " several times the cost per hop."
    )


if os.environ.get("HOPWATCH_PURE_PYTHON", "") in ("", "0"):
    try:
        # (not ``from hopwatch import``: a module that was not built then reads
        # "No module named ...", not "cannot import name ... from <a path>")
        _speedups = importlib.import_module("hopwatch._speedups")
    except ImportError as exc:  # not built (an install without a compiler): the reference
        UNAVAILABLE = str(exc) or type(exc).__name__
    else:
        impl = _speedups
        IMPLEMENTATION = "c"

Hop: Any = impl.Hop
LedgerCore: Any = impl.LedgerCore
CauseStats: Any = impl.CauseStats
finish_hop: Any = impl.finish_hop
attribute: Any = impl.attribute
configure: Any = impl.configure
set_active: Any = impl.set_active
set_thread_hook: Any = impl.set_thread_hook
clear_caches: Any = impl.clear_caches
then: Any = impl.then
fill_log_record: Any = impl.fill_log_record
deliver_line: Any = impl.deliver_line
take_failure: Any = impl.take_failure
enter_scope: Any = impl.enter_scope
scope_value: Any = impl.scope_value
find_scope: Any = impl.find_scope
start_request: Any = impl.start_request
begin_request: Any = impl.begin_request
name_request: Any = impl.name_request
steps_in_scope: Any = impl.steps_in_scope
around: Any = impl.around
make_patch: Any = getattr(impl, "make_patch", None) or impl.Patch

S2A_CALL: int = impl.S2A_CALL
A2S_CALL: int = impl.A2S_CALL
THREAD_HANDLER: int = impl.THREAD_HANDLER
MAIN_WRAP: int = impl.MAIN_WRAP
MODE_FINAL: int = impl.MODE_FINAL
MODE_USER: int = impl.MODE_USER
MODE_ASK: int = impl.MODE_ASK
