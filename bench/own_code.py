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


def own_by_function(
    exclusive_tree: str, inclusive_tree: str, names: frozenset[str], include: str | None = None
) -> dict[str, int]:
    """hopwatch's own instructions in one profile, by hopwatch function: each
    function's own code and what it calls (see the module docstring), from
    ``callgrind_annotate --tree=calling`` output with ``--inclusive=no`` and
    ``--inclusive=yes``; ``include``: the directory of the headers the extension
    was built with."""
    include = include if include is not None else sysconfig.get_paths()["include"]
    counts: dict[str, int] = {}
    for line in exclusive_tree.splitlines():
        match = _LINE.match(line)
        if match and match.group(2) == "*" and _ours(match.group(3), names, include):
            name = _name(match.group(3))
            counts[name] = counts.get(name, 0) + int(match.group(1).replace(",", ""))
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
        counts[caller] = counts.get(caller, 0) + int(match.group(1).replace(",", ""))
    return counts


def own_count(
    exclusive_tree: str, inclusive_tree: str, names: frozenset[str], include: str | None = None
) -> int:
    """hopwatch's own instructions in one profile (see :func:`own_by_function`)."""
    return sum(own_by_function(exclusive_tree, inclusive_tree, names, include).values())


#: The parts of hopwatch's own code in a request, as the issue names them: each
#: part's C functions, apart by whitespace. A helper's own code is counted where
#: it runs, so the attribute readers the hooks and attribution share are the
#: patch's. A function not listed is "other" (start-up, reprs, getters, error
#: paths): the table shows that row too, so a new function on a request's path
#: shows there until it is put in its part.
PARTS: dict[str, str] = {
    # the class-level hooks, the awaitable around asgiref's coroutine, the
    # clock, the scope's lookup and the context variable (set in a copy of the
    # task's context, which each step enters)
    "patch": """
        Patch_descr_get patch_passthrough BoundHandler_call BoundHandler_dealloc
        bound_handler s2a_call s2a_start a2s_call main_wrap_call main_wrap_code
        main_start run_context hand_back send_in awaitable_make awaitable_end
        awaitable_gone HopAwaitable_am_send
        HopAwaitable_await HopAwaitable_dealloc HopAwaitable_iternext HopAwaitable_send
        HopAwaitable_throw HopAwaitable_close HopAwaitable_clear HopAwaitable_finalize
        HopAwaitable_traverse HopAwaitable_getattro forwarded_attr sent stop_iteration
        scope_and_hop scope_value expected_loop runs_expected_loop now_ns save_exc
        restore_exc drop_exc take_exc run_thread_hook thread_local_attr instance_attr
        instance_value inline_attr lookup_attr plain_attr existing_dict type_lacks
        valid_tag probe_keys enter_own leave_own
        """,
    # naming the hop's cause: the caches, and the resolver on a miss
    "attribution": """
        attribute ask_python cache_find cache_put cache_clear key_hash summarize_target
        code_kind user_frame py_attribute
        """,
    # the Hop itself: made, finished, kept in its request's ledger, freed
    "record": """
        hop_make Hop_new Hop_dealloc finish_hop finish_hop_impl finish_hop_account
        ledger_add ledger_keep
        """,
    # each hop into its request's per-cause sums, as it finishes
    "fold": """
        ledger_account account_stats cause_key stats_make CauseStats_new
        CauseStats_dealloc pinned_flush clamp0 cause_index cause_hash cause_find
        cause_room cause_add
        """,
    # the request's record and ledger: opened, named, closed (C glue only: the
    # middleware and the emitter's Python are not in it)
    "request scope": """
        py_begin_request py_start_request py_name_request py_enter_scope py_find_scope
        py_scope_value py_then py_set_active Then_am_send Then_await Then_dealloc
        Then_clear Then_close Then_finalize Then_getattro Then_iternext Then_send
        Then_throw Then_traverse then_end LedgerCore_new LedgerCore_close
        LedgerCore_clear LedgerCore_dealloc LedgerCore_traverse
        LedgerCore_get_thread_ids LedgerCore_get_threads_seen LedgerCore_get_pinned_by
        LedgerCore_get_detail_limit LedgerCore_set_detail_limit request_id_ok rf_get
        rf_set rf_ready need_record mapping_get attr_true true_taken
        """,
    # the line: its sites ranked, its JSON encoded
    "line build": """
        LedgerCore_encode_line LedgerCore_encode_usual LedgerCore_line_sites
        LedgerCore_ranked_causes ledger_ranked rank_cmp rank_cmp_totals ranked_free
        entry_site entry_is_view last_shown is_view cached_is_view put_new ms_of
        cause_json civil_text fill_time digits_back jb_bytes jb_free jb_grow
        jb_int_or_null jb_ll jb_ms jb_put jb_sites jb_str jb_str_or_null jb_text
        jb_timestamp
        """,
    # the line handed to logging's handler (or a file) and written
    "line write": """
        py_deliver_line deliver_plain write_line plain_handler handle_error handler_took
        call_with_record call_then_attr py_fill_log_record fill_record_fields
        logging_flag logging_method logging_own logging_type get_logging_classes
        module_attr copy_attr
        """,
}

_PART_OF = {name: part for part, names in PARTS.items() for name in names.split()}


def by_part(counts: dict[str, int]) -> dict[str, int]:
    """Per-function own counts summed into :data:`PARTS` (and "other")."""
    parts = dict.fromkeys([*PARTS, "other"], 0)
    for name, count in counts.items():
        parts[_PART_OF.get(name, "other")] += count
    return parts


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


def parts_of(profile: Path) -> dict[str, int] | None:
    """hopwatch's own instructions in one profile, by part (:func:`by_part`);
    None when callgrind_annotate is missing or fails (not measured, never 0)."""
    try:
        counts = own_by_function(
            _annotate(profile, inclusive=False),
            _annotate(profile, inclusive=True),
            hopwatch_functions(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return by_part(counts)
