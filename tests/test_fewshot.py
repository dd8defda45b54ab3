"""Few-shot co-bps (nlbkit.scoring.fewshot): readout, subsets, true latents beating shuffled ones."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.linear_model import PoissonRegressor

from nlbkit.scoring.fewshot import FewShotScore, fewshot_co_bps, fit_poisson_glm
from nlbkit.scoring.metrics import bits_per_spike


def make_data(n_trials=100, n_time=35, n_latent=3, n_out=35, seed=0):
    """Smooth latents with a random phase/amplitude per trial; held-out log-rates are a linear
    readout of them; Poisson counts. Returns latents (trials, time, latent), spikes (trials, time, out)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n_time)
    freq = np.array([1.0, 1.5, 2.0])[:n_latent]
    phase = rng.uniform(0, 2 * np.pi, (n_trials, 1, n_latent))
    amp = rng.uniform(0.5, 1.5, (n_trials, 1, n_latent))
    latents = amp * np.sin(2 * np.pi * freq * t[None, :, None] + phase)
    readout = rng.normal(0, 0.8, (n_latent, n_out))
    log_rates = latents @ readout + np.log(rng.uniform(0.2, 1.0, n_out))
    return latents, rng.poisson(np.exp(log_rates)).astype(float)


@pytest.fixture(scope="module")
def data():
    latents, spikes = make_data()
    return latents[:70], spikes[:70], latents[70:], spikes[70:]


def test_glm_matches_sklearn_poisson_regressor():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4))
    y = rng.poisson(np.exp(x @ rng.normal(0, 0.5, (4, 3)) - 0.5)).astype(float)
    w, b = fit_poisson_glm(x, y, alpha=0.1, tol=1e-10)
    for j in range(3):
        ref = PoissonRegressor(alpha=0.1, tol=1e-12, max_iter=10_000).fit(x, y[:, j])
        np.testing.assert_allclose(w[:, j], ref.coef_, atol=1e-5)
        np.testing.assert_allclose(b[j], ref.intercept_, atol=1e-5)


def test_true_latents_beat_shuffled_latents(data):
    tr_z, tr_y, ev_z, ev_y = data
    rng = np.random.default_rng(2)
    true = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=8, repeats=10, seed=0)
    trial_perm = fewshot_co_bps(
        tr_z[rng.permutation(len(tr_z))], tr_y, ev_z[rng.permutation(len(ev_z))], ev_y,
        k=8, repeats=10, seed=0,
    )
    time_perm = fewshot_co_bps(
        tr_z[:, rng.permutation(tr_z.shape[1])], tr_y, ev_z[:, rng.permutation(ev_z.shape[1])], ev_y,
        k=8, repeats=10, seed=0,
    )
    assert true.mean > 0.3  # the true latents predict the held-out neurons well from 8 trials
    assert true.mean > trial_perm.mean + 0.3
    assert true.mean > time_perm.mean + 0.3
    assert np.all(true.scores > trial_perm.scores) and np.all(true.scores > time_perm.scores)
    assert trial_perm.mean < 0.05 and time_perm.mean < 0.05  # no better than the mean-rate null


def test_more_shots_score_higher(data):
    tr_z, tr_y, ev_z, ev_y = data
    few = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=2, repeats=10, seed=0)
    many = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=32, repeats=10, seed=0)
    assert many.mean > few.mean and many.sd < few.sd


def test_subsets_are_seeded(data):
    tr_z, tr_y, ev_z, ev_y = data
    a = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=5, repeats=6, seed=123)
    b = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=5, repeats=6, seed=123)
    c = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=5, repeats=6, seed=124)
    np.testing.assert_array_equal(a.subsets, b.subsets)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.mean == b.mean and a.sd == b.sd
    assert not np.array_equal(np.sort(a.subsets, 1), np.sort(c.subsets, 1))
    assert not np.array_equal(a.scores, c.scores)
    rng = np.random.default_rng(123)  # subsets are Generator(seed).choice(n_train, k), redrawn per repeat
    expected = np.stack([rng.choice(70, size=5, replace=False) for _ in range(6)])
    np.testing.assert_array_equal(a.subsets, expected)


