"""The package's layers: every import points down (or sideways inside a subpackage), and
no import cycle exists, at module level or inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import kwta_demo

PACKAGE = Path(kwta_demo.__file__).resolve().parent
# bottom to top; a module may import from its own layer and the layers below it
LAYERS = [
    {"settings", "provenance"},
    {"models"},
    {"data"},
    {"attacks"},
    {"evaluation"},
    {"training"},
    {"reporting"},
    {"pipeline"},
    {"app"},
    {"cli", "testing", "__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The kwta_demo modules ``path`` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("kwta_demo"):
                for alias in node.names:  # `from . import viz` names a module, not the package
                    submodule = PACKAGE.parent / (target + "." + alias.name).replace(".", "/")
                    found.add(f"{target}.{alias.name}" if submodule.with_suffix(".py").exists()
                              else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kwta_demo")}
    return found - {name}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its subpackage to LAYERS")


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_every_import_points_down():
    upward = []
    for module, targets in graph().items():
        if module == "kwta_demo":  # the package root re-exports the public API
            continue
        for target in targets:
            if target != "kwta_demo" and layer_of(target) > layer_of(module):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    edges = graph()
    # a package's __init__ is reached through its modules; count module-to-module edges only
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges or nxt == "kwta_demo":
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_a_function_level_import(tmp_path):
    module = PACKAGE / "models" / "kwta.py"
    assert "kwta_demo.models.kwta_triton" in imports_of(module)  # imported inside a function
