"""The package's shape: no import loops (lazy imports included), and nothing imports the tests."""

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
