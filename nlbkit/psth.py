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
from scipy.fft import irfft, next_fast_len, rfft

from nlbkit.nwb import Session, UnitGroup, observed_at
from nlbkit.windows import Windows

_BATCH = 64


def gaussian_kernel(kern_sd_ms: float) -> np.ndarray:
    """nlb_tools' smoothing window at 1 ms: `gaussian(int(6 sd), sd)`, summing to 1."""
    window = signal.windows.gaussian(int(6 * kern_sd_ms), kern_sd_ms, sym=True)
    return window / np.sum(window)


def _dense_counts(group: UnitGroup, lo: np.ndarray, width: int, padded: int) -> np.ndarray:
    """1 ms counts `(trials, units, padded)` for samples `lo[i] + w`, `w < width`, zeros after."""
    n, n_units = len(lo), group.n_units
    flat = []
    for u, spikes in enumerate(group.spikes):
        a, b = np.searchsorted(spikes, lo), np.searchsorted(spikes, lo + width)
        counts = b - a
        if counts.sum() == 0:
            continue
        trial = np.repeat(np.arange(n), counts)
        starts = np.repeat(a - np.cumsum(counts) + counts, counts)
        idx = spikes[np.arange(counts.sum()) + starts].astype(np.int64)
        flat.append((trial * n_units + u) * padded + idx - lo[trial])
    size = n * n_units * padded
    total = np.bincount(np.concatenate(flat), minlength=size) if flat else np.zeros(size)
    return total.astype(np.float64).reshape(n, n_units, padded)


class _Smoother:
    """'same'-mode convolution with the kernel, output only for the `span` samples of a window.

    Input rows hold `span + len(kernel) - 1` samples starting `len(kernel) - 1 - centre` before
    the window; a real FFT of at least that length gives the window's outputs without wrap-around.
    """

    def __init__(self, kernel: np.ndarray, span: int):
        self.m = len(kernel)
        self.left = self.m - 1 - (self.m - 1) // 2
        self.span = span
        self.width = span + self.m - 1
        self.nfft = next_fast_len(self.width, real=True)
        self.kernel_f = rfft(kernel, self.nfft)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        spectrum = rfft(x, self.nfft, axis=-1)
        spectrum *= self.kernel_f
        y = irfft(spectrum, self.nfft, axis=-1)
        return y[..., self.m - 1 : self.m - 1 + self.span]


def _smooth(x: np.ndarray, usable: np.ndarray, smoother: _Smoother) -> np.ndarray:
    """Smoothed window samples `(trials, units, span)`; each observed stretch on its own; NaN elsewhere.

    Unobserved samples hold no spikes, so one convolution is exact unless a row holds two
    stretches (a gap shorter than the kernel): those rows are redone stretch by stretch.
    """
    y = smoother(x)
    starts = np.diff(usable.astype(np.int8), axis=1, prepend=0) == 1
    for i in np.flatnonzero(starts.sum(axis=1) > 1):
        run_id = np.cumsum(starts[i]) * usable[i]
        y[i] = 0.0
        for run in range(1, run_id.max() + 1):
            own = run_id == run
            masked = x[i].copy()
            masked[:, : smoother.width] *= own  # samples past `width` are zero padding already
            part = smoother(masked)
            y[i] = np.where(own[smoother.left : smoother.left + smoother.span], part, y[i])
    np.maximum(y, 0.0, out=y)  # FFT round-off; the true values are never negative
    return y


def smoothed_bins(
    session: Session, group: UnitGroup, windows: Windows, length: int, bin_ms: int, kernel: np.ndarray
) -> np.ndarray:
    """Smoothed, resampled spikes `(trials, length, units)` for bins `first_bin[i] + j`."""
    smoother = _Smoother(kernel, length * bin_ms)
    n = len(windows.first_bin)
    out = np.empty((n, length, group.n_units))
    window = slice(smoother.left, smoother.left + smoother.span)
    for s in range(0, n, _BATCH):
        first = windows.first_bin[s : s + _BATCH]
        lo = first * bin_ms - smoother.left
        samples = lo[:, None] + np.arange(smoother.width)
        inside = (samples >= 0) & (samples < session.n_samples)
        usable = inside & observed_at(group.observed, samples)
        x = _dense_counts(group, lo, smoother.width, smoother.nfft)
        y = _smooth(x, usable, smoother)
        # resample: a bin sums its samples (unobserved or past the session: 0), NaN if its first is
        y *= usable[:, None, window]
        binned = y.reshape(len(first), group.n_units, length, bin_ms).sum(axis=3)
        binned[np.broadcast_to(~usable[:, None, window][..., ::bin_ms], binned.shape)] = np.nan
        out[s : s + _BATCH] = binned.transpose(0, 2, 1)
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
    for i in range(len(values)):  # a trial's bins take consecutive slots
        k, rows = slot[i, 0], values[i, : windows.n_bins[i]]
        ok = ~np.isnan(rows)
        sums[k : k + len(rows)] += np.where(ok, rows, 0.0)
        counts[k : k + len(rows)] += ok
        seen[k : k + len(rows)] = True
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
