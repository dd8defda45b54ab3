"""Condition-averaged smoothed rates (the `psth` target), as nlb_tools' `_make_psth` computes them.

nlb_tools smooths the whole session at 1 ms with a normalised Gaussian of `6 * kern_sd` taps
(`signal.convolve(..., 'same')`, each observed stretch on its own when a unit has gaps), sums
`bin_ms` samples per bin, cuts each condition's trials with the PSTH window, drops trials shorter
than 0.8 of the mean, averages per bin relative to the align time and trims to the shortest
trial. Here the same numbers are computed from the spikes within a kernel width of each window:

- a window observed over all of that reach (the usual case) needs no per-trial smoothing: the
  binned, smoothed values are one linear map of its 1 ms spike counts, so the spikes of all
  trials of a condition with the same window shape are counted together and mapped once;
- the other windows are smoothed one by one at 1 ms (FFT), each observed stretch on its own.
"""

from __future__ import annotations

import functools

import numpy as np

from nlbkit.prepare.nwb import Session, UnitGroup, observed_at
from nlbkit.prepare.windows import Windows

_CELLS = 1 << 21  # 1 ms samples (trials x units x FFT length) smoothed at once


def gaussian_kernel(kern_sd_ms: float) -> np.ndarray:
    """nlb_tools' smoothing window at 1 ms: `scipy.signal.windows.gaussian(int(6 sd), sd)`, summing to 1."""
    m = int(6 * kern_sd_ms)
    if m <= 1:
        return np.ones(m)
    n = np.arange(0, m, dtype=np.float64) - (m - 1.0) / 2.0
    window = np.exp(-(n**2) / (2 * kern_sd_ms * kern_sd_ms))
    return window / np.sum(window)


def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (a quick length for a real FFT)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _dense_counts(group: UnitGroup, lo: np.ndarray, width: int, padded: int) -> np.ndarray:
    """1 ms counts `(trials, units, padded)` for samples `lo[i] + w`, `w < width`, zeros after."""
    n, n_units = len(lo), group.n_units
    window, unit, offset = group.gather(lo, width)
    flat = (window * n_units + unit) * padded + offset
    return np.bincount(flat, minlength=n * n_units * padded).astype(np.float64).reshape(n, n_units, padded)


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
        self.nfft = _fast_len(self.width)
        self.kernel_f = np.fft.rfft(kernel, self.nfft)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(x, self.nfft, axis=-1)
        spectrum *= self.kernel_f
        y = np.fft.irfft(spectrum, self.nfft, axis=-1)
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


def _smoothed_chunk(session: Session, group: UnitGroup, first: np.ndarray, smoother: _Smoother,
                    length: int, bin_ms: int) -> np.ndarray:
    """`smoothed_bins` of a few windows: 1 ms FFT smoothing, masked where unobserved."""
    lo = first * bin_ms - smoother.left
    window = slice(smoother.left, smoother.left + smoother.span)
    samples = lo[:, None] + np.arange(smoother.width)
    inside = (samples >= 0) & (samples < session.n_samples)
    usable = inside & observed_at(group.observed, samples)
    x = _dense_counts(group, lo, smoother.width, smoother.nfft)
    y = _smooth(x, usable, smoother)
    # resample: a bin sums its samples (unobserved or past the session: 0), NaN if its first is
    y *= usable[:, None, window]
    binned = y.reshape(len(first), group.n_units, length, bin_ms).sum(axis=3)
    binned[np.broadcast_to(~usable[:, None, window][..., ::bin_ms], binned.shape)] = np.nan
    return binned.transpose(0, 2, 1)


