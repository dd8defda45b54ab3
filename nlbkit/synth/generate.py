"""Generated NLB datasets: spikes from a Lorenz-driven Poisson model, in each dataset's NWB layout.

`write_dataset` lays out a session (`layouts`), draws latents, rates and spikes
(`latents`), and writes the train NWB (train/val trials, every unit, behaviour), the test
NWB (test trials re-timed back to back, held-in units only), `eval_data_test.h5` (the test trials'
targets at 5 and 20 ms, `test_targets`) and `ground_truth.h5`, from which `oracle_rates`
(`oracle`) recomputes the true rates of any window.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.fetch.test_targets import TARGETS_FILE
from nlbkit.nlb.datasets import BIN_SIZES_MS, DATASET_NAMES, get_spec
from nlbkit.nlb.marker import GENERATED_STAMP, H5_ATTR, check_replaceable, write_marker
from nlbkit.paths import atomic_path, dataset_dir
from nlbkit.synth.latents import (
    TICKS_PER_MS,
    LatentTimeline,
    integrate,
    session_spikes,
    taper,
    ticks_to_seconds,
)
from nlbkit.synth.layouts import SCALES, Layout, make_layout
from nlbkit.synth.nwb import (
    behavior_series,
    complement,
    in_spans,
    merge_spans,
    subtract_spans,
    trials_table,
    units_table,
    write_nwb,
)
from nlbkit.synth.oracle import GROUND_TRUTH_NAME, load_ground_truth, oracle_rates
from nlbkit.synth.test_targets import write_test_targets

__all__ = ["GROUND_TRUTH_NAME", "SCALES", "load_ground_truth", "oracle_rates", "write_dataset", "write_all"]

TEST_SPACING_MS = 100  # test trials sit back to back in the test file, this far apart


def write_dataset(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    scale: str = "small",
    fraction: float = 1.0,
    force: bool = False,
) -> tuple[Path, Path]:
    """Generate `dataset` into `<data_dir>/<dataset>/` under the real NLB file names.

    Writes the train NWB, the test NWB, `eval_data_test.h5` (the test trials' targets) and
    `ground_truth.h5`, each stamped as generated, and lists
    them in the folder's `.nlbkit-generated` marker; returns (train path, test path).
    The same (dataset, seed, scale, fraction) always gives the same files' contents.
    `fraction` (full scale only) keeps that share of the trials, for benchmarks by size.
    A file already there that `synth` did not write (real data) is an error unless `force`.
    """
    spec = get_spec(dataset)
    out_dir = dataset_dir(dataset, data_dir)
    names = (spec.train_asset_name, spec.test_asset_name, GROUND_TRUTH_NAME, TARGETS_FILE)
    if not force:
        check_replaceable(out_dir, names)
    # Listed before writing: an interrupted run leaves stamped files the next run may replace.
    write_marker(out_dir, names, seed=seed, scale=scale)
    if scale not in SCALES:
        raise NlbkitError(f"unknown scale '{scale}'; use one of {', '.join(SCALES)}")
    if fraction != 1.0:
        if scale != "full" or not 0.0 < fraction < 1.0:
            raise NlbkitError("a trial fraction in (0, 1) needs --scale full")
        counts = tuple(max(8, round(c * fraction)) for c in spec.typical_trials)
        spec = dataclasses.replace(spec, typical_trials=counts)
    rng = np.random.default_rng([seed, DATASET_NAMES.index(dataset)])
    layout = make_layout(spec, scale, rng)
    timeline = _timeline(layout)
    weights, bias, heldout = _units(layout, dataset, rng)
    unit, ticks = session_spikes(timeline, weights, bias, layout.session_ms, rng)
    gaps = _train_gaps(layout, rng)
    obs = complement(gaps, 0.0, layout.session_ms / 1000.0)
    test_path, shifts = _write_test(spec, layout, unit, ticks, heldout, out_dir, seed, rng)
    times = ticks_to_seconds(ticks)
    del ticks
    behavior = _behavior(layout, timeline, rng)
    whole = np.array([[0.0, layout.session_ms / 1000.0]])
    every = np.bincount(unit, minlength=len(heldout))

    def write_session(path: Path) -> Path:  # every trial and unit: the test trials' held-out spikes
        return _write_nwb(spec, layout, np.ones(len(layout.split), bool), times, every, heldout, whole,
                          behavior, path, f"nlbkit-synth-{spec.name}-seed{seed}-session", "whole session")

    write_test_targets(out_dir / TARGETS_FILE, spec, write_session)
    keep = in_spans(times, obs)
    times = times[keep]
    counts = np.bincount(unit[keep], minlength=len(heldout))
    del unit, keep
    train_path = _write_nwb(spec, layout, layout.split != "test", times, counts, heldout, obs, behavior,
                            out_dir / spec.train_asset_name, f"nlbkit-synth-{spec.name}-seed{seed}-train",
                            "train and val trials")
    _write_ground_truth(out_dir / GROUND_TRUTH_NAME, dataset, seed, scale, layout, timeline,
                        weights, bias, heldout, obs, shifts)
    return train_path, test_path


def write_all(
    data_dir: str | os.PathLike | None = None, seed: int = 0, scale: str = "small"
) -> list[tuple[Path, Path]]:
    """Generate all seven datasets; returns their (train, test) paths in registry order."""
    return [write_dataset(name, data_dir, seed=seed, scale=scale) for name in DATASET_NAMES]


def _timeline(layout: Layout) -> LatentTimeline:
    lengths = layout.epoch_len_ms
    paths = taper(integrate(layout.epoch_init, int(lengths.max())), lengths, layout.taper_ms)
    keep = np.arange(paths.shape[1])[None, :] < lengths[:, None]
    return LatentTimeline(layout.epoch_start_ms, lengths, paths[keep])


def _units(layout: Layout, dataset: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Read-out weights (units, 3), biases (units,) in log Hz, and the held-out flags, in file order."""
    n = layout.n_heldin + layout.n_heldout
    weights = rng.normal(0.0, 1.0, size=(n, 3)) * rng.uniform(0.4, 0.9, size=(n, 1))
    bias = np.log(rng.uniform(4.0, 25.0, size=n))
    heldout = np.arange(n) >= layout.n_heldin
    if get_spec(dataset).heldout_interleaved:
        heldout = rng.permutation(heldout)
    return weights, bias, heldout


def _train_gaps(layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """Unobserved spans of the train file (s): the test trials' time and a few inter-trial gaps.

    Edges fall off the millisecond grid; spans every train/val window needs stay observed.
    """
    split = layout.split
    starts = layout.trials["start_time"][split == "test"] * 1000.0
    stops = layout.trials["stop_time"][split == "test"] * 1000.0
    n = len(starts)
    slots = np.stack([starts + rng.uniform(0.1, 0.9, n), stops - rng.uniform(0.1, 0.9, n)], axis=1)
    gaps = subtract_spans(np.concatenate([slots, layout.free_gap_ms]), layout.required_ms.astype(float))
    gaps = gaps[gaps[:, 1] - gaps[:, 0] > 1.0]
    return np.round(merge_spans(gaps) / 1000.0, 6)


def _write_nwb(spec, layout, rows, times, counts, heldout, obs, behavior, path, identifier, what) -> Path:
    """An NWB of every unit in the train file's layout, with the trials `rows`: spike times (s,
    sorted by unit then time) with per-unit counts; `behavior` as `_behavior` gives it."""
    units = units_table(np.arange(len(heldout)), heldout, times, counts, obs)
    columns = {c: layout.trials[c][rows] for c in layout.train_columns}
    trials = trials_table(columns, layout.column_descriptions)
    return write_nwb(
        path,
        identifier=identifier,
        description=f"{GENERATED_STAMP} in the layout of the NLB dataset {spec.name} ({what}).",
        session_id=spec.name,
        subject=spec.subject,
        units=units,
        trials=trials,
        behavior=[behavior_series(*args) for args in behavior],
    )


def _write_test(spec, layout, unit, ticks, heldout, out_dir, seed, rng) -> tuple[Path, np.ndarray]:
    """Test trials, back to back from time 0; returns the path and each trial's shift (ms)."""
    windows = layout.test_window_ms
    length = int(windows[0, 1] - windows[0, 0])
    new_start = np.arange(len(windows), dtype=np.int64) * (length + TEST_SPACING_MS)
    # Each trial keeps its phase on the grid of every bin size (binning starts at the session's
    # 0 s): its test-file bins hold the spikes of its bins in the session, where the test
    # targets are cut (`test_targets`).
    new_start += (windows[:, 0].astype(np.int64) - new_start) % math.lcm(*BIN_SIZES_MS)
    shifts = new_start - windows[:, 0]
    # Some trials lose a few (fractional) ms of observation at one end: NaN bins there.
    obs = np.stack([new_start, new_start + length], axis=1) / 1000.0
    n_cut = max(1, round(0.08 * len(obs)))
    # Never the last trial: nlb_tools sizes the session by the last observed time, and would
    # cut that trial's window short (its fallback to the trial end compares ms with seconds).
    order = rng.permutation(len(obs) - 1)
    obs[order[:n_cut], 0] += rng.uniform(0.0005, 0.025, size=n_cut)
    # End cuts of 20-45 ms reach the first millisecond of the last 20 ms bin too.
    obs[order[n_cut : 2 * n_cut], 1] -= rng.uniform(0.0005, 0.045, size=n_cut)
    obs[order[2 * n_cut], 1] -= rng.uniform(0.021, 0.045)
    obs = np.round(obs, 6)
    heldin_idx = np.flatnonzero(~heldout)
    sel = np.isin(unit, heldin_idx)
    by_time = np.argsort(ticks[sel], kind="stable")
    u, t = unit[sel][by_time], ticks[sel][by_time]
    lo = np.searchsorted(t, windows[:, 0] * TICKS_PER_MS)
    hi = np.searchsorted(t, windows[:, 1] * TICKS_PER_MS)
    take = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
    trial_of = np.repeat(np.arange(len(windows)), hi - lo)
    u, t = u[take], t[take] + shifts[trial_of] * TICKS_PER_MS
    times = ticks_to_seconds(t)
    keep = in_spans(times, obs)
    u, times = u[keep], times[keep]
    order = np.lexsort((times, u))
    u, times = u[order], times[order]
    counts = np.bincount(np.searchsorted(heldin_idx, u), minlength=len(heldin_idx))
    rows = layout.split == "test"
    columns = {}
    for name in layout.test_columns:
        values = layout.trials[name][rows]
        if name.endswith("_time"):
            values = np.round(values + shifts / 1000.0, 3)
        columns[name] = values
    columns["start_time"] = new_start / 1000.0
    columns["stop_time"] = (new_start + length) / 1000.0
    # Each unit's obs_intervals hold one span per trial, as in the NLB test files.
    units = units_table(heldin_idx, np.zeros(len(heldin_idx), bool), times, counts, obs)
    path = write_nwb(
        out_dir / spec.test_asset_name,
        identifier=f"nlbkit-synth-{spec.name}-seed{seed}-test",
        description=f"{GENERATED_STAMP} in the layout of the NLB dataset {spec.name} (test trials).",
        session_id=spec.name,
        subject=spec.subject,
        units=units,
        trials=trials_table(columns, layout.column_descriptions),
    )
    return path, shifts


def _behavior(layout: Layout, timeline: LatentTimeline, rng: np.random.Generator) -> list[tuple]:
    """The 1 kHz behaviour series, as `behavior_series` arguments: velocities read out from the
    latents, positions integrated."""
    if not layout.behavior:
        return []
    lo, hi = layout.behavior_span_ms or (0, layout.session_ms)
    z = timeline.dense(lo, hi)
    velocities: dict[str, np.ndarray] = {}
    out = []
    for series in layout.behavior:
        ncol = len(series.columns)
        if series.kind == "velocity":
            data = _readout(z, ncol, rng)
            velocities[series.name] = data
        elif series.kind == "position":
            if series.source not in velocities:
                velocities[series.source] = _readout(z, 2, rng)
            vel = velocities[series.source]
            data = np.cumsum(vel[:, np.arange(ncol) % vel.shape[1]], axis=0) / 1000.0
            data += rng.normal(0.0, 1.0, size=ncol)
        else:  # targets: a new random position every second or so
            steps = rng.normal(0.0, 50.0, size=((hi - lo) // 1000 + 1, ncol))
            data = np.repeat(steps, 1000, axis=0)[: hi - lo]
        out.append((series.name, data, series.columns, series.unit, series.description, lo))
    return out


def _readout(z: np.ndarray, ncol: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.normal(0.0, 40.0, size=(z.shape[1], ncol)).astype(np.float32)
    data = (z @ weights).astype(np.float64)
    data += 2.0 * rng.standard_normal(size=data.shape, dtype=np.float32)
    return data


def _write_ground_truth(path, dataset, seed, scale, layout, timeline, weights, bias, heldout, obs, shifts):
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs[H5_ATTR] = GENERATED_STAMP
        f.attrs.update(dataset=dataset, seed=seed, scale=scale, session_ms=layout.session_ms,
                       rate_model="rate_hz = min(exp(latents @ weights.T + bias), 400); "
                       "latents are zero outside the epochs")
        f["epoch_start_ms"] = timeline.starts
        f["epoch_len_ms"] = timeline.lengths
        f.create_dataset("latents", data=timeline.latents, compression="gzip", shuffle=True)
        f["weights"] = weights
        f["bias"] = bias
        f["heldout"] = heldout
        f["train_obs_intervals"] = obs
        f["test_shift_ms"] = shifts
