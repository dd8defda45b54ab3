"""Few-shot co-bps of a run directory (`nlbkit evaluate --fewshot`).

It lives beside the latents rather than in `nlbkit.scoring` (which sits below training): a
LangevinFlow run's latents come from its trained network. The metric itself, on arrays, is
`nlbkit.scoring.fewshot`.

The run's latents are computed on demand for its train trials (those it was fit on: `train` in the
val phase, `trainval` in the test phase, the kept trials of a held-out split) and its scored eval
trials; k-trial Poisson readouts from the train latents to the train trials' held-out spikes are
scored on the eval trials' held-out targets (the same targets `nlbkit evaluate` uses).

Latents per model: LangevinFlow's [z, v] (positions and velocities, mean over the sampling passes
of `nlbkit.train.latents.run_latents`, each step repeated over the bins it spans); the smoothing
baseline's log smoothed held-in counts (the features its own readout reads); GPFA's posterior
latents; NDT's last-layer states and LFADS's factors (what their readouts read). Other runs
(ensembles) have no latents.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.h5io import open_h5
from nlbkit.nlb.tensor_file import TrialSet, load_phase_data, train_trials
from nlbkit.paths import tensors_path
from nlbkit.runs import RunInfo, read_run
from nlbkit.scoring.evaluate import run_target
from nlbkit.scoring.fewshot import FewShotScore, fewshot_co_bps

DEFAULT_K = 16
DEFAULT_REPEATS = 20


def run_trials(run: RunInfo, data_dir: str | os.PathLike | None = None) -> tuple[TrialSet, np.ndarray]:
    """The run's train trials (with held-out spikes) and its eval trials' held-in spikes
    (trials, T, Nin), from the tensor file it recorded (or the one under `data_dir`)."""
    if data_dir is None and run.tensors is not None and run.tensors.exists():
        path = run.tensors
    elif run.eval_index is not None and run.tensors is not None:
        path = run.tensors
    else:
        path = tensors_path(run.dataset, run.bin_ms, data_dir)
    if run.eval_index is not None:
        with open_h5(path) as h5:
            every = train_trials(h5, Path(path))
        held = np.asarray(run.eval_index, dtype=int)
        kept = np.setdiff1d(np.arange(len(every)), held)
        return every.subset(kept), every.heldin[held]
    data = load_phase_data(path, run.phase)
    if data.fit.heldout is None:
        raise NlbkitError(f"{path}: the train trials have no held-out spikes")
    return data.fit, data.eval.heldin


def smoothing_latents(run_dir: Path, heldin: np.ndarray) -> np.ndarray:
    """The smoothing baseline's smoothed held-in counts as its own readout reads them,
    log(smoothed + log_offset), (trials, T, Nin).

    The log, because that is the baseline's representation: on the real mc_maze_small train file
    a readout on all 60 fit trials scores 0.100 co-bps with it (the baseline's own: 0.098) and
    -0.044 on the raw smoothed counts (alpha 0.1)."""
    from nlbkit.models.smoothing import SmoothingBaseline, smooth_spikes
    from nlbkit.runs import RunDir

    weights = RunDir(run_dir).smoothing_weights
    if not weights.exists():
        raise NlbkitError(f"{weights}: fitted baseline missing")
    baseline = SmoothingBaseline.load(weights)
    return np.log(smooth_spikes(heldin, baseline.window) + baseline.log_offset)


def gpfa_latents(run_dir: Path, heldin: np.ndarray) -> np.ndarray:
    """GPFA's orthonormalised posterior-mean latents per bin, (trials, T, latent_dim)."""
    from nlbkit.models.gpfa import GpfaBaseline
    from nlbkit.runs import RunDir

    weights = RunDir(run_dir).gpfa_weights
    if not weights.exists():
        raise NlbkitError(f"{weights}: fitted GPFA baseline missing")
    return GpfaBaseline.load(weights).latents(heldin)


def langevin_latents(run_dir: Path, heldin: np.ndarray, device: str = "cpu") -> np.ndarray:
    """LangevinFlow's [z, v] at every observed bin, (trials, T, Hz + Hv)."""
    from nlbkit.train.latents import run_latents

    run = read_run(run_dir)
    parts = []
    for which in ("z", "v"):  # each call reseeds with the run's seed: the same sampling passes
        lat = run_latents(run_dir, heldin, which=which, device=device)
        bins_per_step = int(round(lat.step_ms / run.bin_ms))
        parts.append(per_bin(lat.values[:, : lat.n_observed], bins_per_step, heldin.shape[1]))
    return np.concatenate(parts, axis=-1)


def network_latents(which: str) -> Callable[[Path, np.ndarray], np.ndarray]:
    """A network's latents `which` at every observed bin (each step's repeated over its bins),
    (trials, T, H)."""

    def latents(run_dir: Path, heldin: np.ndarray, device: str = "cpu") -> np.ndarray:
        from nlbkit.train.latents import run_latents

        lat = run_latents(run_dir, heldin, which=which, device=device)
        bins_per_step = int(round(lat.step_ms / read_run(run_dir).bin_ms))
        return per_bin(lat.values[:, : lat.n_observed], bins_per_step, heldin.shape[1])

    return latents


def per_bin(steps: np.ndarray, bins_per_step: int, n_bins: int) -> np.ndarray:
    """(trials, steps, H) over whole steps that left-pad the bins -> (trials, n_bins, H): each step
    repeated over the bins it spans, the padding dropped."""
    pad = steps.shape[1] * bins_per_step - n_bins
    if not 0 <= pad < bins_per_step:
        raise NlbkitError(f"{steps.shape[1]} steps of {bins_per_step} bins do not cover {n_bins} bins")
    return np.repeat(steps, bins_per_step, axis=1)[:, pad:]


LATENTS: dict[str, Callable[[Path, np.ndarray], np.ndarray]] = {
    "smoothing": smoothing_latents,
    "gpfa": gpfa_latents,
    "langevin": langevin_latents,
    "ndt": network_latents("h"),  # the states the readout reads
    "lfads": network_latents("factors"),  # LFADS's factors, as its readout reads them
}


def run_fewshot(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
    k: int = DEFAULT_K,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    alpha: float = 0.1,
) -> FewShotScore:
    """k-shot co-bps of a run: mean and sd over `repeats` random k-trial subsets of its train trials."""
    run = read_run(run_dir)
    if run.model not in LATENTS:
        raise NlbkitError(f"{run.run_dir}: {run.model} runs have no latents for few-shot co-bps")
    target = run_target(run, data_dir, targets_file)
    fit, eval_heldin = run_trials(run, data_dir)
    if fit.heldin.shape[1:] != eval_heldin.shape[1:]:
        raise NlbkitError(f"{run.run_dir}: train and eval trials differ in bins or held-in neurons")
    latents = LATENTS[run.model](run.run_dir, np.concatenate([fit.heldin, eval_heldin], axis=0))
    train_z, eval_z = latents[: len(fit)], latents[len(fit) :]
    try:
        return fewshot_co_bps(train_z, fit.heldout, eval_z, target["eval_spikes_heldout"],
                              k=k, repeats=repeats, seed=seed, alpha=alpha)
    except ValueError as exc:
        raise NlbkitError(f"{run.run_dir}: few-shot co-bps: {exc}") from None
