"""Which Django and asgiref hopwatch runs on, and whether it was tested on them.

hopwatch does not cap Django or asgiref below versions it has not seen: on an
untested version it keeps working, and system check ``hopwatch.I001`` says
so (see :mod:`hopwatch.checks`). asgiref is identified by the installed
*distribution* that provides the imported ``asgiref`` module, not only by the
module's ``__version__``: a fork can install itself as ``asgiref`` and report
upstream's version.

Nothing here runs at request time.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Final

#: Django feature releases the test matrix covers (dev.py's ENVIRONMENTS): any
#: final patch release of these.
TESTED_DJANGO: Final = ((5, 2), (6, 0), (6, 1))
#: asgiref from Django 5.2's floor to the newest minor series tested (3.8.1,
#: 3.9.1 and 3.13.0 are the matrix's pins).
TESTED_ASGIREF_FROM: Final = (3, 8, 1)
TESTED_ASGIREF_BELOW: Final = (3, 14)
ASGIREF_DISTRIBUTION: Final = "asgiref"


@dataclass(frozen=True)
class Provider:
    """An installed distribution whose files include the imported module."""

    name: str
    version: str


def _release(version: str) -> tuple[int, ...] | None:
    """``(3, 13, 0)`` from ``"3.13.0"``; None for anything else (``3.14.0rc1``, ``dev``)."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def module_providers(module: ModuleType) -> list[Provider]:
    """The installed distributions whose RECORD lists the file ``module`` was imported from.

    Usually one. Empty when none does (a copy on ``sys.path``, a vendored or
    editable install); two when two distributions wrote the same files.
    """
    filename = getattr(module, "__file__", None)
    if not filename:
        return []
    target = os.path.realpath(filename)
    # RECORD paths are relative to the directory holding the .dist-info, which
    # holds the package too: look only there, and search RECORD's text rather
    # than parse every distribution's file list (Django's alone is thousands).
    depth = module.__name__.count(".") + (2 if target.endswith("__init__.py") else 1)
    root = target
    for _ in range(depth):
        root = os.path.dirname(root)
    entry = "\n" + os.path.relpath(target, root).replace(os.sep, "/") + ","
    found: list[Provider] = []
    for dist in importlib.metadata.distributions(path=[root]):
        if entry in "\n" + (dist.read_text("RECORD") or ""):
            found.append(Provider(str(dist.metadata["Name"]), dist.version))
    return found


def django_untested(version: tuple[object, ...]) -> str | None:
    """Why a ``django.VERSION`` is untested, or None when the matrix covers it."""
    feature = (version[0], version[1])
    if feature in TESTED_DJANGO and version[3] == "final":
        return None
    tested = ", ".join(f"{major}.{minor}" for major, minor in TESTED_DJANGO)
    return f"hopwatch was tested with Django {tested}"


def asgiref_untested(module_version: str, providers: list[Provider]) -> str | None:
    """Why the imported asgiref is untested, or None when the matrix covers it."""
    low = ".".join(map(str, TESTED_ASGIREF_FROM))
    high = ".".join(map(str, TESTED_ASGIREF_BELOW))
    tested = f"hopwatch was tested with the asgiref distribution {low} up to (not including) {high}"
    if not providers:
        return (
            f"no installed distribution provides the imported asgiref module"
            f" ({module_version}): it is a copy on sys.path, vendored or an editable"
            f" install; {tested}"
        )
    if len(providers) > 1:
        names = ", ".join(f"{p.name} {p.version}" for p in providers)
        return f"the asgiref module's files come from several distributions ({names}); {tested}"
    (provider,) = providers
    if provider.name.lower() != ASGIREF_DISTRIBUTION:
        return (
            f"the asgiref module comes from the distribution {provider.name!r}"
            f" {provider.version}, not asgiref (it reports asgiref {module_version}); {tested}"
        )
    release = _release(provider.version)
    if release is None or not TESTED_ASGIREF_FROM <= release < TESTED_ASGIREF_BELOW:
        return tested
    return None


def untested() -> list[tuple[str, str]]:
    """``(what is installed, why it is untested)`` for Django and asgiref, if untested."""
    import asgiref
    import django

    found = []
    reason = django_untested(tuple(django.VERSION))
    if reason:
        found.append((f"Django {django.get_version()}", reason))
    module_version = str(getattr(asgiref, "__version__", "unknown"))
    reason = asgiref_untested(module_version, module_providers(asgiref))
    if reason:
        found.append((f"asgiref {module_version}", reason))
    return found
