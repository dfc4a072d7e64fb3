"""The report reads logs only: it imports neither Django nor the rest of hopwatch (but the
advice on each cause, written once in hopwatch._advice, which the HTML page shows).

Its third-party imports: rich (the terminal table), msgspec (the typed decoder) and,
when installed (the fast-gzip extra), isal (gzip).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import hopwatch.report

PACKAGE = Path(hopwatch.report.__file__).parent
ALLOWED_THIRD_PARTY = {"rich", "msgspec", "isal"}
#: Modules of hopwatch outside the report that it may import: standard library only.
SHARED = {"hopwatch.schema", "hopwatch._advice", "hopwatch._cli"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_report_package_imports_only_itself_its_dependencies_and_the_stdlib() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "hopwatch":
                ours = name == "hopwatch.report" or name.startswith("hopwatch.report.")
                assert ours or name in SHARED, (path, name)
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


def test_the_shared_modules_import_only_the_stdlib() -> None:
    """And hopwatch._cli's has_rich() tries rich (an extra), inside the function only."""
    root = PACKAGE.parent
    for name in SHARED:
        path = root / f"{name.split('.', 1)[1]}.py"
        for imported in _imports(path):
            top = imported.split(".")[0]
            probe = name == "hopwatch._cli" and imported == "rich"
            assert top in sys.stdlib_module_names or imported in SHARED or probe, (name, imported)
    cli = ast.parse((root / "_cli.py").read_text(encoding="utf-8"))
    module_level = {
        alias.name for node in cli.body if isinstance(node, ast.Import) for alias in node.names
    }
    assert "rich" not in module_level


def test_running_the_report_loads_no_core_module_and_no_django() -> None:
    probe = (
        "import sys, hopwatch.report.command, hopwatch.report.render\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'asgiref')"
        " or (m.startswith('hopwatch.') and not m.startswith('hopwatch.report'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(ast.literal_eval(done.stdout.strip()))
    assert loaded <= SHARED, loaded - SHARED  # the stdlib-only shared modules, nothing else
