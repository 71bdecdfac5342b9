"""The layering the code promises, checked on every module by reading its imports.

    edgecnn.pipeline -> edgecnn.export -> edgecnn.trainer -> edgecnn.runtime -> edgecnn

A module may import its own layer and the layers below it, never above. The runtime
never imports TensorFlow, Keras, matplotlib, onnx or tf2onnx, even inside a function,
and at module level only numpy and Typer besides the standard library. No two modules
import each other in a circle, counting imports inside functions too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folders and the package they install as, lowest layer first.
LAYERS = {
    "edgecnn": ROOT / "edgecnn",
    "edgecnn.runtime": ROOT / "runtime",
    "edgecnn.trainer": ROOT / "trainer",
    "edgecnn.export": ROOT / "export",
    "edgecnn.pipeline": ROOT / "pipeline",
}
#: The CLI root registers every stage's commands (lazily); it is no layer.
CLI_ROOT = {"edgecnn.cli", "edgecnn.__main__"}
HEAVY = {"tensorflow", "keras", "matplotlib", "onnx", "tf2onnx"}
RUNTIME_MODULE_LEVEL = {"numpy", "typer"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in LAYERS.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder).with_suffix("")
            if any(part.startswith(".") for part in relative.parts):
                continue
            if package == "edgecnn" and relative.parts[0] in {"runtime", "trainer", "export",
                                                              "pipeline"}:  # fmt: skip
                continue  # the symlinks to the stage folders
            parts = [p for p in relative.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Names imported at module level, and everywhere (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    module_level: set[str] = set()
    everywhere: set[str] = set()

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        return []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # for type checkers only: never executed
            found = names(child)
            everywhere.update(found)
            if top:
                module_level.update(found)
            inner = top and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            visit(child, inner)

    visit(tree, True)
    return module_level, everywhere


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _ours(name: str) -> str | None:
    """The module of ours that an imported name is, or lives in (``a.b.C`` -> ``a.b``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _layer(module: str) -> int:
    rank = [i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")]
    return max(rank)


def _is_ancestor(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def test_every_stage_folder_is_read():
    assert {"edgecnn.runtime.classifier", "edgecnn.trainer.train", "edgecnn.export.exporter",
            "edgecnn.pipeline.stages", "edgecnn.errors"} <= set(MODULES)  # fmt: skip


@pytest.mark.parametrize("module", sorted(set(MODULES) - CLI_ROOT))
def test_imports_flow_down_only(module):
    _, everywhere = IMPORTS[module]
    upward = sorted(
        target
        for target in filter(None, map(_ours, everywhere))
        if target not in CLI_ROOT and _layer(target) > _layer(module)
    )
    assert not upward, f"{module} imports from a higher layer: {upward}"
    assert not [t for t in map(_ours, everywhere) if t in CLI_ROOT], module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) <= 1))
def test_the_runtime_and_the_base_stay_light(module):
    module_level, everywhere = IMPORTS[module]
    heavy = sorted(n for n in everywhere if n.split(".")[0] in HEAVY)
    assert not heavy, f"{module} imports {heavy}"
    third_party = {
        n.split(".")[0] for n in module_level if n.split(".")[0] not in STDLIB | {"edgecnn"}
    }
    assert third_party <= RUNTIME_MODULE_LEVEL, f"{module} imports {third_party} at load"


def _graph(which: int) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, imports in IMPORTS.items():
        targets = {_ours(n) for n in imports[which]} - {None, module}
        # Importing a submodule initialises its parent package first: not a design cycle.
        graph[module] = {t for t in targets if not _is_ancestor(t, module)}  # type: ignore[misc]
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, if there is any (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize("which", [0, 1], ids=["module level", "counting lazy imports"])
def test_no_import_cycles(which):
    cycle = _cycle(_graph(which))
    assert cycle is None, " -> ".join(cycle or [])
