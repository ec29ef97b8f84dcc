"""The package's layers import downwards only: healer.text (the answer rule and the prompts) is
shared by every engine and by screening and imports nothing else of Healer; the engines
(healer.model) never import the screening layer that uses them; and the slides' modules import
round no circle (the store's interface picks none of its own subclasses)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """Each module of `package` (a path under the repository) → the healer modules it imports."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(ROOT))] = {name for name in names if name.split(".")[0] == "healer"}
    return found


@pytest.mark.parametrize(("package", "allowed"), [
    ("healer/text", ("healer.text",)),
    ("healer/model", ("healer.model", "healer.text", "healer.settings", "healer.errors", "healer.metrics", "healer.tools")),
])
def test_a_layer_imports_only_what_lies_below_it(package, allowed):
    reaching_up = {module: sorted(name for name in names if not name.startswith(allowed))
                   for module, names in imported_modules(package).items()}
    assert {module: names for module, names in reaching_up.items() if names} == {}


def circles(package: str) -> list[list[str]]:
    """Every import circle among the modules of `package` (function-level imports included), each
    as the modules round it, from its smallest name."""
    prefix = package.replace("/", ".") + "."
    modules = {path.removesuffix(".py").replace("/", "."): names for path, names in imported_modules(package).items()}

    def module_of(name: str) -> str | None:
        while name.startswith(prefix):
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    graph = {module: {module_of(name) for name in names} - {None, module} for module, names in modules.items()}
    found = set()

    def walk(path: list[str]) -> None:
        for after in graph[path[-1]]:
            if after == path[0]:
                first = path.index(min(path))
                found.add(tuple(path[first:] + path[:first]))
            elif after not in path and after > path[0]:
                walk(path + [after])

    for module in graph:
        walk([module])
    return sorted(map(list, found))


def test_the_store_interface_imports_none_of_its_subclasses():
    """healer.slides.stores picks the store from SLIDE_STORE: store.py ↔ gcs.py must not come back."""
    assert circles("healer/slides") == []
