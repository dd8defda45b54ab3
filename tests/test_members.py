"""`nlbkit train --ensemble N` / `--bag K`: members, their validation folds, one averaged run dir."""

import json

import numpy as np
import pytest

from nlbkit.errors import NlbkitError
from nlbkit.nlb.tensor_file import TrialSet, fold_split
from nlbkit.runs import RunDir
from nlbkit.scoring.evaluate import score_run
from nlbkit.train.loop import split_validation
from nlbkit.train.members import MemberPlan, train_members
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared, write_train_only


@pytest.fixture
def tensors(tmp_path):
    return write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")


def test_fold_split_covers_every_trial_once():
    held = [fold_split(23, 4, k)[1] for k in range(4)]
    assert sorted(np.concatenate(held).tolist()) == list(range(23))
    assert sorted(len(h) for h in held) == [5, 6, 6, 6]
    kept, out = fold_split(23, 4, 2)
    assert not set(kept) & set(out) and len(kept) + len(out) == 23
    with pytest.raises(NlbkitError, match="fold 4 of 4"):
        fold_split(23, 4, 4)


def test_bagging_members_validate_on_disjoint_folds_of_the_training_trials():
    trials = TrialSet(heldin=np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, 2, 1), np.float32))
    plan = MemberPlan(4, bagging=True)
    cfg = tiny_config()
    seen = []
    for k in range(4):
        tc = plan.member_config(cfg, k).train
        assert (tc.seed, tc.val_folds, tc.val_fold) == (cfg.train.seed + k, 4, k)
        fit, val = split_validation(trials, tc.val_fraction, tc.seed, tc.val_folds, tc.val_fold)
        assert len(fit) + len(val) == 20
        seen += val.heldin[:, 0, 0].astype(int).tolist()
    assert sorted(seen) == list(range(20))


def test_seed_members_differ_in_seed_only():
    cfg = tiny_config("train.compare_smoothing=true")
    plan = MemberPlan(3)
    members = [plan.member_config(cfg, k) for k in range(3)]
    assert [m.train.seed for m in members] == [0, 1, 2]
    assert [m.train.val_folds for m in members] == [0, 0, 0]
    assert [m.train.compare_smoothing for m in members] == [True, False, False]  # one baseline fit
    assert plan.member_tag(1, None) == "s1" and MemberPlan(2, bagging=True).member_tag(1, "x") == "x_f1"
    with pytest.raises(NlbkitError, match="at least 2"):
        MemberPlan(1)


def test_ensemble_run_holds_the_members_mean_and_scores_like_any_run(tensors, tmp_path):
    lines = []
    result = train_members(
        "mc_maze_small", tiny_config(), MemberPlan(2), data_dir=tensors.parent.parent,
        run_root=tmp_path / "runs", progress=False, say=lines.append,
    )
    out = result.ensemble.run_dir
    assert out == tmp_path / "runs" / "mc_maze_small_5ms_val_langevin"
    members = [m.run for m in result.members]
    assert [m.path.name for m in members] == [f"{out.name}_s0", f"{out.name}_s1"]
    mean = {key: np.mean([m.rates()[key].astype(np.float64) for m in members], axis=0)
            for key in members[0].rates()}
    for key, value in RunDir(out).rates().items():
        np.testing.assert_allclose(value, mean[key], rtol=1e-6)
    assert score_run(out).scores == pytest.approx(json.loads((out / "scores.json").read_text()))
    assert RunDir(out).info().members == tuple(str(m.path) for m in members)
    # One progress line as each member starts and one as it ends.
    for head in ("member 1/2", "member 2/2"):
        assert sum(head in line for line in lines) == 2


def test_members_of_a_train_only_file_hold_out_the_same_trials(tmp_path):
    source = write_train_only(tmp_path / "train.h5", trials=20)
    result = train_members(
        "mc_maze_small", tiny_config(), MemberPlan(2, bagging=True), from_tensors=source,
        run_root=tmp_path / "runs", progress=False, say=lambda line: None,
    )
    held = [m.run.info().eval_index for m in result.members]
    assert held[0] == held[1] and held[0]
    assert result.ensemble.run_dir.name == "mc_maze_small_5ms_val_langevin_holdout"
    assert RunDir(result.ensemble.run_dir).info().eval_index == held[0]


def test_a_finished_ensemble_is_not_resumed_and_resume_keeps_finished_members(tensors, tmp_path):
    args = dict(data_dir=tensors.parent.parent, run_root=tmp_path / "runs", progress=False)
    first = train_members("mc_maze_small", tiny_config(), MemberPlan(2), say=lambda line: None, **args)
    with pytest.raises(NlbkitError, match="holds a finished run; pass --overwrite .* or --tag NAME"):
        train_members("mc_maze_small", tiny_config(), MemberPlan(2), say=lambda line: None, **args)
    with pytest.raises(NlbkitError, match="members have all finished; nothing to resume: pass --overwrite"):
        train_members("mc_maze_small", tiny_config(), MemberPlan(2), resume=True, say=print, **args)
    # The second member stopped after its checkpoint: resume trains it on and keeps the first.
    second = first.members[1].run
    second.rates_h5.unlink()
    second.scores_json.unlink()
    stamp = first.members[0].run.rates_h5.stat().st_mtime_ns
    lines = []
    train_members("mc_maze_small", tiny_config(), MemberPlan(2), resume=True, say=lines.append, **args)
    assert sum("finished before, kept" in line for line in lines) == 1
    assert first.members[0].run.rates_h5.stat().st_mtime_ns == stamp and second.finished()


def test_resume_of_one_model_over_an_ensemble_trains_nothing(tensors, tmp_path):
    args = dict(data_dir=tensors.parent.parent, run_root=tmp_path / "runs", progress=False)
    ensemble = train_members("mc_maze_small", tiny_config(), MemberPlan(2), say=lambda line: None, **args)
    run = RunDir(ensemble.ensemble.run_dir)
    before = {p.name: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()}
    with pytest.raises(NlbkitError, match="an ensemble of other runs; nothing to resume: pass --overwrite"):
        train_run(TrainRequest("mc_maze_small", tiny_config(), resume=True, **args))
    assert {p.name: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()} == before
    assert run.info().model == "ensemble" and not run.last_ckpt.exists()


def test_cli_ensemble_flag(tensors, tmp_path, nlbkit_cli):
    runs = tmp_path / "runs"
    common = ("train", "mc_maze_small", "--data-dir", tensors.parent.parent, "--run-dir", runs,
              "--set", "model.hidden=8", "--set", "model.ff_dim=16", "--set", "train.batch_size=8",
              "--set", "model.prediction_samples=2", "--epochs", "2", "--device", "cpu", "--quiet")
    proc = nlbkit_cli(*common, "--ensemble", "2")
    assert "member 1/2" in proc.stdout and "member 2/2" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "x2" in line)
    assert header.split() == ["x2", "s0", "s1", "smoothing"]
    run_dir = runs / "mc_maze_small_5ms_val_langevin"
    out = nlbkit_cli("evaluate", run_dir, "--json")
    assert json.loads(out.stdout)["runs"][0]["model"] == "ensemble"
    both = nlbkit_cli(*common, "--ensemble", "2", "--bag", "2", check=False)
    assert both.returncode == 1 and "give one" in both.stderr
