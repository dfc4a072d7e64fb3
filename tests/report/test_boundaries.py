"""The report reads logs only: it imports neither Django nor the rest of hopwatch (but the
advice on each cause, written once in hopwatch._advice, which the HTML page shows).

Its third-party imports: rich (the terminal table), msgspec (the typed decoder) and,
when installed (the fast-gzip extra), isal (gzip).
"""

from __future__ import annotations

import ast
from pathlib import Path

import hopwatch.report

PACKAGE = Path(hopwatch.report.__file__).parent
ALLOWED_THIRD_PARTY = {"rich", "msgspec", "isal"}
#: The rest of hopwatch the report may read: the advice text (no Django in it).
ALLOWED_HOPWATCH = {"hopwatch._advice"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_report_package_imports_only_itself_its_dependencies_and_the_stdlib() -> None:
    import sys

    for path in sorted(PACKAGE.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if name in ALLOWED_HOPWATCH:
                continue
            if top == "hopwatch":
                assert name == "hopwatch.report" or name.startswith("hopwatch.report."), (
                    path,
                    name,
                )
            else:
                assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, (path, name)


def test_rich_is_imported_only_to_draw_a_terminal_table() -> None:
    users = [
        path.name
        for path in PACKAGE.glob("*.py")
        if "rich" in {n.split(".")[0] for n in _imports(path)}
    ]
    assert users == ["render.py"]


def test_isal_is_optional_and_imported_only_to_read_gzip() -> None:
    top_level = set()
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom)
                    else [alias.name for alias in node.names]
                )
                top_level.update(str(name).split(".")[0] for name in names)
    assert "isal" not in top_level
    users = [
        path.name
        for path in PACKAGE.glob("*.py")
        if "isal" in {n.split(".")[0] for n in _imports(path)}
    ]
    assert users == ["inputs.py"]
