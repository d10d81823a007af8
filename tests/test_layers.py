"""The rooms of ``src/ssd3d`` import downwards only, and no modules import each other in a loop.

Every import counts, also the ones inside functions: a lazy import hides a cycle from the
interpreter, not from a reader. The layer order is docs/architecture.md's.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "ssd3d"

# Lowest first; a room may import its own layer and the layers below.
LAYERS: list[set[str]] = [
    {"errors", "config", "process", "atomic"},
    {"estimators", "scene", "export", "toyworld"},
    {"priors"},
    {"models", "guidance"},
    {"pipeline"},
    {"report"},
    {"generation", "sim"},
    {"bench", "batch"},
    {"webapp"},
    {"commands"},
    {"cli"},
]
LAYER_OF = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The ssd3d modules ``path`` imports (``from ssd3d.a import b`` counts ssd3d.a.b when b is
    a module, else ssd3d.a)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ssd3d")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("ssd3d"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    found.discard(this)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_every_room_has_a_layer():
    rooms = {room(m) for m in MODULES if m != "ssd3d"}
    assert rooms <= set(LAYER_OF), f"rooms without a layer: {sorted(rooms - set(LAYER_OF))}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{m} -> {target}"
        for m, targets in graph.items()
        if m != "ssd3d"
        for target in targets
        if target != "ssd3d" and LAYER_OF[room(target)] > LAYER_OF[room(m)]
    ]


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_goes_up_a_layer():
    upward = upward_imports(GRAPH)
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycles():
    # A package's __init__ only re-exports its modules: edges out of __init__ files are left
    # out, or every module that imports its own package's face would close a loop.
    graph = {m: t for m, t in GRAPH.items() if MODULES[m].name != "__init__.py"}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    # What the two tests above would report, on a made-up graph: a lazy import inside a
    # function counts, and a loop through three modules is found.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ssd3d.bench.metrics import psnr\n")
    tree_imports = {
        n.module for n in ast.walk(ast.parse(probe.read_text())) if isinstance(n, ast.ImportFrom)
    }
    graph = {"ssd3d.toyworld.truth": tree_imports}
    assert upward_imports(graph) == ["ssd3d.toyworld.truth -> ssd3d.bench.metrics"]
    loop = {"ssd3d.a.x": {"ssd3d.a.y"}, "ssd3d.a.y": {"ssd3d.a.z"}, "ssd3d.a.z": {"ssd3d.a.x"}}
    assert find_cycles(loop) == ["ssd3d.a.x -> ssd3d.a.y -> ssd3d.a.z -> ssd3d.a.x"]
    assert find_cycles({"ssd3d.a.x": {"ssd3d.a.y"}, "ssd3d.a.y": set()}) == []
