"""A GPFA baseline: elephant's Gaussian-process factor analysis on the held-in spikes, Poisson GLMs.

As in NLB'21's GPFA baseline: GPFA (elephant's `GPFA`, square-rooted counts, RBF kernels) is fitted
on the held-in spikes of the training trials; the orthonormalised posterior-mean latents of every
trial then feed one Poisson GLM per neuron, held-in and held-out (the smoothing baseline's
`fit_poisson_glms`, L2 penalty `alpha`), fitted on the training trials.

elephant takes spike trains, not counts: each count becomes that many spikes at its bin's centre,
which elephant bins back to the same counts. GPFA's bin may be `bin_factor` data bins (counts
summed); each latent then holds over the data bins its GPFA bin spans.

elephant fits on segments of 20 GPFA bins, overlapping by random amounts so as to cover each trial
(trials shorter than a segment are fitted whole); those amounts come from numpy's global random
state, which the fit seeds with `seed` and then restores: a fit depends on its seed only.

GPFA has no forward model here: forward rates are the smoothing baseline's floor (each neuron's
mean count per forward bin over the training trials, smoothed with a Gaussian of `forward_sd_ms`).

`predict_rates` has LangevinFlow's signature: rates per bin, (trials, T + F, Nin + Nout).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.models.smoothing import GlmWeights, fit_poisson_glms, forward_floor, gaussian_window
from nlbkit.paths import atomic_path

# elephant's binning passes quantities a 'copy' argument that quantities >= 0.16 deprecates (and
# ignores): one warning per spike train, nothing a user can act on.
_QUANTITY_COPY = "The 'copy' argument in Quantity is deprecated"
_ARRAYS = ("C", "d", "R", "gamma", "eps")  # elephant's fitted parameters (numpy arrays)
_NOTES = ("learnKernelParams", "learnGPNoise", "RforceDiagonal")


def spike_trains(counts: np.ndarray, bin_ms: float) -> list[list]:
    """Counts (trials, T, N) -> neo SpikeTrains [trial][neuron], each count's spikes at its bin's
    centre (ms), t_start 0, t_stop T x bin_ms."""
    import neo
    import quantities as pq

    counts = np.asarray(counts)
    if np.isnan(counts).any() or (counts < 0).any():
        raise NlbkitError("GPFA needs non-negative spike counts without NaN")
    trials, bins, neurons = counts.shape
    centres = (np.arange(bins) + 0.5) * bin_ms
    whole = np.rint(counts).astype(np.int64)
    return [
        [
            neo.SpikeTrain(np.repeat(centres, whole[i, :, n]) * pq.ms, t_stop=bins * bin_ms * pq.ms)
            for n in range(neurons)
        ]
        for i in range(trials)
    ]


@contextlib.contextmanager
def _seeded_global_random(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class GpfaBaseline:
    """Fit with `fit(heldin, heldout, heldin_forward, heldout_forward)`, then `predict_rates(heldin)`."""

    def __init__(
        self,
        bin_ms: int,
        latent_dim: int = 8,
        bin_factor: int = 1,
        alpha: float = 0.01,
        em_max_iters: int = 100,
        tau_init_ms: float = 100.0,
        forward_sd_ms: float = 50.0,
        max_iter: int = 500,
        seed: int = 0,
    ) -> None:
        if latent_dim < 1 or bin_factor < 1:
            raise NlbkitError(f"gpfa: latent_dim ({latent_dim}) and bin_factor ({bin_factor}) must be >= 1")
        self.bin_ms = bin_ms
        self.latent_dim = latent_dim
        self.bin_factor = bin_factor
        self.alpha = alpha
        self.em_max_iters = em_max_iters
        self.tau_init_ms = tau_init_ms
        self.forward_sd_ms = forward_sd_ms
        self.max_iter = max_iter
        self.seed = seed
        self.params: dict | None = None  # elephant's params_estimated
        self.has_spikes: np.ndarray | None = None  # (Nin,) held-in neurons GPFA models
        self.glm: GlmWeights | None = None  # latents -> held-in and held-out rates
        self.forward_rates: np.ndarray | None = None  # (F, N)

    def _gpfa(self):
        import quantities as pq
        from elephant.gpfa import GPFA

        return GPFA(
            bin_size=self.bin_ms * self.bin_factor * pq.ms,
            x_dim=self.latent_dim,
            em_max_iters=self.em_max_iters,
            tau_init=self.tau_init_ms * pq.ms,
        )

    def _check_bins(self, heldin: np.ndarray) -> None:
        if heldin.shape[1] % self.bin_factor:
            raise NlbkitError(
                f"gpfa: {heldin.shape[1]} bins are not a whole number of GPFA bins of {self.bin_factor}"
            )

    def latents(self, heldin: np.ndarray) -> np.ndarray:
        """Orthonormalised posterior-mean latents per data bin, (trials, T, latent_dim)."""
        if self.params is None:
            raise RuntimeError("fit the GPFA baseline before inferring latents")
        self._check_bins(heldin)
        gpfa = self._gpfa()
        gpfa.params_estimated, gpfa.has_spikes_bool = self.params, self.has_spikes
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_QUANTITY_COPY)
            trains = spike_trains(heldin, self.bin_ms)
            per_trial = gpfa.transform(trains, returned_data=["latent_variable_orth"])
        steps = np.stack([np.asarray(x).T for x in per_trial])  # (trials, T / bin_factor, latent_dim)
        return np.repeat(steps, self.bin_factor, axis=1)

    def fit(
        self, heldin: np.ndarray, heldout: np.ndarray, heldin_forward: np.ndarray, heldout_forward: np.ndarray
    ) -> GpfaBaseline:
        """Spike counts (trials, T, Nin), (trials, T, Nout), (trials, F, Nin), (trials, F, Nout)."""
        self._check_bins(heldin)
        active = int((np.nansum(heldin, axis=(0, 1)) > 0).sum())  # elephant drops silent neurons
        if self.latent_dim > active:
            raise NlbkitError(
                f"gpfa: {self.latent_dim} latents for {active} held-in neurons with spikes; "
                f"set gpfa.latent_dim to at most {active}"
            )
        gpfa = self._gpfa()
        try:
            # elephant prints its progress, and warns of each trial shorter than a segment
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(segLength|No segments extracted)")
                warnings.filterwarnings("ignore", message=_QUANTITY_COPY)
                with _seeded_global_random(self.seed):
                    gpfa.fit(spike_trains(heldin, self.bin_ms))
        except (ValueError, np.linalg.LinAlgError) as error:
            reason = str(error).splitlines()[0]
            raise NlbkitError(f"gpfa: the fit failed ({reason}); try a smaller gpfa.latent_dim") from None
        self.params, self.has_spikes = gpfa.params_estimated, gpfa.has_spikes_bool
        latents = self.latents(heldin)
        counts = np.concatenate([heldin, heldout], axis=2)
        observed = ~np.isnan(counts).any(axis=2).reshape(-1)
        self.glm = fit_poisson_glms(
            latents.reshape(-1, self.latent_dim)[observed],
            counts.reshape(-1, counts.shape[2])[observed],
            self.alpha,
            self.max_iter,
        )
        window = gaussian_window(self.forward_sd_ms, self.bin_ms)
        self.forward_rates = forward_floor(heldin, heldout, heldin_forward, heldout_forward, window)
        return self

    def predict_rates(self, heldin: np.ndarray) -> np.ndarray:
        """Rates per bin, (trials, T + F, Nin + Nout), for held-in counts (trials, T, Nin)."""
        if self.glm is None or self.forward_rates is None:
            raise RuntimeError("fit the GPFA baseline before predicting")
        trials, bins, _ = heldin.shape
        latents = self.latents(heldin)
        observed = self.glm.predict(latents.reshape(-1, self.latent_dim)).reshape(trials, bins, -1)
        forward = np.broadcast_to(self.forward_rates, (trials, *self.forward_rates.shape))
        return np.concatenate([observed, forward], axis=1).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """The fitted GPFA parameters, GLM weights and settings, as an .npz (no pickle)."""
        if self.params is None or self.glm is None:
            raise RuntimeError("fit the GPFA baseline before saving")
        if self.params.get("covType") != "rbf":
            raise NlbkitError(f"gpfa: cannot save a '{self.params.get('covType')}' kernel (only 'rbf')")
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                bin_ms=self.bin_ms,
                latent_dim=self.latent_dim,
                bin_factor=self.bin_factor,
                alpha=self.alpha,
                em_max_iters=self.em_max_iters,
                tau_init_ms=self.tau_init_ms,
                forward_sd_ms=self.forward_sd_ms,
                seed=self.seed,
                has_spikes=self.has_spikes,
                forward_rates=self.forward_rates,
                glm_coef=self.glm.coef,
                glm_intercept=self.glm.intercept,
                **{f"param_{k}": np.asarray(self.params[k]) for k in _ARRAYS},
                **{f"note_{k}": bool(self.params["notes"][k]) for k in _NOTES},
            )

    @classmethod
    def load(cls, path: str | Path) -> GpfaBaseline:
        with np.load(path) as saved:
            model = cls(
                int(saved["bin_ms"]),
                int(saved["latent_dim"]),
                int(saved["bin_factor"]),
                float(saved["alpha"]),
                int(saved["em_max_iters"]),
                float(saved["tau_init_ms"]),
                float(saved["forward_sd_ms"]),
                seed=int(saved["seed"]),
            )
            model.params = {k: saved[f"param_{k}"] for k in _ARRAYS}
            model.params["covType"] = "rbf"
            model.params["notes"] = {k: bool(saved[f"note_{k}"]) for k in _NOTES}
            model.has_spikes = saved["has_spikes"].astype(bool)
            model.forward_rates = saved["forward_rates"]
            model.glm = GlmWeights(saved["glm_coef"], saved["glm_intercept"])
        return model
