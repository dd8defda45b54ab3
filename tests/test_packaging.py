"""The package builds without warnings that pip would show the user."""

import json
import subprocess
import sys
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
