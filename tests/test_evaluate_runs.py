"""`nlbkit evaluate` on runs whose eval trials are not a `val` group: held-out train trials, test phase."""

import json
import os

import pytest

from nlbkit.errors import NlbkitError
from nlbkit.scoring.evaluate import score_run
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared, write_train_only


def test_holdout_run_scores_as_training_scored_it(tmp_path):
    path = write_train_only(tmp_path / "train.h5")
    cfg = tiny_config("train.eval_fraction=0.2")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            model="smoothing",
            from_tensors=path,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    scored = score_run(out.run.path)
    assert set(scored.scores) == set(out.scores)
    for name, value in out.scores.items():
        assert scored.scores[name] == pytest.approx(value, abs=1e-12)


def test_holdout_run_without_its_tensor_file_names_the_file(tmp_path):
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
    path.unlink()
    with pytest.raises(NlbkitError, match="train.h5: file not found"):
        score_run(out.run.path)


def test_test_phase_run_needs_targets_and_says_where_they_come_from(tmp_path):
    tensors = write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            model="smoothing",
            phase="test",
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    with pytest.raises(NlbkitError, match="nlbkit fetch --targets"):
        score_run(out.run.path, data_dir=tmp_path / "data")


def test_evaluate_cli_scores_a_holdout_run_as_json(tmp_path, nlbkit_cli):
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
    result = nlbkit_cli("evaluate", str(out.run.path), "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)["runs"][0]["scores"]
    assert scores["co-bps"] == pytest.approx(out.scores["co-bps"], abs=1e-12)


def test_a_run_older_than_its_tensor_file_is_not_scored(tmp_path, nlbkit_cli):
    tensors = write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            model="smoothing",
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    assert score_run(out.run.path).scores == pytest.approx(out.scores)
    write_prepared(tensors, seed=1)  # new trials under the same name (a new synth, then prepare)
    later = out.run.rates_h5.stat().st_mtime + 2  # past the file system's timestamp granularity
    os.utime(tensors, (later, later))
    with pytest.raises(NlbkitError, match=r"rates are older than .*tensors_5ms.h5, written again since"):
        score_run(out.run.path)
    cli = nlbkit_cli("evaluate", out.run.path, check=False)
    assert cli.returncode == 1 and "co-bps" not in cli.stdout
    assert cli.stderr.count("\n") == 1 and "train it again (--overwrite)" in cli.stderr
