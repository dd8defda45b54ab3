"""Condition-averaged smoothed rates (the `psth` target), as nlb_tools' `_make_psth` computes them.

nlb_tools smooths the whole session at 1 ms with a normalised Gaussian of `6 * kern_sd` taps
(`signal.convolve(..., 'same')`, each observed stretch on its own when a unit has gaps), sums
`bin_ms` samples per bin, cuts each condition's trials with the PSTH window, drops trials shorter
than 0.8 of the mean, averages per bin relative to the align time and trims to the shortest
trial. Here the same numbers are computed per trial window: only the spikes within a kernel width
of each window are binned and smoothed.
"""

from __future__ import annotations

import functools

import numpy as np

from nlbkit.nwb import Session, UnitGroup, observed_at
from nlbkit.windows import Windows

_CELLS = 1 << 21  # 1 ms samples (trials x units x FFT length) smoothed at once
_PAIRS = 1 << 21  # (spike, bin) contributions added at once


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


def _smoothed_partial(session: Session, group: UnitGroup, first: np.ndarray, smoother: _Smoother,
                      length: int, bin_ms: int) -> np.ndarray:
    """`smoothed_bins` of windows that touch unobserved samples: 1 ms FFT smoothing, masked."""
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


@functools.lru_cache(maxsize=8)
def _bin_weights(kernel: tuple[float, ...], bin_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """What one spike adds to nearby bins once smoothed ('same' mode) and summed per bin.

    Returns `(back, table)`: a spike `p` samples after the start of its bin adds `table[p, k]` to
    the bin `back[k]` bins before its own (negative: after). Sample `T` gets `kernel[T - S + c]`
    from a spike in sample `S`, `c = (len(kernel) - 1) // 2`.
    """
    kernel = np.array(kernel)
    m = len(kernel)
    c = (m - 1) // 2
    back = np.arange(-((m - 1 - c + bin_ms - 1) // bin_ms), (c + bin_ms - 1) // bin_ms + 1)
    table = np.zeros((bin_ms, len(back)))
    for p in range(bin_ms):
        for k, t in enumerate(back):
            d = c - p - t * bin_ms  # kernel index of the bin's first sample
            a, b = max(d, 0), min(d + bin_ms, m)
            if b > a:
                table[p, k] = kernel[a:b].sum()
    return back, table


def _smoothed_full(group: UnitGroup, first: np.ndarray, smoother: _Smoother, length: int, bin_ms: int,
                   weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`smoothed_bins` of windows whose every sample within a kernel width is observed.

    Then smoothing and binning are one linear map of the spikes: each spike adds a row of `table`
    to the bins its kernel reaches, so the work grows with the spikes, not with the samples.
    Bins reached outside the window land in margins that are cut off, so no pair is masked.
    """
    back, table = weights
    n, n_units = len(first), group.n_units
    # bins (from the window start) the spikes of the reach fall in, and those they reach
    lowest = -((smoother.left + bin_ms - 1) // bin_ms)
    highest = (smoother.width - 1 - smoother.left) // bin_ms
    before = int(back.max()) - lowest
    padded = before + max(length, highest - int(back.min()) + 1)
    window, unit, offset = group.gather(first * bin_ms - smoother.left, smoother.width)
    # the spike's bin (from the window start, shifted by the margin) and its sample within it
    holding, phase = np.divmod(offset - smoother.left, bin_ms)
    spike_cell = ((window * padded + holding + before) * n_units + unit).astype(np.int64)
    flat = spike_cell[:, None] - back[None, :] * n_units
    values = np.bincount(flat.ravel(), weights=table[phase].ravel(), minlength=n * padded * n_units)
    return values.reshape(n, padded, n_units)[:, before : before + length]


def smoothed_bins(
    session: Session, group: UnitGroup, windows: Windows, length: int, bin_ms: int, kernel: np.ndarray
) -> np.ndarray:
    """Smoothed, resampled spikes `(trials, length, units)` for bins `first_bin[i] + j`."""
    smoother = _Smoother(kernel, length * bin_ms)
    weights = _bin_weights(tuple(kernel), bin_ms)
    first_bin = windows.first_bin.astype(np.int64)
    lo = first_bin * bin_ms - smoother.left
    full = _fully_observed(group.observed, lo, lo + smoother.width, session.n_samples)
    out = np.empty((len(first_bin), length, group.n_units))
    # trials per chunk: bounds the (spike, bin) pairs of one path and the 1 ms rows of the other
    density = len(group.keys) / max(1, group.stride)  # spikes per ms, all units
    pairs = density * smoother.width * len(weights[0])
    full_step = max(1, int(_PAIRS / max(pairs, 1.0)))
    partial_step = max(1, _CELLS // max(1, group.n_units * smoother.nfft))
    for rows, step in ((np.flatnonzero(full), full_step), (np.flatnonzero(~full), partial_step)):
        for s in range(0, len(rows), step):
            part = rows[s : s + step]
            if full[part[0]]:
                out[part] = _smoothed_full(group, first_bin[part], smoother, length, bin_ms, weights)
            else:
                out[part] = _smoothed_partial(session, group, first_bin[part], smoother, length, bin_ms)
    return out


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
