"""The metrics on small arrays whose answers are known, and the result structure of `evaluate`."""

from __future__ import annotations

import numpy as np
import pytest
from eval_layouts import all_groups, random_rates, random_target
from scipy.special import gammaln
from scipy.stats import pearsonr

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec
from nlbkit.scoring.metrics import (
    bits_per_spike,
    evaluate,
    evaluate_group,
    neg_log_likelihood,
    neural_speeds,
    psth_r2,
    shift_trials,
    speed_tp_correlation,
)


def test_nll_of_known_values():
    rates = np.array([[[1.0, 2.0]]])
    spikes = np.array([[[0.0, 3.0]]])
    expected = 1.0 + (2.0 - 3.0 * np.log(2.0) + gammaln(4.0))
    assert neg_log_likelihood(rates, spikes) == pytest.approx(expected, rel=1e-15)


def test_nll_skips_nan_bins_and_floors_zero_rates():
    rates = np.array([[[0.0, np.nan]]])
    spikes = np.array([[[0.0, np.nan]]])
    assert neg_log_likelihood(rates, spikes) == pytest.approx(1e-9)


@pytest.mark.parametrize("bad", [np.nan, -0.5])
def test_nll_rejects_nan_and_negative_rates_where_spikes_exist(bad):
    with pytest.raises(NlbkitError):
        neg_log_likelihood(np.array([[[bad, 1.0]]]), np.array([[[1.0, 1.0]]]))


def test_bits_per_spike_of_the_null_model_is_zero_and_truth_scores_higher():
    rng = np.random.default_rng(1)
    true_rates = rng.gamma(2.0, 0.5, size=(40, 20, 6))
    spikes = rng.poisson(true_rates).astype(float)
    null = np.broadcast_to(spikes.mean(axis=(0, 1)), spikes.shape).copy()
    assert bits_per_spike(null, spikes) == pytest.approx(0.0, abs=1e-12)
    assert bits_per_spike(true_rates, spikes) > 0.1


def test_shift_trials_moves_each_trial_by_its_jitter():
    rates = np.arange(2 * 5 * 1, dtype=float).reshape(2, 5, 1)
    out = shift_trials(rates, np.array([2, -1]))
    np.testing.assert_array_equal(out[0, :, 0], [np.nan, np.nan, 0, 1, 2])
    np.testing.assert_array_equal(out[1, :, 0], [6, 7, 8, 9, np.nan])


def test_psth_r2_is_one_for_rates_equal_to_the_psth():
    psth = np.random.default_rng(0).gamma(2.0, 1.0, size=(2, 6, 3))
    cond_idx = [np.array([0, 2]), np.array([1])]
    rates = psth[[0, 1, 0]]
    assert psth_r2(psth, rates, cond_idx) == pytest.approx(1.0)


def test_neural_speed_joins_observed_bins_across_gaps_as_nlb_tools():
    rng = np.random.default_rng(3)
    rates = rng.normal(size=(3, 8, 4))
    observed = np.ones((3, 8), dtype=bool)
    observed[0, :3] = False  # front padding
    observed[1, 4] = False  # a gap inside the window
    speeds = neural_speeds(rates, observed)
    for trial in range(3):
        kept = rates[trial][observed[trial]]
        expected = np.mean(np.linalg.norm(np.diff(kept, axis=0), axis=1))
        assert speeds[trial] == pytest.approx(expected, rel=1e-13)


def test_tp_corr_averages_per_condition_pearson_r():
    rng = np.random.default_rng(4)
    spikes = rng.poisson(1.0, size=(12, 10, 2)).astype(float)
    rates = rng.gamma(2.0, 1.0, size=(12, 10, 5))
    behavior = np.zeros((12, 5))
    behavior[6:, :3] = [1, 180, 1]
    behavior[:, 4] = rng.uniform(0.5, 1.0, 12)
    speeds = neural_speeds(rates, np.ones((12, 10), dtype=bool))
    expected = np.mean([pearsonr(speeds[:6], behavior[:6, 4])[0], pearsonr(speeds[6:], behavior[6:, 4])[0]])
    assert speed_tp_correlation(spikes, rates, behavior) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dataset", ["mc_maze", "mc_rtt", "area2_bump", "dmfc_rsg"])
def test_evaluate_group_reports_the_metrics_of_each_dataset(dataset):
    rng = np.random.default_rng(5)
    scores = evaluate_group(dataset, 20, random_target(dataset, 20, rng), random_rates(dataset, 20, rng))
    expected = {
        "mc_maze": ["co-bps", "vel R2", "psth R2", "fp-bps"],
        "mc_rtt": ["co-bps", "vel R2", "fp-bps"],
        "area2_bump": ["co-bps", "vel R2", "psth R2", "fp-bps"],
        "dmfc_rsg": ["co-bps", "tp corr", "psth R2", "fp-bps"],
    }[dataset]
    assert list(scores) == expected
    assert all(np.isfinite(v) for v in scores.values())


def test_oracle_rates_beat_random_rates():
    rng = np.random.default_rng(6)
    target = random_target("mc_maze_small", 20, rng)
    rates = random_rates("mc_maze_small", 20, rng)
    oracle = dict(rates)
    oracle["eval_rates_heldout"] = np.maximum(target["eval_spikes_heldout"], 0.05)
    oracle_scores = evaluate_group("mc_maze_small", 20, target, oracle)
    assert oracle_scores["co-bps"] > evaluate_group("mc_maze_small", 20, target, rates)["co-bps"] + 0.5


def test_evaluate_returns_nlb_tools_splits_and_scaling_prefixes():
    rng = np.random.default_rng(7)
    targets, submission = {}, {}
    for dataset, bin_ms in all_groups():
        group = get_spec(dataset).group_name(bin_ms)
        targets[group] = random_target(dataset, bin_ms, rng)
        submission[group] = random_rates(dataset, bin_ms, rng)
    submission["mc-maze"] = submission["mc_maze"]  # misnamed: ignored, as nlb_tools does
    del targets["area2_bump_20"]  # no targets: skipped
    results = evaluate(targets, submission)
    splits = [next(iter(entry)) for entry in results]
    assert splits == [
        "mc_maze_split", "mc_maze_20_split", "mc_rtt_split", "mc_rtt_20_split", "area2_bump_split",
        "dmfc_rsg_split", "dmfc_rsg_20_split", "mc_maze_scaling_split", "mc_maze_scaling_20_split",
    ]
    scaling = results[-2]["mc_maze_scaling_split"]
    assert list(scaling)[:4] == ["[500] co-bps", "[500] vel R2", "[500] psth R2", "[500] fp-bps"]
    assert {k.split()[0] for k in scaling} == {"[500]", "[250]", "[100]"}


def test_tp_corr_leaves_out_conditions_with_one_trial():
    rng = np.random.default_rng(8)
    spikes = np.zeros((7, 6, 2))
    rates = rng.gamma(2.0, 1.0, size=(7, 6, 3))
    behavior = np.zeros((7, 5))
    behavior[6, :3] = [1, 0, 0]  # a condition with a single trial
    behavior[:, 4] = rng.uniform(0.5, 1.0, 7)
    speeds = neural_speeds(rates, np.ones((7, 6), dtype=bool))
    expected = pearsonr(speeds[:6], behavior[:6, 4])[0]
    assert speed_tp_correlation(spikes, rates, behavior) == pytest.approx(expected, rel=1e-12)
