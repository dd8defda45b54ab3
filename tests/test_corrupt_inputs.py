"""Damaged files given to the commands that read them: each answer is one line on stderr naming the
file and the problem, with a non-zero exit, never a traceback.

One tiny trained run (a second of training) is copied for each test, then damaged.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nlbkit.cli import main
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared

TINY = ["--set", "model.hidden=8", "--set", "model.ff_dim=16", "--set", "train.batch_size=8",
        "--set", "model.prediction_samples=2", "--set", "train.val_every=1",
        "--set", "train.kl_ramp_epochs=1",
        "--set", "train.compare_smoothing=false", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(tensor file, a finished val-phase LangevinFlow run dir) to copy from."""
    root = tmp_path_factory.mktemp("trained")
    tensors = write_prepared(root / "data" / "mc_maze_small" / "tensors_5ms.h5")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=2"),
            from_tensors=tensors,
            run_root=root / "runs",
            progress=False,
        ),
    )
    return tensors, out.run.path


@pytest.fixture
def run(trained, tmp_path):
    tensors, source = trained
    copy = tmp_path / "runs" / source.name
    shutil.copytree(source, copy)
    return tensors, copy


def one_line_error(args, *names: str) -> str:
    """Run `nlbkit ARGS`; it must fail with one `error: ...` line that names each of `names`."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert isinstance(result.exception, SystemExit), result.exception  # no uncaught exception
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --- checkpoints -------------------------------------------------------------------------------------

def test_truncated_best_checkpoint_given_to_predict(run, tmp_path):
    tensors, run_dir = run
    truncate(run_dir / "checkpoints" / "best.pt")
    line = one_line_error(["predict", run_dir, "--input", tensors, "--output", tmp_path / "p.h5"], "best.pt")
    assert "checkpoint" in line
    assert not (tmp_path / "p.h5").exists()


def test_truncated_last_checkpoint_given_to_resume(run):
    tensors, run_dir = run
    truncate(run_dir / "checkpoints" / "last.pt")
    one_line_error(["train", "mc_maze_small", "--from-tensors", tensors, "--run-dir", run_dir.parent,
                    "--resume", "--epochs", "3", *TINY], "last.pt")


def test_empty_checkpoint_given_to_report(run, tmp_path):
    _, run_dir = run
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"")
    one_line_error(["report", run_dir, "-o", tmp_path / "rep"], "best.pt")


# --- run.json and config.json ------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "submit", "predict", "report"])
def test_run_json_not_json(run, tmp_path, command):
    tensors, run_dir = run
    (run_dir / "run.json").write_text('{"dataset": "mc_maze_small", ')
    one_line_error(_reading_command(command, run_dir, tensors, tmp_path), "run.json", "JSON")


@pytest.mark.parametrize("command", ["evaluate", "submit", "predict", "report"])
def test_run_json_missing_a_key(run, tmp_path, command):
    tensors, run_dir = run
    info = json.loads((run_dir / "run.json").read_text())
    key = "n_heldin" if command == "predict" else "bin_ms"
    del info[key]
    (run_dir / "run.json").write_text(json.dumps(info))
    one_line_error(_reading_command(command, run_dir, tensors, tmp_path), "run.json", key)


@pytest.mark.parametrize("content", ["{not json", '{"train": {"no_such_setting": 1}}',
                                     '{"train": {"lr": "fast"}}'])
def test_config_json_damaged(run, tmp_path, content):
    tensors, run_dir = run
    (run_dir / "config.json").write_text(content)
    one_line_error(["predict", run_dir, "--input", tensors, "--output", tmp_path / "p.h5"], "config.json")


def _reading_command(command: str, run_dir, tensors, tmp_path) -> list:
    return {
        "evaluate": ["evaluate", run_dir],
        "submit": ["submit", run_dir, "--phase", "val", "-o", tmp_path / "s.h5"],
        "predict": ["predict", run_dir, "--input", tensors, "--output", tmp_path / "p.h5"],
        "report": ["report", run_dir, "-o", tmp_path / "rep"],
    }[command]


# --- rates.h5 -----------------------------------------------------------------------------------------

def _damage_rates(run_dir, how: str) -> None:
    path = run_dir / "rates.h5"
    if how == "truncated":
        truncate(path)
        return
    with h5py.File(path, "r+") as h5:
        group = h5[next(iter(h5))]
        values = group["eval_rates_heldout"][()]
        del group["eval_rates_heldout"]
        if how == "wrong shape":
            values = values[:, :, :-1]
        elif how == "nan":
            values[0, 0, 0] = np.nan
        elif how == "negative":
            values[0, 0, 0] = -1.0
        group["eval_rates_heldout"] = values


@pytest.mark.parametrize("how", ["truncated", "wrong shape", "nan", "negative"])
@pytest.mark.parametrize("command", ["evaluate", "submit"])
def test_damaged_rates(run, tmp_path, how, command):
    tensors, run_dir = run
    _damage_rates(run_dir, how)
    one_line_error(_reading_command(command, run_dir, tensors, tmp_path), "rates.h5")
    assert not (tmp_path / "s.h5").exists()


# --- a --config file ----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    ("train: {lr: [1, 2\n", "YAML"),
    ("- train.lr\n- 0.1\n", "mapping"),
    ("train:\n  no_such_setting: 3\n", "no_such_setting"),
    ("train:\n  lr: fast\n", "train.lr"),
    ("train:\n  epochs: -5\n", "epochs"),
])
def test_config_file_damaged(tmp_path, content, problem):
    path = tmp_path / "settings.yaml"
    path.write_text(content)
    one_line_error(["train", "mc_maze_small", "--config", path, "--show-config"], "settings.yaml", problem)