def test_returns_mean_and_sd_over_repeats(data):
    tr_z, tr_y, ev_z, ev_y = data
    s = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=4, repeats=7, seed=3)
    assert isinstance(s, FewShotScore) and (s.k, s.repeats) == (4, 7)
    assert s.scores.shape == (7,) and s.subsets.shape == (7, 4)
    assert s.mean == pytest.approx(np.mean(s.scores)) and s.sd == pytest.approx(np.std(s.scores, ddof=1))
    assert s.sd > 0  # different subsets give different scores
    assert all(len(set(row)) == 4 and row.min() >= 0 and row.max() < 70 for row in s.subsets)
    one = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=4, repeats=1, seed=3)
    assert one.sd == 0.0 and one.scores[0] == s.scores[0]


def test_each_score_is_bits_per_spike_of_the_glm_fit(data):
    tr_z, tr_y, ev_z, ev_y = data
    s = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=6, repeats=2, seed=9)
    idx = s.subsets[1]
    w, b = fit_poisson_glm(tr_z[idx].reshape(-1, 3), tr_y[idx].reshape(-1, tr_y.shape[2]), alpha=0.1)
    assert s.scores[1] == pytest.approx(bits_per_spike(np.exp(ev_z @ w + b), ev_y), abs=1e-12)


def test_nan_eval_bins_are_skipped(data):
    tr_z, tr_y, ev_z, ev_y = data
    ev_y_nan, ev_z_nan = ev_y.copy(), ev_z.copy()
    ev_y_nan[:5] = np.nan  # five whole trials unobserved (latents there may be NaN too)
    ev_z_nan[:5, 20:] = np.nan
    full = fewshot_co_bps(tr_z, tr_y, ev_z_nan, ev_y_nan, k=6, repeats=4, seed=1)
    dropped = fewshot_co_bps(tr_z, tr_y, ev_z[5:], ev_y[5:], k=6, repeats=4, seed=1)
    np.testing.assert_allclose(full.scores, dropped.scores, rtol=1e-12)
    ev_y_nan2 = ev_y.copy()
    ev_y_nan2[:, 30:, :] = np.nan  # trailing padding bins for every trial
    padded = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y_nan2, k=6, repeats=4, seed=1)
    cut = fewshot_co_bps(tr_z, tr_y, ev_z[:, :30], ev_y[:, :30], k=6, repeats=4, seed=1)
    np.testing.assert_allclose(padded.scores, cut.scores, rtol=1e-12)


def test_nan_train_bins_are_skipped(data):
    tr_z, tr_y, ev_z, ev_y = data
    x, y = tr_z[:6].reshape(-1, 3), tr_y[:6].reshape(-1, tr_y.shape[2])
    y_nan = y.copy()
    y_nan[::3, 0] = np.nan  # neuron 0 unobserved in a third of the bins
    w, b = fit_poisson_glm(x, y_nan, tol=1e-10)
    keep = ~np.isnan(y_nan[:, 0])
    w0, b0 = fit_poisson_glm(x[keep], y[keep, :1], tol=1e-10)
    w1, b1 = fit_poisson_glm(x, y[:, 1:], tol=1e-10)
    np.testing.assert_allclose(w[:, :1], w0, atol=1e-8)
    np.testing.assert_allclose(b[:1], b0, atol=1e-8)
    np.testing.assert_allclose(w[:, 1:], w1, atol=1e-8)
    tr_y_nan, tr_z_nan = tr_y.copy(), tr_z.copy()
    tr_y_nan[:, 30:] = np.nan  # padding bins with NaN latents are dropped from the fit
    tr_z_nan[:, 30:] = np.nan
    padded = fewshot_co_bps(tr_z_nan, tr_y_nan, ev_z, ev_y, k=6, repeats=3, seed=2)
    cut = fewshot_co_bps(tr_z[:, :30], tr_y[:, :30], ev_z, ev_y, k=6, repeats=3, seed=2)
    np.testing.assert_allclose(padded.scores, cut.scores, rtol=1e-10)


def test_bad_arguments_raise(data):
    tr_z, tr_y, ev_z, ev_y = data
    with pytest.raises(ValueError):
        fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=71)
    with pytest.raises(ValueError):
        fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=0)
    with pytest.raises(ValueError):
        fewshot_co_bps(tr_z[:, :, :2], tr_y, ev_z, ev_y, k=3)
    with pytest.raises(ValueError):
        fewshot_co_bps(tr_z, tr_y[:, :20], ev_z, ev_y, k=3)


def test_fast_enough():
    latents, spikes = make_data(n_trials=100, n_time=35, n_latent=3, n_out=35, seed=5)
    z = np.concatenate([latents, np.random.default_rng(0).normal(size=latents.shape)], -1)  # 6 dims
    start = time.perf_counter()
    s = fewshot_co_bps(z[:75], spikes[:75], z[75:], spikes[75:], k=16, repeats=20, seed=0)
    elapsed = time.perf_counter() - start
    assert np.isfinite(s.mean) and s.mean > 0
    assert elapsed < 10.0, f"took {elapsed:.2f}s"  # about 0.25 s unloaded; slack for a busy machine


