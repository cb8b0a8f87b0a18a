"""The package's imports (at module level and inside functions alike) form a graph without cycles and never import
an enclosing package."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "hf_specialist"


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _import_edges(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                if target in modules and target != name:
                    edges[name].add(target)
    return edges


def test_no_cycles_and_no_imports_of_an_enclosing_package():
    modules = _modules()
    edges = _import_edges(modules)
    upward = sorted((a, b) for a, targets in edges.items() for b in targets if a.startswith(b + "."))
    assert not upward, f"modules importing an enclosing package: {upward}"
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            assert state.get(target) != 1, f"import cycle: {' -> '.join(path + [target])}"
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    assert len(modules) > 30 and sum(map(len, edges.values())) > 30  # the graph was actually read


# DESIGN.md §3: data flows one way, model -> hooks -> steps -> data -> structure -> adapter -> hub -> cli; the
# leaves (`_*`) import nothing of ours but other leaves; the generators, scores, plots and demos come after the hub.
ORDER = ["_leaves", "hooks", "steps", "data", "structure", "adapter", "hub", "metrics", "entities", "synthetic",
         "plots", "models", "pipeline", "knowledge", "demo", "cli"]


def _rank(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:  # the package's __init__: the public face, re-exports everything lazily
        return None
    top = parts[1]
    return ORDER.index("_leaves") if top.startswith("_") else ORDER.index(top)


def test_imports_follow_the_one_way_order():
    modules = _modules()
    assert all(_rank(name) is not None for name in modules if "." in name and name.count(".") >= 1), \
        "a module outside DESIGN.md §3's order: add it to ORDER"
    backwards = []
    for name, targets in _import_edges(modules).items():
        for target in targets:
            a, b = _rank(name), _rank(target)
            if a is not None and b is not None and b > a:
                backwards.append(f"{name} -> {target}")
    assert not backwards, f"imports against DESIGN.md §3's order: {sorted(backwards)}"
