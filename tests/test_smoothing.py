import numpy as np
from scipy.signal.windows import gaussian

from nlbkit.models.smoothing import SmoothingBaseline, gaussian_window, smooth_spikes
from nlbkit.scoring.metrics import bits_per_spike
from tests.training_fixtures import N_IN, N_OUT, F, T, _trials


def test_window_matches_the_nlb_baseline_kernel():
    window = gaussian_window(60, 5)
    expected = gaussian(72, 12, sym=True)
    np.testing.assert_allclose(window, expected / expected.sum())


def test_smoothing_is_numpy_same_convolution_and_handles_short_series():
    rng = np.random.default_rng(0)
    spikes = rng.poisson(1.0, size=(2, 30, 3)).astype(float)
    window = gaussian_window(20, 5)  # 24 taps, shorter than 30 bins
    expected = np.apply_along_axis(lambda x: np.convolve(x, window, "same"), 1, spikes)
    np.testing.assert_allclose(smooth_spikes(spikes, window), expected)
    short = smooth_spikes(spikes[:, :10], window)  # window longer than the series
    assert short.shape == (2, 10, 3)


def test_baseline_predicts_heldout_better_than_the_mean(tmp_path):
    rng = np.random.default_rng(1)
    train, test = _trials(rng, 40), _trials(rng, 10)
    model = SmoothingBaseline(bin_ms=5, kern_sd_ms=10, alpha=0.01, max_iter=200)
    model.fit(train["heldin"], train["heldout"], train["heldin_forward"], train["heldout_forward"])
    rates = model.predict_rates(test["heldin"])
    assert rates.shape == (10, T + F, N_IN + N_OUT)
    assert (rates >= 0).all() and np.isfinite(rates).all()
    np.testing.assert_allclose(rates[:, :T, :N_IN], smooth_spikes(test["heldin"], model.window), rtol=1e-6)
    assert bits_per_spike(rates[:, :T, N_IN:].astype(float), test["heldout"].astype(float)) > 0.05
    # the forward rates are the training mean time course, the same for every trial
    np.testing.assert_allclose(rates[0, T:], rates[-1, T:])
    model.save(tmp_path / "w.npz")
    again = SmoothingBaseline.load(tmp_path / "w.npz").predict_rates(test["heldin"])
    np.testing.assert_allclose(again, rates)
