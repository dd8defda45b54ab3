"""The GPFA baseline: trained through `train_run`, every run file written, the same rates from the
saved run, and better than the smoothing baseline on data with low-dimensional latents."""

import h5py
import numpy as np
import pytest

from nlbkit.errors import NlbkitError
from nlbkit.models import get_model
from nlbkit.models.gpfa import GpfaBaseline, spike_trains
from nlbkit.train.cv import CvPlan, run_cv
from nlbkit.train.fewshot import LATENTS
from nlbkit.train.run import TrainRequest, predict_file, train_run
from tests.training_fixtures import tiny_config, write_prepared, write_train_only

# Measured when this test was written (40 train and 20 val trials of write_prepared, whose rates
# follow one shared sinusoid; mc_maze_small's gpfa defaults but 2 latents): GPFA 0.377 co-bps, the
# smoothing baseline 0.239 (its better kernel of 20 and 60 ms), 0.138 apart; a margin of 0.08
# leaves room for platform differences.
MARGIN = 0.08


def _train(tmp_path, tensors, model, *overrides, tag=None):
    return train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(*overrides),
            model=model,
            from_tensors=tensors,
            run_root=tmp_path / "r",
            tag=tag,
            progress=False,
        )
    )


def test_gpfa_is_registered_without_torch():
    entry = get_model("gpfa")
    assert entry.config_section == "gpfa" and not entry.uses_torch


def test_spike_times_bin_back_to_the_counts():
    import quantities as pq
    from elephant.conversion import BinnedSpikeTrain

    counts = np.array([[[0, 2], [3, 0], [1, 1]]], dtype=np.float32)  # (1 trial, 3 bins, 2 neurons)
    binned = BinnedSpikeTrain(spike_trains(counts, 5)[0], bin_size=5 * pq.ms).to_array()
    np.testing.assert_array_equal(binned.T, counts[0])


def test_bins_not_a_whole_number_of_gpfa_bins_are_an_error():
    with pytest.raises(NlbkitError, match="whole number"):
        GpfaBaseline(5, bin_factor=3).fit(*(np.zeros((2, 7, n)) for n in (3, 2, 3, 2)))


def test_more_latents_than_active_neurons_is_an_error():
    heldin = np.ones((4, 10, 3), dtype=np.float32)
    heldin[:, :, 2] = 0  # a silent neuron, which GPFA leaves out
    with pytest.raises(NlbkitError, match="at most 2"):
        GpfaBaseline(5, latent_dim=3).fit(heldin, heldin[:, :, :1], heldin[:, :2], heldin[:, :2, :1])


def test_gpfa_trains_writes_its_run_and_predicts_the_same_rates(tmp_path):
    tensors = write_prepared(tmp_path / "t.h5")
    outcome = _train(tmp_path, tensors, "gpfa", "gpfa.latent_dim=2", "gpfa.em_max_iters=20")
    run = outcome.run
    for path in (run.run_json, run.rates_h5, run.scores_json, run.gpfa_weights, run.path / "config.json"):
        assert path.exists(), path
    assert run.info().model == "gpfa" and run.config().gpfa.latent_dim == 2
    assert np.isfinite(outcome.scores["co-bps"])
    out = predict_file(run.path, tensors, tmp_path / "pred.h5")
    with h5py.File(run.rates_h5) as saved, h5py.File(out) as predicted:
        for key in ("eval_rates_heldin", "eval_rates_heldout", "eval_rates_heldin_forward"):
            np.testing.assert_allclose(
                predicted[f"mc_maze_small/{key}"][()], saved[f"mc_maze_small/{key}"][()], rtol=1e-5
            )
    with h5py.File(tensors) as h5:
        heldin = h5["val/eval_spikes_heldin"][()]
    latents = LATENTS["gpfa"](run.path, heldin)  # what few-shot co-bps reads
    assert latents.shape == (*heldin.shape[:2], 2) and np.isfinite(latents).all()


def test_gpfa_fit_on_two_bins_a_latent_is_held_over_both():
    rng = np.random.default_rng(0)
    heldin = rng.poisson(1.0, (8, 20, 5)).astype(np.float32)
    heldout = rng.poisson(1.0, (8, 20, 2)).astype(np.float32)
    forward = rng.poisson(1.0, (8, 4, 7)).astype(np.float32)
    model = GpfaBaseline(5, latent_dim=2, bin_factor=2, em_max_iters=5)
    model.fit(heldin, heldout, forward[:, :, :5], forward[:, :, 5:])
    latents = model.latents(heldin)
    assert latents.shape == (8, 20, 2)
    np.testing.assert_array_equal(latents[:, 0::2], latents[:, 1::2])
    assert model.predict_rates(heldin).shape == (8, 24, 7)


@pytest.mark.slow
def test_gpfa_beats_smoothing_on_low_dimensional_latents(tmp_path):
    tensors = write_prepared(tmp_path / "t.h5", n_train=40, n_val=20)
    gpfa = _train(tmp_path, tensors, "gpfa", "gpfa.latent_dim=2").scores["co-bps"]
    smoothing = max(
        _train(tmp_path, tensors, "smoothing", f"smoothing.kern_sd_ms={w}", tag=str(w)).scores["co-bps"]
        for w in (20, 60)
    )
    assert gpfa > smoothing + MARGIN, (gpfa, smoothing)


def test_gpfa_fit_depends_on_its_seed_only():
    rng = np.random.default_rng(1)
    heldin = rng.poisson(1.0, (6, 50, 5)).astype(np.float32)  # 50 bins: overlapping segments of 20
    heldout = rng.poisson(1.0, (6, 50, 2)).astype(np.float32)
    forward = rng.poisson(1.0, (6, 4, 7)).astype(np.float32)

    def fit(seed):
        model = GpfaBaseline(5, latent_dim=2, em_max_iters=5, seed=seed)
        return model.fit(heldin, heldout, forward[:, :, :5], forward[:, :, 5:]).params["C"]

    np.random.seed(123)
    first = fit(0)
    after = np.random.get_state()[1].copy()
    np.random.seed(456)
    np.testing.assert_array_equal(fit(0), first)
    np.random.seed(123)
    fit(0)
    np.testing.assert_array_equal(np.random.get_state()[1], after)  # the global state is restored
    assert not np.array_equal(fit(1), first)


def test_cv_runs_gpfa_beside_smoothing_at_20ms(tmp_path):
    path = write_train_only(tmp_path / "train.h5", trials=20)
    result = run_cv(
        "mc_maze_small",
        tiny_config("gpfa.latent_dim=2", "gpfa.em_max_iters=10"),
        path,
        20,
        tmp_path / "cv",
        CvPlan(n_folds=4, seeds=(0,), folds=(1,), models=("gpfa", "smoothing")),
    )
    assert [(r["model"], r["fold"]) for r in result.rows] == [("gpfa", 1), ("smoothing", 1)]
    assert all(np.isfinite(r["co-bps"]) for r in result.rows)
