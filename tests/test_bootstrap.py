"""Bootstrap intervals over eval trials: per-trial sums reproduce the official metrics exactly, on all
trials and on any resample; identical runs differ by 0; a known lead is found; seeded."""

import numpy as np
import pytest

from nlbkit.nlb.h5io import load_val_target
from nlbkit.scoring.bootstrap import bootstrap_scores, paired_bootstrap, resample_scores, resample_weights
from nlbkit.scoring.metrics import evaluate_group
from tests.training_fixtures import N_IN, N_OUT, F, T, write_prepared

DATASET = "mc_maze_small"


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    path = write_prepared(tmp_path_factory.mktemp("boot") / "tensors_5ms.h5", n_train=30, n_val=40)
    return load_val_target(path)


def _rates(target, noise: float, seed: int) -> dict[str, np.ndarray]:
    """Rates near the smoothed truth: each trial's counts blurred, plus `noise` (a worse model)."""
    rng = np.random.default_rng(seed)
    n_eval, n_train = len(target["eval_spikes_heldout"]), len(target["train_behavior"])

    def near(shape, base):
        return np.abs(base + noise * rng.standard_normal(shape)) + 0.05

    heldout = target["eval_spikes_heldout"].mean(axis=1, keepdims=True)
    return {
        "eval_rates_heldout": near((n_eval, T, N_OUT), np.broadcast_to(heldout, (n_eval, T, N_OUT))),
        "eval_rates_heldin": near((n_eval, T, N_IN), 0.6),
        "eval_rates_heldin_forward": near((n_eval, F, N_IN), target["eval_spikes_heldin_forward"].mean()),
        "eval_rates_heldout_forward": near((n_eval, F, N_OUT), target["eval_spikes_heldout_forward"].mean()),
        "train_rates_heldin": near((n_train, T, N_IN), 0.6),
        "train_rates_heldout": near((n_train, T, N_OUT), 0.6),
    }


def _subset(arrays: dict, index: np.ndarray, eval_keys) -> dict:
    return {k: (v[index] if k in eval_keys else v) for k, v in arrays.items()}


def test_every_trial_once_gives_the_official_scores(target):
    rates = _rates(target, 0.1, 0)
    n = len(target["eval_spikes_heldout"])
    every = resample_scores(DATASET, target, rates, np.ones((1, n)))
    official = evaluate_group(DATASET, 5, target, rates)
    assert set(every) == {"co-bps", "fp-bps", "vel R2"}
    for metric, values in every.items():
        assert values[0] == pytest.approx(official[metric], abs=1e-9)


def test_a_resample_scores_as_its_trials_would(target):
    rates = _rates(target, 0.1, 1)
    n = len(target["eval_spikes_heldout"])
    weights = resample_weights(n, 3, seed=5)
    drawn = resample_scores(DATASET, target, rates, weights)
    eval_target = {k for k in target if k.startswith("eval_")}
    eval_rates = {k for k in rates if k.startswith("eval_")}
    for row in range(3):
        index = np.repeat(np.arange(n), weights[row].astype(int))
        resampled = _subset(target, index, eval_target), _subset(rates, index, eval_rates)
        official = evaluate_group(DATASET, 5, *resampled)
        for metric in drawn:
            assert drawn[metric][row] == pytest.approx(official[metric], abs=1e-9)


def test_identical_runs_differ_by_nothing(target):
    rates = _rates(target, 0.1, 2)
    paired = paired_bootstrap(DATASET, target, rates, rates, n_boot=200)
    for interval in paired.values():
        assert interval.value == interval.low == interval.high == 0.0
        assert interval.share_not_above == 1.0


def test_a_known_lead_is_found_and_intervals_are_seeded(target):
    good, worse = _rates(target, 0.02, 3), _rates(target, 0.6, 3)
    paired = paired_bootstrap(DATASET, target, good, worse, n_boot=500, seed=1)
    co = paired["co-bps"]
    assert co.value > 0 and co.low > 0 and co.share_not_above < 0.025
    single = bootstrap_scores(DATASET, target, good, n_boot=500, seed=1)
    assert single["co-bps"].low < single["co-bps"].value < single["co-bps"].high
    assert bootstrap_scores(DATASET, target, good, n_boot=500, seed=1) == single
    assert bootstrap_scores(DATASET, target, good, n_boot=500, seed=2) != single


@pytest.mark.slow
def test_evaluate_bootstrap_gives_intervals_and_the_paired_difference(tmp_path, nlbkit_cli):
    import json

    from nlbkit.train.run import TrainRequest, train_run
    from tests.training_fixtures import tiny_config

    tensors = write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5", n_val=20)
    root = tmp_path / "runs"
    smooth = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            model="smoothing",
            from_tensors=tensors,
            run_root=root,
            progress=False,
        ),
    ).run.path
    model = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            from_tensors=tensors,
            run_root=root,
            progress=False,
        ),
    ).run.path
    out = nlbkit_cli("evaluate", smooth, model, "--bootstrap", "200").stdout
    assert "bootstrap over eval trials (200 resamples, seed 0), 95% intervals:" in out
    assert f"paired, {model} - {smooth}:  co-bps" in out
    report = json.loads(nlbkit_cli("evaluate", smooth, model, model, "--bootstrap", "200", "--json").stdout)
    first, second, same = (r["bootstrap"] for r in report["runs"])
    assert "paired" not in first and second["paired"]["against"] == str(smooth)
    value, low, high = second["intervals"]["co-bps"]
    assert low <= value <= high
    assert value == pytest.approx(report["runs"][1]["scores"]["co-bps"], abs=1e-9)
    diff = same["paired"]["co-bps"]
    assert diff["difference"] == pytest.approx(
        report["runs"][1]["scores"]["co-bps"] - report["runs"][0]["scores"]["co-bps"], abs=1e-9
    )


@pytest.mark.slow
def test_leaderboard_bootstrap_gives_the_ranks_at_the_interval_ends(tmp_path):
    from nlbkit.nlb.published import PublishedEntry
    from nlbkit.scoring.leaderboard import format_rank_intervals, rank_runs
    from nlbkit.train.run import TrainRequest, train_run
    from tests.training_fixtures import tiny_config

    tensors = write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5", n_val=20)
    run = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            model="smoothing",
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    ).run.path

    def entry(co):
        return PublishedEntry(DATASET, 5, "val", f"m{co}", {"co-bps": co}, "test", "", "")

    (board,) = rank_runs([run], entries=[entry(-10.0), entry(10.0)])  # always below one, above the other
    text = format_rank_intervals([board], 100)
    assert "co-bps with 95% bootstrap intervals over eval trials (100 resamples, seed 0):" in text
    assert f"{run.name} (20 trials): " in text and "; rank 2 of 3, 2-2 across the interval" in text
