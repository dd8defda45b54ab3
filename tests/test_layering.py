"""The package's shape: no import loops (lazy imports included), nothing imports from a layer above
it, and nothing imports the tests."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nlbkit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The nlbkit modules that `path` imports anywhere in its body (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    # A package's __init__ is what `from nlbkit.x import y` runs first; edges to it are not loops.
    return {m: _imports(p, modules) - {m} for m, p in files.items()}


# nlbkit's layers, lowest first: a module imports only from its own package or module and from
# lower layers. Units in one layer are peers and import none of each other. `nlbkit` is the package's
# own __init__ (the version). A new subpackage or top-level module gets its place here.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("nlbkit", "errors"),
    ("paths", "claims"),
    ("nlb",),
    ("models",),
    ("config", "ray_session"),
    ("runs",),
    ("fetch", "prepare"),
    ("synth",),
    ("scoring",),
    ("ensemble", "submit"),
    ("train",),
    ("sweep", "report"),
    ("commands",),
    ("cli",),
    ("__main__",),
)


def _unit(module: str) -> str:
    """nlbkit.train.loop -> 'train'; nlbkit.runs -> 'runs'; nlbkit -> 'nlbkit'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """'a -> b' for every import of a module from a higher layer or from a peer of its layer."""
    rank = {unit: i for i, layer in enumerate(layers) for unit in layer}
    unplaced = sorted({_unit(m) for m in graph} - set(rank))
    assert not unplaced, f"units without a layer in LAYERS: {unplaced}"
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if _unit(target) != _unit(module) and rank[_unit(target)] >= rank[_unit(module)]
    )


def test_nothing_imports_from_a_layer_above_it():
    offenders = upward_imports(_graph())
    assert not offenders, "imports from the same or a higher layer: " + "; ".join(offenders)


def test_the_layer_check_finds_an_import_up_the_tree():
    """Guards the checker: the import this test replaced (scoring reading train's latents) is found,
    as is one between peers."""
    graph = _graph()
    graph["nlbkit.scoring.fewshot"] = graph["nlbkit.scoring.fewshot"] | {"nlbkit.train.latents"}
    graph["nlbkit.fetch.archive"] = graph["nlbkit.fetch.archive"] | {"nlbkit.prepare.nwb"}
    assert upward_imports(graph) == [
        "nlbkit.fetch.archive -> nlbkit.prepare.nwb",
        "nlbkit.scoring.fewshot -> nlbkit.train.latents",
    ]


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import loops: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_package_never_reaches_into_tests():
    offenders = [
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*.py")
        if any(
            (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "tests")
            or (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "tests" for a in n.names))
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert not offenders, f"modules that reach into tests/: {offenders}"


def test_the_graph_sees_known_edges():
    """Guards the checker itself: an edge known to exist is found, so an empty result means something."""
    graph = _graph()
    assert "nlbkit.errors" in graph["nlbkit.nlb.datasets"]
    assert "nlbkit.nlb.h5io" in graph["nlbkit.nlb.tensor_file"]


def test_relative_links_in_the_docs_resolve():
    import re

    root = PACKAGE.parent
    broken = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(root)} -> {target}")
    assert not broken, f"broken links: {broken}"
