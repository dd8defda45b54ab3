"""Random eval targets and rates in the exact layout of every NLB group, for metric tests.

The shapes, NaN placement and extra keys follow what nlb_tools' `make_eval_target_tensors` makes
for each dataset: dmfc_rsg's front-padded set..go targets, jitter and trial-info behaviour,
area2_bump's decode masks, mc_rtt's missing PSTH and NaN-edged behaviour.
"""

from __future__ import annotations

import numpy as np

from nlbkit.nlb.datasets import BIN_SIZES_MS, DATASET_NAMES, get_spec
from nlbkit.nlb.keys import rate_shapes

N_HELDIN, N_HELDOUT = 9, 4
N_TRAIN, N_EVAL = 30, 24
N_CONDS = 4


def _window_ms(dataset: str) -> int:
    spec = get_spec(dataset)
    return spec.eval_seg_len_ms or spec.eval_window.length_ms


def group_shapes(dataset: str, bin_ms: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the six submission arrays for the random layout of one group."""
    bins = _window_ms(dataset) // bin_ms
    fwd = get_spec(dataset).forward_bins(bin_ms)
    return rate_shapes(N_TRAIN, bins, N_HELDIN, N_HELDOUT, N_EVAL, bins, fwd)


def _counts(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.poisson(rng.gamma(1.0, 0.3, size=shape)).astype(np.float32)


def _cond_idx(rng: np.random.Generator, n_trials: int) -> np.ndarray:
    """Trial indices per condition; the last condition has no trial (nlb_tools skips those)."""
    labels = rng.integers(0, N_CONDS - 1, size=n_trials)
    out = np.empty(N_CONDS, dtype=object)
    for c in range(N_CONDS):
        out[c] = np.flatnonzero(labels == c).astype(np.int32)
    return out


def random_target(dataset: str, bin_ms: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Eval targets of one group, float32 as nlb_tools saves them."""
    spec = get_spec(dataset)
    bins = _window_ms(dataset) // bin_ms
    fwd = spec.forward_bins(bin_ms)
    target = {
        "eval_spikes_heldout": _counts(rng, (N_EVAL, bins, N_HELDOUT)),
        "eval_spikes_heldin_forward": _counts(rng, (N_EVAL, fwd, N_HELDIN)),
        "eval_spikes_heldout_forward": _counts(rng, (N_EVAL, fwd, N_HELDOUT)),
    }
    if dataset == "dmfc_rsg":
        _dmfc_extras(target, bins, bin_ms, rng)
        return target
    target["train_behavior"] = rng.normal(size=(N_TRAIN, bins, 2)).astype(np.float32)
    target["eval_behavior"] = rng.normal(size=(N_EVAL, bins, 2)).astype(np.float32)
    if dataset == "mc_rtt":
        # Behaviour cut short at the session edges, and bins outside the observed intervals.
        target["train_behavior"][0, -3:] = np.nan
        target["eval_behavior"][-1, -2:] = np.nan
        target["eval_spikes_heldout"][2, 5:9, 1] = np.nan
        return target
    if dataset == "area2_bump":
        for prefix, n in (("train", N_TRAIN), ("eval", N_EVAL)):
            bump = rng.random(n) < 0.4
            target[f"{prefix}_decode_mask"] = np.stack([~bump, bump], axis=1)
    target["psth"] = rng.gamma(2.0, 0.1, size=(N_CONDS - 1, bins, N_HELDIN + N_HELDOUT)).astype(np.float32)
    target["psth"] = np.concatenate([target["psth"], np.full((1, bins, N_HELDIN + N_HELDOUT), np.nan,
                                                             dtype=np.float32)])
    target["eval_cond_idx"] = _cond_idx(rng, N_EVAL)
    target["train_cond_idx"] = _cond_idx(rng, N_TRAIN)
    return target


def _dmfc_extras(target: dict, bins: int, bin_ms: int, rng: np.random.Generator) -> None:
    """Front-padded set..go targets, jittered eval trials, trial-info behaviour with outliers."""
    lengths = rng.integers(bins // 3, bins - 2, size=N_EVAL)
    for i, length in enumerate(lengths):
        target["eval_spikes_heldout"][i, : bins - length] = np.nan
    jitter = np.round(rng.uniform(0, 300, size=N_EVAL) / bin_ms).astype(np.int32)
    target["eval_jitter"] = jitter
    cond_idx = _cond_idx(rng, N_EVAL)
    psth = rng.gamma(2.0, 0.1, size=(N_CONDS, bins, N_HELDIN + N_HELDOUT)).astype(np.float32)
    for c, idx in enumerate(cond_idx):
        # The PSTH covers only bins every jittered trial of the condition still has.
        pad = int(jitter[idx].max()) + 3 if len(idx) else bins
        psth[c, :pad] = np.nan
    target["psth"] = psth
    target["eval_cond_idx"] = cond_idx

    def behavior(n: int) -> np.ndarray:
        # Four (is_eye, theta, is_short) conditions in turn, so each has several trials.
        combos = np.array([[0, 0, 0], [0, 180, 1], [1, 0, 1], [1, 180, 0]], dtype=float)
        is_eye, theta, is_short = combos[np.arange(n) % 4].T
        ts = rng.choice([0.48, 0.56, 0.64, 0.8, 0.9, 1.0], n)
        tp = ts + rng.normal(0, 0.05, n)
        out = np.stack([is_eye, theta, is_short, ts, tp], axis=1).astype(np.float32)
        out[rng.random(n) < 0.1] = np.nan  # is_outlier trials
        return out

    target["train_behavior"] = behavior(N_TRAIN)
    target["eval_behavior"] = behavior(N_EVAL)


def random_rates(dataset: str, bin_ms: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Positive float32 rates for every submission key, with a few exact zeros."""
    rates = {
        key: rng.gamma(2.0, 0.15, size=shape).astype(np.float32)
        for key, shape in group_shapes(dataset, bin_ms).items()
    }
    rates["eval_rates_heldout"][0, :2, 0] = 0.0
    return rates


def all_groups() -> list[tuple[str, int]]:
    return [(d, b) for d in DATASET_NAMES for b in BIN_SIZES_MS]


def write_tensors_file(data_dir, dataset: str, bin_ms: int, target: dict, rng: np.random.Generator):
    """A `prepare`-style tensor file whose groups match the random layout (val_target = target)."""
    from nlbkit.nlb.h5io import write_h5_groups
    from nlbkit.paths import tensors_path

    shapes = group_shapes(dataset, bin_ms)
    fwd = get_spec(dataset).forward_bins(bin_ms)
    train = {
        "train_spikes_heldin": _counts(rng, shapes["train_rates_heldin"]),
        "train_spikes_heldout": _counts(rng, shapes["train_rates_heldout"]),
        "train_spikes_heldin_forward": _counts(rng, (N_TRAIN, fwd, N_HELDIN)),
        "train_spikes_heldout_forward": _counts(rng, (N_TRAIN, fwd, N_HELDOUT)),
    }
    groups = {
        "train": train,
        "trainval": train,
        "val": {"eval_spikes_heldin": _counts(rng, shapes["eval_rates_heldin"])},
        "test": {"eval_spikes_heldin": _counts(rng, shapes["eval_rates_heldin"])},
        "val_target": target,
    }
    return write_h5_groups(tensors_path(dataset, bin_ms, data_dir), groups,
                           root_attrs={"dataset": dataset, "bin_ms": bin_ms})


def write_run(runs_root, dataset: str, bin_ms: int, phase: str, model: str, rates: dict,
              tensors=None, created: str = "2026-01-01T00:00:00", tag: str | None = None):
    """A run directory as training leaves it: run.json and rates.h5 (one group)."""
    import json
    from pathlib import Path

    import h5py

    name = f"{dataset}_{bin_ms}ms_{phase}_{model}" + (f"_{tag}" if tag else "")
    run_dir = Path(runs_root) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": dataset, "bin_ms": bin_ms, "phase": phase, "model": model, "seed": 0,
            "tensors": str(tensors) if tensors else None, "created": created}
    (run_dir / "run.json").write_text(json.dumps(meta))
    with h5py.File(run_dir / "rates.h5", "w") as h5:
        group = h5.create_group(get_spec(dataset).group_name(bin_ms))
        group.attrs.update({"dataset": dataset, "bin_ms": bin_ms, "phase": phase})
        for key, value in rates.items():
            group.create_dataset(key, data=np.asarray(value, dtype=np.float32))
    return run_dir
