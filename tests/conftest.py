"""Shared fixtures: the reference environment where nlb_tools runs, and small generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _reference_python() -> Path:
    explicit = os.environ.get("NLBKIT_REF_PYTHON")
    return Path(explicit) if explicit else ROOT / ".venv-ref" / "bin" / "python"


@pytest.fixture(scope="session")
def ref_python() -> Path:
    """The interpreter of the reference environment (nlb_tools 0.0.4, pandas 2.2, numpy 2.2).

    `make test` builds it. A missing one is an error, not a skip: parity is the point of the suite.
    """
    path = _reference_python()
    if not path.exists():
        pytest.fail(f"reference environment missing at {path}: run `make refenv` (or `make test`)")
    return path


@pytest.fixture(scope="session")
def run_reference(ref_python):
    """Run a script of tests/reference/ under nlb_tools; returns its JSON stdout (last line) if any."""

    def _run(script: str, *args: str | os.PathLike, timeout: int = 900):
        cmd = [str(ref_python), str(REFERENCE_DIR / script), *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"reference script {script} failed:\n{proc.stderr[-4000:]}")
        lines = proc.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines and lines[-1].startswith(("{", "[")) else None

    return _run


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The three real NLB files the repository carries (tests/fixtures/, provenance in its README)."""
    if not (FIXTURES / "mc_maze_small").is_dir():
        pytest.fail(f"real NLB fixtures missing at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def nlbkit_cli():
    """Run `nlbkit ...` as a user would, in a subprocess; returns the CompletedProcess."""

    def _run(*args: str | os.PathLike, check: bool = True, env: dict | None = None, timeout: int = 900):
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "nlbkit", *map(str, args)],
            capture_output=True, text=True, env=full_env, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"nlbkit {' '.join(map(str, args))} failed:\n{proc.stderr[-4000:]}")
        return proc

    return _run
