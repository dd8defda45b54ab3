"""Condition-averaged smoothed rates (the `psth` target), as nlb_tools' `_make_psth` computes them.

nlb_tools smooths the whole session at 1 ms with a normalised Gaussian of `6 * kern_sd` taps
(`signal.convolve(..., 'same')`, each observed stretch on its own when a unit has gaps), sums
`bin_ms` samples per bin, cuts each condition's trials with the PSTH window, drops trials shorter
than 0.8 of the mean, averages per bin relative to the align time and trims to the shortest
trial. Here the same numbers are computed per trial window: only the spikes within a kernel width
of each window are binned and smoothed.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from nlbkit.nwb import Session, UnitGroup, observed_at
from nlbkit.windows import Windows

_BATCH = 64


def gaussian_kernel(kern_sd_ms: float) -> np.ndarray:
    """nlb_tools' smoothing window at 1 ms: `gaussian(int(6 sd), sd)`, summing to 1."""
    window = signal.windows.gaussian(int(6 * kern_sd_ms), kern_sd_ms, sym=True)
    return window / np.sum(window)


def _dense_counts(group: UnitGroup, lo: np.ndarray, width: int) -> np.ndarray:
    """1 ms counts `(trials, width, units)` for samples `lo[i] + w` (float64)."""
    out = np.zeros((len(lo), width, group.n_units))
    hi = lo + width
    for u, spikes in enumerate(group.spikes):
        a, b = np.searchsorted(spikes, lo), np.searchsorted(spikes, hi)
        counts = b - a
        if counts.sum() == 0:
            continue
        trial = np.repeat(np.arange(len(lo)), counts)
        starts = np.repeat(a - np.cumsum(counts) + counts, counts)
        idx = spikes[np.arange(counts.sum()) + starts]
        np.add.at(out[:, :, u], (trial, idx - lo[trial]), 1.0)
    return out


def _smooth(x: np.ndarray, usable: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same'-mode smoothing of each stretch of `usable` samples on its own; NaN elsewhere."""
    m = len(kernel)
    centre = (m - 1) // 2
    x = np.where(usable[:, :, None], x, 0.0)
    y = signal.fftconvolve(x, kernel[None, :, None], mode="full", axes=1)[:, centre : centre + x.shape[1]]
    gaps = np.diff(usable.astype(np.int8), axis=1) != 0
    for i in np.flatnonzero(gaps.sum(axis=1) > 1):  # a trial window spans several stretches
        edges = np.concatenate([[0], np.flatnonzero(gaps[i]) + 1, [usable.shape[1]]])
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            if usable[i, a]:
                full = signal.fftconvolve(x[i, a:b], kernel[:, None], mode="full", axes=0)
                y[i, a:b] = full[centre : centre + b - a]
    np.maximum(y, 0.0, out=y)  # FFT round-off; the true values are never negative
    y[~usable] = np.nan
    return y


def smoothed_bins(
    session: Session, group: UnitGroup, windows: Windows, length: int, bin_ms: int, kernel: np.ndarray
) -> np.ndarray:
    """Smoothed, resampled spikes `(trials, length, units)` for bins `first_bin[i] + j`."""
    m = len(kernel)
    n = len(windows.first_bin)
    out = np.empty((n, length, group.n_units))
    width = length * bin_ms + 2 * m
    for s in range(0, n, _BATCH):
        first = windows.first_bin[s : s + _BATCH]
        lo = first * bin_ms - m
        samples = lo[:, None] + np.arange(width)
        inside = (samples >= 0) & (samples < session.n_samples)
        usable = inside & observed_at(group.observed, samples)
        y = _smooth(_dense_counts(group, lo, width), usable, kernel)
        # resample: a bin sums its samples (missing ones as 0) and is NaN if its first sample is
        y_sum = np.where(inside[:, :, None], np.nan_to_num(y), 0.0)[:, m : m + length * bin_ms]
        binned = y_sum.reshape(len(first), length, bin_ms, -1).sum(axis=2)
        binned[~usable[:, m : m + length * bin_ms : bin_ms]] = np.nan
        out[s : s + _BATCH] = binned
    return out


def _is_missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values], dtype=bool)
    return np.zeros(len(values), dtype=bool)


def conditions(trials: dict[str, np.ndarray], fields: tuple[str, ...], keep: np.ndarray) -> list[tuple]:
    """Sorted distinct value tuples of `fields` among the kept trials with no missing value."""
    columns = [trials[f] for f in fields]
    ok = keep.copy()
    for col in columns:
        ok &= ~_is_missing(col)
    rows = {tuple(col[i].item() if hasattr(col[i], "item") else col[i] for col in columns)
            for i in np.flatnonzero(ok)}
    return sorted(rows)


def average_by_align(values: np.ndarray, windows: Windows) -> np.ndarray:
    """Mean over trials per bin relative to the align bin (NaN skipped), over the keys present."""
    length = values.shape[1]
    keys = windows.first_bin[:, None] + np.arange(length) - windows.align_bin[:, None]
    present = np.arange(length)[None, :] < windows.n_bins[:, None]
    k_min = keys[present].min()
    slot = keys - k_min
    n_slots = keys[present].max() - k_min + 1
    sums = np.zeros((n_slots, values.shape[2]))
    counts = np.zeros((n_slots, values.shape[2]))
    seen = np.zeros(n_slots, dtype=bool)
    v = values[present]
    np.add.at(sums, slot[present], np.nan_to_num(v))
    np.add.at(counts, slot[present], ~np.isnan(v))
    seen[slot[present]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
    return mean[seen]


def stack_psths(psths: list[np.ndarray], max_len: int, pad: str) -> np.ndarray:
    """nlb_tools' stacking: cut or NaN-pad each condition to `max_len` bins (its own slicing kept)."""
    out = []
    for p in psths:
        if p.shape[0] == max_len:
            out.append(p)
        elif p.shape[0] > max_len:
            out.append(p[:max_len] if pad == "back" else p[max_len:])
        else:
            fill = np.full((max_len - p.shape[0], p.shape[1]), np.nan)
            out.append(np.concatenate([p, fill] if pad == "back" else [fill, p], axis=0))
    return np.stack(out)
