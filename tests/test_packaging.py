"""The package builds without warnings that pip would show the user, and declares what it imports."""

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILD = """
import json, sys, warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    build_meta.build_editable(sys.argv[1])
print(json.dumps([f"{w.category.__name__}: {w.message}" for w in caught
                  if issubclass(w.category, UserWarning)]))
"""


def test_editable_build_emits_no_user_warning(tmp_path):
    # pip re-emits every UserWarning of the build backend as a BuildBackendWarning
    proc = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert any(p.suffix == ".whl" for p in tmp_path.iterdir())


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level names the package imports that are neither the standard library nor nlbkit itself
    (function-level imports too) -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "nlbkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"nlbkit"}:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """The distributions of pyproject's [project] dependencies (names only: no extras, no versions)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_normalised(re.match(r"[A-Za-z0-9._-]+", d).group(0)) for d in deps}


def test_every_third_party_import_of_the_package_is_a_declared_dependency():
    # Arriving through another package is not enough: that package may drop it in any release.
    providers = packages_distributions()
    imports = _third_party_imports()
    assert {"numpy", "yaml", "torch"} <= set(imports)  # the parser sees top-level and lazy imports
    declared = _declared()
    undeclared = {
        name: sorted(files)[0]
        for name, files in imports.items()
        if not {_normalised(d) for d in providers.get(name, [])} & declared
    }
    assert not undeclared, f"imported but not in pyproject's dependencies (import: first file): {undeclared}"


def test_every_declared_dependency_is_imported_by_the_package():
    providers = packages_distributions()
    imported = {_normalised(d) for name in _third_party_imports() for d in providers.get(name, [])}
    assert not _declared() - imported, f"declared but never imported: {sorted(_declared() - imported)}"
