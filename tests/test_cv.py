"""`nlbkit cv`: folds, the CSV and its summary, and the 20 ms rebinning it relies on."""

import csv

import numpy as np
import pytest

from nlbkit.errors import NlbkitError
from nlbkit.nlb.tensor_file import load_phase_data, read_train_trials, rebin_mean, rebin_sum
from nlbkit.runs import RunDir
from nlbkit.scoring.evaluate import score_run
from nlbkit.train.cv import METRICS, CvPlan, fold_indices, run_cv
from nlbkit.train.members import MemberPlan
from tests.training_fixtures import F, T, tiny_config, write_prepared, write_train_only


def test_rebin_sum_adds_consecutive_bins_and_propagates_nan():
    a = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
    a[1, 5, 2] = np.nan
    out = rebin_sum(a, 4)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 1], a[0, 4:8].sum(axis=0))
    assert np.isnan(out[1, 1, 2]) and not np.isnan(out[1, 1, :2]).any() and not np.isnan(out[:, 0]).any()
    np.testing.assert_allclose(rebin_mean(a, 4)[0], out[0] / 4)
    np.testing.assert_array_equal(rebin_sum(a, 1), a)  # factor 1: unchanged (NaN included)
    with pytest.raises(NlbkitError, match="multiple"):
        rebin_sum(a, 3)


def test_folds_are_seeded_disjoint_and_of_equal_size():
    folds = fold_indices(75, 5, seed=0)
    assert [len(f) for f in folds] == [15] * 5
    assert sorted(np.concatenate(folds).tolist()) == list(range(75))
    assert all(np.array_equal(a, b) for a, b in zip(folds, fold_indices(75, 5, seed=0), strict=True))
    assert not np.array_equal(folds[0], fold_indices(75, 5, seed=1)[0])
    with pytest.raises(NlbkitError):
        fold_indices(10, 5, fold_size=3)


