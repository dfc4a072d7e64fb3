"""``call_site`` paths when ``sys.path`` holds nested roots (a project's root and its
``src`` directory, both): a file is named relative to the longest root it is under,
whatever their order on ``sys.path``."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import textwrap

import pytest

from hopwatch.testing import count_hops

SOURCE = textwrap.dedent(
    """\
    from asgiref.sync import sync_to_async


    def noop():
        return None


    async def crosses():
        await sync_to_async(noop)()
    """
)


@pytest.mark.parametrize("order", ["src-first", "root-first"])
def test_the_longest_sys_path_root_names_the_file(order, tmp_path, monkeypatch):
    package = f"nested_roots_{order.replace('-', '_')}"
    root = tmp_path / "project"
    src = root / "src"
    (src / package).mkdir(parents=True)
    (src / package / "__init__.py").write_text("")
    (src / package / "views.py").write_text(SOURCE)
    roots = [str(src), str(root)] if order == "src-first" else [str(root), str(src)]
    monkeypatch.setattr(sys, "path", [*roots, *sys.path])
    module = importlib.import_module(f"{package}.views")
    try:
        with count_hops() as counted:
            asyncio.run(module.crosses())
        (hop,) = counted.hops()
        assert hop.cause.site == f"{package}.views.noop"
        assert hop.cause.call_site == f"{package}/views.py:9 in crosses"
    finally:
        for name in (f"{package}.views", package):
            sys.modules.pop(name, None)


def test_a_case_insensitive_file_system_names_the_file_from_its_root(tmp_path, monkeypatch):
    """On Windows ``os.path.normcase`` lower-cases: the roots were compared normcased
    with the frame's file name as Python holds it (``C:\\Projects\\Shop\\shop\\views.py``),
    so no file was ever named relative to its root. Simulated here with a normcase that
    lower-cases paths under this test's directory (and leaves every other one alone)."""
    original = os.path.normcase
    here = str(tmp_path).lower()

    def normcase(path):
        path = original(path)
        return path.lower() if path.lower().startswith(here) else path

    package = "case_roots_views"
    root = tmp_path / "Projects" / "Shop"
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "Views.py").write_text(SOURCE)
    monkeypatch.setattr(os.path, "normcase", normcase)
    monkeypatch.setattr(sys, "path", [str(root), *sys.path])
    module = importlib.import_module(f"{package}.Views")
    try:
        with count_hops() as counted:
            asyncio.run(module.crosses())
        (hop,) = counted.hops()
        assert hop.cause.call_site == f"{package}/Views.py:9 in crosses"
    finally:
        for name in (f"{package}.Views", package):
            sys.modules.pop(name, None)