def test_silent_neuron_in_the_shots_gives_a_finite_score(data):
    tr_z, tr_y, ev_z, ev_y = data
    tr_y = tr_y.copy()
    tr_y[:, :, 0] = 0  # neuron 0 never fires in the train trials but does in eval
    w, b = fit_poisson_glm(tr_z[:4].reshape(-1, 3), tr_y[:4].reshape(-1, tr_y.shape[2]))
    assert np.exp(b[0]) < 1e-5 and np.all(np.abs(w[:, 0]) < 1e-5)  # rate driven to ~0, as sklearn
    s = fewshot_co_bps(tr_z, tr_y, ev_z, ev_y, k=4, repeats=3, seed=0)
    assert np.all(np.isfinite(s.scores))


# --- `nlbkit evaluate --fewshot` on run directories -------------------------------------------------


def test_per_bin_repeats_steps_over_their_bins_and_drops_the_padding():
    from nlbkit.train.fewshot import per_bin

    steps = np.arange(3, dtype=float)[None, :, None]  # 3 steps of 4 bins cover 10 bins, 2 padded
    np.testing.assert_array_equal(per_bin(steps, 4, 10)[0, :, 0], [0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(per_bin(steps, 1, 3), steps)


@pytest.mark.slow
def test_evaluate_fewshot_on_a_smoothing_run(tmp_path, nlbkit_cli):
    import json

    from nlbkit.models.smoothing import SmoothingBaseline, smooth_spikes
    from nlbkit.nlb.tensor_file import load_phase_data
    from nlbkit.scoring.evaluate import score_run
    from nlbkit.scoring.fewshot import column_names
    from nlbkit.scoring.tables import format_table
    from nlbkit.train.run import TrainRequest, train_run
    from tests.training_fixtures import tiny_config, write_prepared

    tensors = write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5", n_train=40, n_val=20)
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
    result = nlbkit_cli("evaluate", out.run.path, "--fewshot", "--fewshot-k", "8",
                        "--fewshot-repeats", "5", "--json")
    scores = json.loads(result.stdout)["runs"][0]["scores"]
    mean_name, sd_name = column_names(8)
    assert scores["co-bps"] == pytest.approx(out.scores["co-bps"], abs=1e-12)
    # the same number from the pieces: smoothed held-in counts of the train and val trials
    data = load_phase_data(tensors, "val")
    baseline = SmoothingBaseline.load(out.run.smoothing_weights)

    def features(heldin):  # what the baseline's own readout reads
        return np.log(smooth_spikes(heldin, baseline.window) + baseline.log_offset)

    direct = fewshot_co_bps(features(data.fit.heldin), data.fit.heldout,
                            features(data.eval.heldin), data.targets["eval_spikes_heldout"],
                            k=8, repeats=5, seed=0)
    assert scores[mean_name] == pytest.approx(direct.mean, abs=1e-12)
    assert scores[sd_name] == pytest.approx(direct.sd, abs=1e-12) and direct.sd > 0
    scored = score_run(out.run.path)
    scored.scores.update({mean_name: direct.mean, sd_name: direct.sd})
    table = format_table([scored])
    assert mean_name in table.splitlines()[0] and f"{direct.mean:.4f}" in table


@pytest.mark.slow
def test_fewshot_of_a_langevin_run_reads_z_and_v(tmp_path):
    from nlbkit.runs import read_run
    from nlbkit.train.fewshot import langevin_latents, run_fewshot, run_trials
    from nlbkit.train.run import TrainRequest, train_run
    from tests.training_fixtures import N_IN, T, tiny_config, write_prepared

    tensors = write_prepared(tmp_path / "tensors_5ms.h5", n_train=24, n_val=8)
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            model="langevin",
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    fit, eval_heldin = run_trials(read_run(out.run.path))
    assert fit.heldin.shape == (24, T, N_IN) and eval_heldin.shape == (8, T, N_IN)
    z = langevin_latents(out.run.path, eval_heldin)
    assert z.shape[:2] == (8, T) and np.isfinite(z).all()
    score = run_fewshot(out.run.path, k=4, repeats=3)
    assert score.scores.shape == (3,) and np.isfinite(score.scores).all()
