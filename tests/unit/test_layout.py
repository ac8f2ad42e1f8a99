"""The package's layout: no import circle among tricolor's own modules (what several modules
share lives in a module below them)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from tricolor.settings import PROJECT_ROOT

SOURCE = PROJECT_ROOT / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, package: str, modules: set[str]) -> list[str]:
    """The tricolor modules one import statement names (`from a import b`: a.b if a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, base]).strip(".")
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
        for alias in node.names
    ]


def import_graph() -> dict[str, set[str]]:
    """Module -> the tricolor modules it imports, at the top or inside a function (a
    submodule's import of its own package's `__init__` is no edge: Python runs that first)."""
    paths = {module_name(path): path for path in SOURCE.joinpath("tricolor").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            for target in imported(node, package, set(paths)):
                if target in paths and target != name and not name.startswith(f"{target}."):
                    graph[name].add(target)
    return graph


def test_no_import_circle_among_the_package_modules() -> None:
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as circle:
        raise AssertionError(f"import circle: {' -> '.join(circle.args[1])}") from None
