"""Commands that need no torch never import it: they answer at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from nlbkit.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as exit:
    code = exit.code
print(json.dumps({"torch": "torch" in sys.modules, "code": code}))
"""


def _run(*args: str, cwd=None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("train", "--help"),
        ("train", "mc_maze_typo"),
        ("train-all", "--help"),
        ("train-all", "mc_maze_small", "--data-dir", "no_data"),
        ("validate", "missing.h5"),
        ("report", "runs/typo"),
        ("evaluate", "runs/typo"),
        ("leaderboard", "runs/typo"),
        ("fetch", "--help"),
        ("prepare", "--help"),
        ("synth", "--help"),
        ("submit", "--help"),
        ("cv", "--help"),
        ("cv", "mc_maze_small", "missing.h5"),
    ],
    ids=lambda a: " ".join(a),
)
def test_command_answers_without_torch(args, tmp_path):
    result = _run(*args, cwd=tmp_path)
    assert result["torch"] is False, f"nlbkit {' '.join(args)} imported torch"
    if args[-1] != "--help":
        assert result["code"] not in (0, None)  # the error case was reached, not skipped


def test_the_probe_sees_torch_when_a_module_needs_it():
    """Guards the check itself: importing the training workflow is seen importing torch."""
    code = "import sys; import nlbkit.train.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True"


def test_evaluate_of_a_smoothing_run_needs_no_torch(tmp_path):
    from nlbkit.train.run import TrainRequest, train_run
    from tests.training_fixtures import tiny_config, write_train_only

    path = write_train_only(tmp_path / "train.h5")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            model="smoothing",
            from_tensors=path,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    result = _run("evaluate", str(out.run.path), "--json", cwd=tmp_path)
    assert result["code"] in (0, None)
    assert result["torch"] is False
