"""hopwatch's own instructions per hop, counted from callgrind's call tree.

A hop's marginal count (``run_callgrind`` in ``bench/__main__.py``) is all the
process does more per hop with hopwatch. For a hop that hands work between two
threads it also holds how often those threads wake each other under valgrind,
whose system calls run outside its lock and so follow real time: the
``async_to_sync`` onto the running loop has read +1,700 to +14,600 on the same
code (docs/performance-history.md, 2026-12-02, night). This module counts only
the work that runs because of hopwatch's C functions, which repeats to within
a few dozen instructions from draw to draw:

- the instructions of every function defined in ``src/hopwatch/_speedups.c``
  (callgrind lists the code a function inlines from CPython's installed
  headers under the header's name: a function is hopwatch's when its name is
  one ``_speedups.c`` defines and its file is ``_speedups.c`` or one of those
  headers; CPython's own ``fill_time``, in ``posixmodule.c``, is not),
- plus everything those functions call, counted inclusively,
- except the calls back into hopwatch's own functions (counted once, where
  they run), the calls that run the code hopwatch wraps (asgiref's own
  ``__call__``, ``main_wrap`` and ``thread_handler``, the awaited coroutine:
  any vectorcall, send or evaluation of Python code), and the deallocations
  made when an awaitable lets go of what it wrapped (the coroutine, which a
  bare hop frees too) or a ledger clears its hops (each counted in
  ``Hop_dealloc``).

With hopwatch's steady state no Python code of hopwatch runs on a hop (a cache
miss would call the Python resolver, which the "Python code" exclusion leaves
out), so the count is the C path's own. The marginal over the same two run
lengths cancels start-up, as for the totals.

It is not all a hop costs more with hopwatch: it leaves out what hopwatch's
presence makes other code do. The marginal holds that too, with the threads'
meeting: asgiref copying one more context variable between the two sides
where a context holds hopwatch's (the cold ``async_to_sync``, as under WSGI,
where it holds the request's record: 4,064 own, +13,684 in all on
2026-12-03), or the loop going round once more. So the two figures bound the
cost from both sides; neither replaces the other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src" / "hopwatch" / "_speedups.c"

#: A callee that runs the code hopwatch wraps, or any Python code.
_WRAPPED = re.compile(r"Vectorcall|PyIter_Send|gen_send|_PyEval_|PyObject_Call")
#: hopwatch functions whose deallocations free what is not hopwatch's to count.
_FREES_OTHERS = re.compile(r"^(HopAwaitable_\w+|LedgerCore_clear)$")
_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+([*>])\s+(\S+)")


def hopwatch_functions(source: Path = SOURCE) -> frozenset[str]:
    """The names of the functions ``_speedups.c`` defines (name at a line's start)."""
    return frozenset(re.findall(r"^([A-Za-z_]\w*)\(", source.read_text(), re.MULTILINE))


def _name(entry: str) -> str:
    """``/path/file.c:function'2`` -> ``function``."""
    return entry.rsplit(":", 1)[-1].split("'", 1)[0]


def _ours(entry: str, names: frozenset[str], include: str) -> bool:
    path = entry.rsplit(":", 1)[0]
    return _name(entry) in names and (path.endswith("_speedups.c") or path.startswith(include))


def own_count(
    exclusive_tree: str, inclusive_tree: str, names: frozenset[str], include: str | None = None
) -> int:
    """hopwatch's own instructions in one profile, from ``callgrind_annotate
    --tree=calling`` output with ``--inclusive=no`` and ``--inclusive=yes``;
    ``include``: the directory of the headers the extension was built with."""
    include = include if include is not None else sysconfig.get_paths()["include"]
    total = 0
    for line in exclusive_tree.splitlines():
        match = _LINE.match(line)
        if match and match.group(2) == "*" and _ours(match.group(3), names, include):
            total += int(match.group(1).replace(",", ""))
    caller: str | None = None
    for line in inclusive_tree.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        name = _name(match.group(3))
        if match.group(2) == "*":
            caller = name if _ours(match.group(3), names, include) else None
            continue
        if caller is None or _ours(match.group(3), names, include) or _WRAPPED.search(name):
            continue
        if name == "_Py_Dealloc" and _FREES_OTHERS.match(caller):
            continue
        total += int(match.group(1).replace(",", ""))
    return total


def _annotate(profile: Path, inclusive: bool) -> str:
    annotate = shutil.which("callgrind_annotate")
    if annotate is None:
        raise FileNotFoundError("callgrind_annotate")
    return subprocess.run(
        [
            annotate,
            "--tree=calling",
            f"--inclusive={'yes' if inclusive else 'no'}",
            "--threshold=100",
            str(profile),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout


def per_hop(small: Path, large: Path, n_small: int, n_large: int) -> float | None:
    """hopwatch's own instructions per hop between two profiles of n_small and
    n_large hops; None when callgrind_annotate is missing or fails (not measured,
    never 0)."""
    names = hopwatch_functions()
    try:
        counts = [
            own_count(_annotate(p, inclusive=False), _annotate(p, inclusive=True), names)
            for p in (small, large)
        ]
    except (OSError, subprocess.SubprocessError):
        return None
    return (counts[1] - counts[0]) / (n_large - n_small)