def test_explicit_eval_trials_split_a_train_only_file(tmp_path):
    path = write_train_only(tmp_path / "train.h5", trials=12)
    data = load_phase_data(path, "val", eval_index=np.array([7, 2, 5]))
    assert data.eval_index.tolist() == [2, 5, 7] and len(data.fit) == 9
    np.testing.assert_array_equal(data.eval.heldin, read_train_trials(path).heldin[[2, 5, 7]])
    with pytest.raises(NlbkitError, match="distinct"):
        load_phase_data(path, "val", eval_index=np.array([1, 1]))
    with pytest.raises(NlbkitError, match="train trials"):
        load_phase_data(write_prepared(tmp_path / "p.h5"), "val", eval_index=np.array([0]))


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("bin_ms", [5, 20])
def test_cv_writes_one_row_per_run_and_their_summary(tmp_path, bin_ms):
    path = write_train_only(tmp_path / "train.h5", trials=20)
    lines = []
    result = run_cv(
        "mc_maze_small",
        tiny_config("train.epochs=2"),
        path,
        bin_ms,
        tmp_path / "cv",
        CvPlan(n_folds=2, seeds=(0,)),
        progress=lines.append,
    )
    rows = _read(result.csv_path)
    runs = [r for r in rows if r["fold"] not in ("mean", "sd")]
    assert [(r["model"], r["fold"], r["seed"]) for r in runs] == [
        ("langevin", "0", "0"),
        ("smoothing", "0", "0"),
        ("langevin", "1", "0"),
        ("smoothing", "1", "0"),
    ]
    assert len(lines) == 4
    # the folds' eval trials, as each run recorded them: disjoint, and together every trial
    seen = []
    for k in (0, 1):
        name = f"mc_maze_small_{bin_ms}ms_val_langevin_fold{k}_seed0"
        info = RunDir(tmp_path / "cv" / "runs" / name).info()
        seen.append(set(info.eval_index))
        assert info.n_bins == T // (bin_ms // 5) and info.n_forward == F // (bin_ms // 5)
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(20))
    for model in ("langevin", "smoothing"):
        mine = np.array([[float(r[m]) for m in METRICS] for r in runs if r["model"] == model])
        mean = next(r for r in rows if r["model"] == model and r["fold"] == "mean")
        sd = next(r for r in rows if r["model"] == model and r["fold"] == "sd")
        np.testing.assert_allclose([float(mean[m]) for m in METRICS], mine.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose([float(sd[m]) for m in METRICS], mine.std(axis=0, ddof=1), rtol=1e-12)
        assert np.isfinite(mine).all()


def test_cv_runs_a_subset_of_folds_and_repeats_smoothing_per_seed(tmp_path):
    path = write_train_only(tmp_path / "train.h5", trials=20)
    result = run_cv(
        "mc_maze_small",
        tiny_config("train.epochs=1"),
        path,
        5,
        tmp_path / "cv",
        CvPlan(n_folds=4, seeds=(0, 1), folds=(2,), models=("smoothing",)),
    )
    assert [(r["fold"], r["seed"]) for r in result.rows] == [(2, 0), (2, 1)]
    assert result.rows[0]["co-bps"] == result.rows[1]["co-bps"]
    with pytest.raises(NlbkitError, match="not in 0..3"):
        run_cv("mc_maze_small", tiny_config(), path, 5, tmp_path / "x", CvPlan(n_folds=4, folds=(4,)))


def test_cv_of_a_bagging_scores_the_members_and_their_mean_on_the_fold(tmp_path):
    path = write_train_only(tmp_path / "train.h5", trials=20)
    result = run_cv(
        "mc_maze_small",
        tiny_config("train.epochs=2"),
        path,
        5,
        tmp_path / "cv",
        CvPlan(n_folds=2, seeds=(0,), folds=(1,), models=("langevin",), members=MemberPlan(2, bagging=True)),
    )
    assert [(r["model"], r["fold"], r["seed"]) for r in result.rows] == [
        ("langevin", 1, 0), ("langevin", 1, 1), ("langevin bag2", 1, 0)
    ]
    runs = tmp_path / "cv" / "runs"
    ensemble = runs / "mc_maze_small_5ms_val_langevin_fold1_seed0_bag2"
    members = [RunDir(runs / f"{ensemble.name}_f{k}").info() for k in (0, 1)]
    fold = fold_indices(20, 2)[1].tolist()
    assert [list(m.eval_index) for m in members] == [fold, fold]
    assert list(RunDir(ensemble).info().eval_index) == fold
    # The mean row is the ensemble's own score of the fold, not the mean of the members' scores.
    assert result.rows[2]["co-bps"] == pytest.approx(score_run(ensemble).scores["co-bps"], abs=1e-12)
    assert {r["model"] for r in result.summary} == {"langevin", "langevin bag2"}


def _row(model, fold, seed, co):
    return {"model": model, "fold": fold, "seed": seed, "co-bps": co, "fp-bps": co / 2, "vel R2": 0.5}


def test_paired_differences_against_a_reference_model():
    from nlbkit.train.cv import format_paired, paired_differences

    lead = [0.10, 0.12, 0.08, 0.11, 0.09, 0.10]  # (fold, seed) = (0,0),(1,0),(2,0),(0,1),(1,1),(2,1)
    pairs = [(k, s) for s in (0, 1) for k in range(3)]
    rows = [_row("smoothing", k, s, 0.1 * k) for k, s in pairs]
    rows += [_row("langevin", k, s, 0.1 * k + d) for (k, s), d in zip(pairs, lead, strict=True)]
    rows += [_row("same", k, s, 0.1 * k) for k, s in pairs]
    paired = {r["model"]: r for r in paired_differences(rows, "smoothing")}
    co = paired["langevin"]["co-bps"]
    assert co["mean"] == pytest.approx(np.mean(lead)) and co["sd"] == pytest.approx(np.std(lead, ddof=1))
    assert co["above"] == 6 and paired["langevin"]["n"] == 6 and co["folds"] == 3
    fold_means = np.array([0.105, 0.105, 0.09])
    half = 4.302652729911275 * fold_means.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert co["ci"] == pytest.approx((fold_means.mean() - half, fold_means.mean() + half))
    same = paired["same"]["co-bps"]
    assert same["mean"] == 0 and same["sd"] == 0 and same["above"] == 0
    assert "langevin - smoothing  co-bps  +0.1000 ± 0.0141  above on 6 of 6" in format_paired(
        paired_differences(rows, "smoothing")
    )