def smoothed_bins(
    session: Session, group: UnitGroup, windows: Windows, length: int, bin_ms: int, kernel: np.ndarray
) -> np.ndarray:
    """Smoothed, resampled spikes `(trials, length, units)` for bins `first_bin[i] + j` (NaN where
    a bin's first sample is unobserved)."""
    smoother = _Smoother(kernel, length * bin_ms)
    first_bin = windows.first_bin.astype(np.int64)
    out = np.empty((len(first_bin), length, group.n_units))
    step = max(1, _CELLS // max(1, group.n_units * smoother.nfft))
    for s in range(0, len(first_bin), step):
        first = first_bin[s : s + step]
        out[s : s + step] = _smoothed_chunk(session, group, first, smoother, length, bin_ms)
    return out


def condition_mean(
    session: Session, groups: list[UnitGroup], windows: Windows, bin_ms: int, kernel: np.ndarray
) -> np.ndarray:
    """Mean smoothed, resampled spikes of a condition's trials per bin relative to the align bin.

    As nlb_tools averages: bin `j` of trial `i` has the key `first_bin[i] + j - align_bin[i]`;
    each key's mean skips NaN; the result has a row per key any trial covers (in key order) and
    the units of all `groups` side by side: `(keys, units)`.
    """
    key_lo = (windows.first_bin - windows.align_bin).astype(np.int64)
    lengths = windows.n_bins.astype(np.int64)
    k_min = int(key_lo.min())
    n_keys = int((key_lo + lengths).max()) - k_min
    n_units = sum(g.n_units for g in groups)
    sums, counts = np.zeros((n_keys, n_units)), np.zeros((n_keys, n_units))
    seen = np.zeros(n_keys, dtype=bool)
    for k, n in zip(key_lo - k_min, lengths, strict=True):
        seen[k : k + n] = True
    left = len(kernel) - 1 - (len(kernel) - 1) // 2
    lo = windows.first_bin.astype(np.int64) * bin_ms - left
    summed: dict[int, list] = {}  # window length -> [(spike counts, first key, columns)]
    col = 0
    for group in groups:
        cols = slice(col, col + group.n_units)
        full = _fully_observed(group.observed, lo, lo + lengths * bin_ms + len(kernel) - 1, session.n_samples)
        shapes = np.stack([key_lo, lengths], axis=1)[full]
        for k, n in np.unique(shapes, axis=0):  # trials whose windows cover the same keys
            rows = np.flatnonzero(full & (key_lo == k) & (lengths == n))
            counts_1ms = _reach_counts(group, lo[rows], int(n) * bin_ms + len(kernel) - 1)
            summed.setdefault(int(n), []).append((counts_1ms, int(k) - k_min, cols))
            counts[k - k_min : k - k_min + n, cols] += len(rows)
        partial = np.flatnonzero(~full)
        if len(partial):
            sub = Windows(windows.rows[partial], windows.first_bin[partial], lengths[partial],
                          windows.align_bin[partial])
            values = smoothed_bins(session, group, sub, int(lengths[partial].max()), bin_ms, kernel)
            for i, row in enumerate(partial):
                k, v = key_lo[row] - k_min, values[i, : lengths[row]]
                ok = ~np.isnan(v)
                sums[k : k + len(v), cols] += np.where(ok, v, 0.0)
                counts[k : k + len(v), cols] += ok
        col += group.n_units
    for n, items in summed.items():  # one product per window length, all shapes and groups at once
        binned = _smooth_and_bin(np.hstack([c for c, _, _ in items]), kernel, bin_ms, n)
        at = 0
        for c, k, cols in items:
            sums[k : k + n, cols] += binned[:, at : at + c.shape[1]]
            at += c.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
    return mean[seen]


def _reach_counts(group: UnitGroup, lo: np.ndarray, width: int) -> np.ndarray:
    """1 ms spike counts `(width, units)` summed over windows, at samples `lo[i] + offset`."""
    _, unit, offset = group.gather(lo, width)
    counts = np.bincount(offset * group.n_units + unit, minlength=width * group.n_units)
    return counts.reshape(width, group.n_units).astype(np.float64)


def _smooth_and_bin(counts: np.ndarray, kernel: np.ndarray, bin_ms: int, n_bins: int) -> np.ndarray:
    """`(n_bins, columns)`: smoothed ('same' mode) and binned values of the window whose reach
    (the window and `m - 1` samples around it, `m - 1 - (m - 1) // 2` before) holds `counts`.

    A banded matrix product: bin `j` gets the kernel summed over `j * bin_ms + r + m - 1 - o`,
    `r < bin_ms`, from a spike at reach offset `o`; each block of bins reads only the offsets its
    kernel reaches.
    """
    out = np.empty((n_bins, counts.shape[1]))
    for rows, offsets, block in _bin_matrix(kernel.tobytes(), bin_ms, n_bins):
        np.matmul(block, counts[offsets], out=out[rows])
    return out


@functools.lru_cache(maxsize=32)
def _bin_matrix(kernel_bytes: bytes, bin_ms: int, n_bins: int) -> list[tuple[slice, slice, np.ndarray]]:
    """Blocks `(bins, offsets, matrix)` of the map from reach offsets to smoothed, binned values."""
    kernel = np.frombuffer(kernel_bytes, dtype=np.float64)
    m = len(kernel)
    box = np.convolve(kernel, np.ones(bin_ms))  # box[a + bin_ms - 1] = kernel[a : a + bin_ms].sum()
    step = max(4, (m + bin_ms) // (2 * bin_ms))  # bins per block: about half the kernel's reach
    blocks = []
    for j0 in range(0, n_bins, step):
        j1 = min(n_bins, j0 + step)
        o0, o1 = j0 * bin_ms, (j1 - 1) * bin_ms + m + bin_ms - 1  # offsets reaching these bins
        idx = (np.arange(j0, j1) * bin_ms)[:, None] + (m + bin_ms - 2) - np.arange(o0, o1)[None, :]
        inside = (idx >= 0) & (idx < len(box))
        matrix = np.where(inside, box[np.clip(idx, 0, len(box) - 1)], 0.0)
        blocks.append((slice(j0, j1), slice(o0, o1), matrix))
    return blocks


def _fully_observed(observed: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_samples: int) -> np.ndarray:
    """Whether samples `[lo[i], hi[i])` all lie in the session and in one observed range."""
    if len(observed) == 0:
        return np.zeros(len(lo), dtype=bool)
    r = np.searchsorted(observed[:, 0], lo, side="right") - 1
    inside = (r >= 0) & (hi <= observed[np.maximum(r, 0), 1])
    return inside & (lo >= 0) & (hi <= n_samples)


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
