"""Which hop path a bench worker measures: one environment for every worker, one check.

hopwatch runs its C accelerator (``hopwatch._speedups``) unless
``HOPWATCH_PURE_PYTHON=1`` chooses the pure-Python reference, or the accelerator
is not built, when it falls back to the reference with a warning that a bench
never shows. So a worker's environment says which path is asked for, and
nothing else: :func:`worker_env` builds it from this process's, with
``HOPWATCH_PURE_PYTHON`` set for a pure arm and removed otherwise (a shell that
ran the test command's pure half still has it); and every worker that measures
hopwatch calls :func:`check`, which stops it with one line when the path in use
is not the one asked for (C, unless the pure arm asked for pure Python).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The variable that chooses hopwatch's pure-Python hop path.
PURE_VAR = "HOPWATCH_PURE_PYTHON"

#: How the report names each path.
NAMES = {"c": "C (hopwatch._speedups)", "python": "pure Python (hopwatch._hotpath_py)"}


def worker_env(
    pure: bool = False, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """A worker's environment: ``base`` (default: this process's) and ``extra``,
    with ``HOPWATCH_PURE_PYTHON=1`` when ``pure``, and without it otherwise."""
    env = {**(os.environ if base is None else base), **extra}
    env.pop(PURE_VAR, None)
    if pure:
        env[PURE_VAR] = "1"
    return env


def asked(env: Mapping[str, str] | None = None) -> str:
    """The hop path ``env`` (default: this process's) asks for: "python" or "c"."""
    value = (os.environ if env is None else env).get(PURE_VAR, "")
    return "c" if value in ("", "0") else "python"


#: How every line a stopped worker gives its reason with begins (:func:`stop_line`).
STOP = "bench: stopped: "


def problem() -> str | None:
    """In a worker: what is wrong with the hop path in use, or None when it is
    the one asked for."""
    from hopwatch import _hotpath

    want, got = asked(), _hotpath.IMPLEMENTATION
    if got == want:
        return None
    if want == "c":
        why = _hotpath.UNAVAILABLE or "not loaded"
        return (
            f"{STOP}hopwatch's C hop path did not load here ({why}), so this would measure"
            " the pure-Python one: build it (`pip install -e .` in the repository) and run"
            " again"
        )
    return f"{STOP}{PURE_VAR}=1 asked for the pure-Python hop path, but {got} is in use"


def check() -> str:
    """In a worker: the hop path in use ("c" or "python") when it is the one asked
    for; otherwise stop the process with one line saying what is wrong."""
    from hopwatch import _hotpath

    wrong = problem()
    if wrong:
        raise SystemExit(wrong)
    return str(_hotpath.IMPLEMENTATION)


def stop_line(output: str) -> str | None:
    """The line a worker stopped with (:data:`STOP`) in its ``output``, if any."""
    return next((line for line in output.splitlines() if line.startswith(STOP)), None)
