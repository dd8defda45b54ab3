"""True rates of generated datasets in the windows nlb_tools cuts, for oracle scores.

The windows are those of the tensors (and so of `rates.h5`): train windows of the trials trained
on, eval windows of the val (phase 'val') or test (phase 'test') trials, and the 200 ms after each
eval window. dmfc_rsg's train and val windows are shifted by the jitter nlb_tools draws
(`_prep_jitter`: `np.random.seed(0)`, one uniform draw per trial, rounded to whole bins).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import DatasetSpec, check_bin, get_spec
from nlbkit.nlb.keys import PHASES
from nlbkit.paths import dataset_dir
from nlbkit.synth.latents import LatentTimeline, rates_hz

GROUND_TRUTH_NAME = "ground_truth.h5"


@dataclass(frozen=True)
class GroundTruth:
    timeline: LatentTimeline
    weights: np.ndarray  # (units, 3), units in train-file order
    bias: np.ndarray  # (units,), log Hz
    heldout: np.ndarray  # (units,) bool
    test_shift_ms: np.ndarray  # (test trials,) test-file time minus session time


def load_ground_truth(path: str | os.PathLike) -> GroundTruth:
    path = Path(path)
    if not path.exists():
        raise NlbkitError(f"{path}: no ground truth here; generate the dataset with `nlbkit synth`")
    with h5py.File(path, "r") as f:
        timeline = LatentTimeline(f["epoch_start_ms"][()], f["epoch_len_ms"][()], f["latents"][()])
        arrays = (f[key][()] for key in ("weights", "bias", "heldout", "test_shift_ms"))
        return GroundTruth(timeline, *arrays)


def _trials(path: Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        table = f["intervals/trials"]
        out = {}
        for name in columns:
            values = table[name][()]
            out[name] = values.astype(str) if values.dtype.kind in "OS" else values
        return out


def nlb_jitter_ms(tp_ms: np.ndarray, bin_ms: int, spec: DatasetSpec) -> np.ndarray:
    """nlb_tools' jitter for the given trials (in mask order), ms, a whole number of bins."""
    jit = spec.jitter
    high = np.clip(jit.max_ms - tp_ms, 0.0, jit.clip_ms)
    high = np.floor((high / bin_ms).round(4))
    draws = np.random.RandomState(0).random_sample(len(tp_ms))
    return (draws * high).round() * bin_ms


def _window_rates(gt: GroundTruth, start_ms: np.ndarray, n_bins: int, bin_ms: int, chunk: int = 64):
    """Expected spike counts per bin, (windows, n_bins, units), of windows starting at `start_ms`."""
    n_units = len(gt.bias)
    out = np.empty((len(start_ms), n_bins, n_units), dtype=np.float32)
    offsets = np.arange(n_bins * bin_ms)
    for lo in range(0, len(start_ms), chunk):
        ms = start_ms[lo : lo + chunk, None] + offsets[None, :]
        lam = rates_hz(gt.timeline.at(ms), gt.weights, gt.bias) / 1000.0
        out[lo : lo + chunk] = lam.reshape(len(ms), n_bins, bin_ms, n_units).sum(axis=2)
    return out


def _grid_start(ms: np.ndarray, bin_ms: int) -> np.ndarray:
    """First bin edge at or after each window start: where nlb_tools' resampled slice begins."""
    return (np.ceil(ms / bin_ms) * bin_ms).astype(np.int64)


def oracle_rates(
    dataset: str,
    bin_ms: int,
    data_dir: str | os.PathLike | None = None,
    phase: str = "val",
    jitter: bool = True,
) -> dict[str, np.ndarray]:
    """True rates (spikes per bin, float32) under the `rates.h5` key names.

    phase 'val': train_* for the `train` trials, eval_* for the `val` trials; phase 'test':
    train_* for `train` + `val`, eval_* for the test file's trials. Shapes are those of the
    matching tensors: (trials, bins, held-in or held-out units). `jitter=False` leaves out
    dmfc_rsg's jitter (for checks only: nlb_tools always applies it).
    """
    spec = get_spec(dataset)
    check_bin(bin_ms)
    if phase not in PHASES:
        raise NlbkitError(f"unknown phase '{phase}'; use one of {', '.join(PHASES)}")
    folder = dataset_dir(dataset, data_dir)
    gt = load_ground_truth(folder / GROUND_TRUTH_NAME)
    window = spec.train_window
    r0, r1 = window.align_range
    align = window.align_field
    extra = ("tp",) if spec.jitter else ()
    train = _trials(folder / spec.train_asset_name, ("split", align, *extra))
    train_mask = train["split"] == "train" if phase == "val" else np.isin(train["split"], ["train", "val"])

    def starts(trials: dict, mask: np.ndarray, jittered: bool) -> np.ndarray:
        onset = np.round(trials[align][mask] * 1000.0).astype(np.int64)
        if jittered and jitter and spec.jitter:
            onset = onset + nlb_jitter_ms(trials["tp"][mask], bin_ms, spec).astype(np.int64)
        return _grid_start(onset + r0, bin_ms)

    train_start = starts(train, train_mask, jittered=True)
    if phase == "val":
        eval_start = starts(train, train["split"] == "val", jittered=True)
    else:
        test = _trials(folder / spec.test_asset_name, ("split", align))
        eval_start = starts(test, np.ones(len(test["split"]), bool), jittered=False) - gt.test_shift_ms
    n_bins = (r1 - r0) // bin_ms
    n_fp = spec.forward_bins(bin_ms)
    out = {}
    for prefix, start in (("train", train_start), ("eval", eval_start)):
        rates = _window_rates(gt, start, n_bins, bin_ms)
        out[f"{prefix}_rates_heldin"] = rates[..., ~gt.heldout]
        out[f"{prefix}_rates_heldout"] = rates[..., gt.heldout]
    forward = _window_rates(gt, eval_start + (r1 - r0), n_fp, bin_ms)
    out["eval_rates_heldin_forward"] = forward[..., ~gt.heldout]
    out["eval_rates_heldout_forward"] = forward[..., gt.heldout]
    return out
