"""`train`, `evaluate` and `ensemble` score through one path and agree, behaviour or not."""

from __future__ import annotations

import h5py
import pytest

from nlbkit.ensemble import ensemble_runs
from nlbkit.scoring.evaluate import score_run
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_train_only


def _without_behaviour(path):
    with h5py.File(path, "a") as h5:
        del h5["train_behavior"]
    return path


def _assert_same(train_scores: dict, evaluated: dict) -> None:
    assert train_scores, "training produced no scores to compare"
    assert set(evaluated) == set(train_scores)
    for name, value in train_scores.items():
        assert evaluated[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("behaviour", [True, False], ids=["with behaviour", "without behaviour"])
def test_train_evaluate_and_ensemble_agree(tmp_path, behaviour):
    path = write_train_only(tmp_path / "train.h5")
    if not behaviour:
        _without_behaviour(path)
    runs = {}
    # Every run holds out the same trials (the split follows train.seed); the two LangevinFlow
    # members differ in width, so the ensemble is not a run averaged with itself.
    members = (("smoothing", "s", ()), ("langevin", "a", ()), ("langevin", "b", ("model.hidden=12",)))
    for model, tag, extra in members:
        out = train_run(
            TrainRequest(
                "mc_maze_small",
                tiny_config(*extra),
                model=model,
                from_tensors=path,
                run_root=tmp_path / "runs",
                tag=tag,
                progress=False,
            ),
        )
        runs[tag] = out
        _assert_same(out.scores, score_run(out.run.path).scores)
        assert ("vel R2" in out.scores) is behaviour
    result = ensemble_runs([runs["a"].run.path, runs["b"].run.path], tmp_path / "runs" / "ens")
    _assert_same(result.ensemble.scores, score_run(tmp_path / "runs" / "ens").scores)
