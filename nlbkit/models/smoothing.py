"""The NLB smoothing baseline: Gaussian-smoothed held-in spikes and Poisson GLMs.

As in the NLB'21 smoothing baseline: held-in rates are the held-in spike counts convolved with a
normalised Gaussian (width `kern_sd_ms`, window 6 sd, 'same' mode); held-out rates come from one
Poisson GLM per held-out neuron (scikit-learn's `PoissonRegressor`, L2 penalty `alpha`) on the log of
the smoothed held-in counts (plus `log_offset`) in the same bin.

That baseline does not predict forward bins. Here each neuron's forward rates are its mean count in
each forward bin over the training trials, smoothed over time with the same kernel, the same for
every trial: a simple floor for fp-bps (a per-trial forward model is the rate model's job).

`predict_rates` has LangevinFlow's signature: rates per bin, (trials, T + F, Nin + Nout).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal.windows import gaussian
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import PoissonRegressor
from threadpoolctl import threadpool_limits

from nlbkit.paths import atomic_path

RATE_FLOOR = 1e-9


def gaussian_window(kern_sd_ms: float, bin_ms: int) -> np.ndarray:
    """The NLB baseline's kernel: `int(6 sd)` bins long, sd `int(kern_sd_ms / bin_ms)` bins, sum 1."""
    sd_bins = int(kern_sd_ms / bin_ms)
    length = int(6 * kern_sd_ms / bin_ms)
    window = gaussian(length, sd_bins, sym=True)
    return window / window.sum()


def smooth_spikes(spikes: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Convolve each trial and neuron along time. (trials, T, N) -> (trials, T, N).

    numpy's 'same' mode for T >= len(window) (the NLB baseline's), and the same centring otherwise.
    """
    spikes = np.nan_to_num(np.asarray(spikes, dtype=np.float64))
    start, length = (len(window) - 1) // 2, spikes.shape[1]
    return np.apply_along_axis(lambda x: np.convolve(x, window, "full")[start : start + length], 1, spikes)


@dataclass
class GlmWeights:
    """Poisson GLMs, one per output neuron: rate = exp(x @ coef.T + intercept)."""

    coef: np.ndarray  # (outputs, features)
    intercept: np.ndarray  # (outputs,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.clip(np.exp(features @ self.coef.T + self.intercept), RATE_FLOOR, 1e20)


def fit_poisson_glms(
    features: np.ndarray, counts: np.ndarray, alpha: float, max_iter: int = 500
) -> GlmWeights:
    """One `PoissonRegressor` per column of `counts` (samples, outputs) on `features` (samples, k).

    The NLB baseline refits unconverged GLMs with more iterations; here `max_iter` is the one limit,
    to keep the fit to seconds.
    """
    coefs, intercepts = [], []
    # one BLAS thread: many small fits, and far faster than threads on a busy machine
    with threadpool_limits(1):
        for j in range(counts.shape[1]):
            glm = PoissonRegressor(alpha=alpha, max_iter=max_iter)
            with warnings.catch_warnings():
                # an unconverged fit is still a usable estimate; a silent neuron makes log(0) warnings
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                glm.fit(features, counts[:, j])
            coefs.append(glm.coef_)
            intercepts.append(glm.intercept_)
    return GlmWeights(np.asarray(coefs), np.asarray(intercepts))


def forward_floor(
    heldin: np.ndarray,
    heldout: np.ndarray,
    heldin_forward: np.ndarray,
    heldout_forward: np.ndarray,
    window: np.ndarray,
) -> np.ndarray:
    """Each neuron's mean count per forward bin over the training trials, smoothed over time with
    `window`: rates (F, Nin + Nout), the same for every trial. Counts (trials, T | F, Nin | Nout)."""
    forward = np.concatenate([heldin_forward, heldout_forward], axis=2)
    course = smooth_spikes(np.nanmean(forward, axis=0, keepdims=True), window)[0]  # (F, N)
    # a neuron silent in every training forward bin keeps its mean rate of the observed bins
    observed_mean = np.nanmean(np.concatenate([heldin, heldout], axis=2), axis=(0, 1))
    return np.maximum(np.where(course > 0, course, observed_mean), RATE_FLOOR)


class SmoothingBaseline:
    """Fit with `fit(heldin, heldout, heldin_forward, heldout_forward)`, then `predict_rates(heldin)`."""

    def __init__(
        self,
        bin_ms: int,
        kern_sd_ms: float = 50.0,
        alpha: float = 0.01,
        log_offset: float = 1e-4,
        max_iter: int = 500,
    ) -> None:
        self.bin_ms = bin_ms
        self.kern_sd_ms = kern_sd_ms
        self.alpha = alpha
        self.log_offset = log_offset
        self.max_iter = max_iter
        self.window = gaussian_window(kern_sd_ms, bin_ms)
        self.heldout_glm: GlmWeights | None = None
        self.n_forward = 0
        self.forward_rates: np.ndarray | None = None  # (F, N)

    def _log_smoothed(self, heldin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        smoothed = smooth_spikes(heldin, self.window)
        return smoothed, np.log(smoothed + self.log_offset)

    def fit(
        self, heldin: np.ndarray, heldout: np.ndarray, heldin_forward: np.ndarray, heldout_forward: np.ndarray
    ) -> SmoothingBaseline:
        """Spike counts (trials, T, Nin), (trials, T, Nout), (trials, F, Nin), (trials, F, Nout)."""
        _, log_rates = self._log_smoothed(heldin)
        n_in = heldin.shape[2]
        observed = ~np.isnan(heldout).any(axis=2).reshape(-1)
        self.heldout_glm = fit_poisson_glms(
            log_rates.reshape(-1, n_in)[observed],
            heldout.reshape(-1, heldout.shape[2])[observed],
            self.alpha,
            self.max_iter,
        )
        self.forward_rates = forward_floor(heldin, heldout, heldin_forward, heldout_forward, self.window)
        self.n_forward = self.forward_rates.shape[0]
        return self

    def predict_rates(self, heldin: np.ndarray) -> np.ndarray:
        """Rates per bin, (trials, T + F, Nin + Nout), for held-in counts (trials, T, Nin)."""
        if self.heldout_glm is None or self.forward_rates is None:
            raise RuntimeError("fit the smoothing baseline before predicting")
        trials, bins, n_in = heldin.shape
        smoothed, log_rates = self._log_smoothed(heldin)
        heldout = self.heldout_glm.predict(log_rates.reshape(-1, n_in)).reshape(trials, bins, -1)
        observed = np.concatenate([smoothed, heldout], axis=2)
        forward = np.broadcast_to(self.forward_rates, (trials, *self.forward_rates.shape))
        return np.concatenate([observed, forward], axis=1).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """The fitted weights and settings, as an .npz (no pickle)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                bin_ms=self.bin_ms,
                kern_sd_ms=self.kern_sd_ms,
                alpha=self.alpha,
                log_offset=self.log_offset,
                n_forward=self.n_forward,
                forward_rates=self.forward_rates,
                heldout_coef=self.heldout_glm.coef,
                heldout_intercept=self.heldout_glm.intercept,
            )

    @classmethod
    def load(cls, path: str | Path) -> SmoothingBaseline:
        with np.load(path) as saved:
            model = cls(
                int(saved["bin_ms"]),
                float(saved["kern_sd_ms"]),
                float(saved["alpha"]),
                float(saved["log_offset"]),
            )
            model.n_forward = int(saved["n_forward"])
            model.forward_rates = saved["forward_rates"]
            model.heldout_glm = GlmWeights(saved["heldout_coef"], saved["heldout_intercept"])
        return model
