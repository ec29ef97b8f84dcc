"""The package's layers import downwards only: healer.text (the answer rule and the prompts) is
shared by every engine and by screening and imports nothing else of Healer; the engines
(healer.model) never import the screening layer that uses them."""

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
