"""Spike counts and behaviour on a bin grid, computed per trial window, as nlb_tools' resample gives them.

nlb_tools bins every spike at 1 ms, then sums `bin_ms` consecutive samples; a bin is NaN when its
first 1 ms sample lies outside the group's observed intervals. Behaviour is anti-alias filtered and
decimated over the whole session (`scipy.signal.decimate`, FIR of order 500), after linear
interpolation over missing samples; bins whose first sample was missing are NaN.
"""

from __future__ import annotations

import numpy as np

from nlbkit.prepare.decimate import decimate_fir
from nlbkit.prepare.nwb import Session, UnitGroup, observed_at

_COUNT_CELLS = 1 << 22  # window bins x units counted at once


def n_bins(n_samples: int, bin_ms: int) -> int:
    """Bins of the resampled session (the last one may be partial)."""
    return -(-n_samples // bin_ms)


def count_spikes(
    group: UnitGroup, first_bin: np.ndarray, length: int, bin_ms: int, dtype=np.float32
) -> np.ndarray:
    """Spike counts `(trials, length, units)` for bins `first_bin[i] + j`; NaN where unobserved.

    Bins past the end of the session hold 0 and must be cut by the caller (nlb_tools has none).
    Work grows with the spikes inside the windows, not with the number of bins.
    """
    n, n_units = len(first_bin), group.n_units
    out = np.zeros((n, length, n_units), dtype=dtype)
    if n == 0 or length == 0 or n_units == 0:
        return out
    step = max(1, _COUNT_CELLS // (length * n_units))  # bounds the int64 counts of one chunk
    for s in range(0, n, step):
        first = first_bin[s : s + step].astype(np.int64)
        window, unit, offset = group.gather(first * bin_ms, length * bin_ms)
        flat = (window * length + offset // bin_ms) * n_units + unit
        counts = np.bincount(flat, minlength=len(first) * length * n_units)
        out[s : s + step] = counts.reshape(len(first), length, n_units)
    bins = first_bin[:, None] + np.arange(length)
    out[~observed_at(group.observed, bins * bin_ms)] = np.nan
    return out


def place_jagged(
    data: np.ndarray,
    lengths: np.ndarray,
    max_len: int,
    pad: str = "back",
    jitter_bins: np.ndarray | None = None,
) -> np.ndarray:
    """nlb_tools' `make_jagged_array`: trials of `lengths[i]` rows of `data[i]` into `(n, max_len, c)`.

    'back' keeps the first rows and pads NaN after, 'front' keeps the last rows and pads before;
    a jitter of `j` bins drops `j` rows (at the start for 'back', shifting the rest left by `j` for
    'front'). The result is float64, as nlb_tools' `np.full(..., np.nan)`.
    """
    n = len(lengths)
    out = np.full((n, max_len, data.shape[2]), np.nan)
    jits = np.zeros(n, dtype=np.int64) if jitter_bins is None else jitter_bins
    for i in range(n):
        rows, jit = data[i, : lengths[i]], int(jits[i])
        if pad == "front":
            if jit == 0:
                rows = rows[-max_len:]
                out[i, max_len - len(rows) :] = rows
            else:
                rows = rows[-(max_len - jit) :]
                out[i, max_len - len(rows) - jit : max_len - jit] = rows
        else:
            if jit > 0:
                rows = rows[jit : max_len + jit]
                out[i, : len(rows)] = rows
            else:
                rows = rows[: max_len - jit]
                out[i, -jit : len(rows) - jit] = rows
    return out


def resample_behavior(session: Session, name: str, bin_ms: int) -> np.ndarray:
    """Behaviour `(session bins, channels)` as nlb_tools' `resample(bin_ms)` leaves it, in its dtype.

    Each channel is read onto the session's 1 ms grid (NaN where the series has no sample),
    interpolated linearly over missing samples (held constant past the ends), decimated, and set
    to NaN in the bins whose first sample was missing. One channel at a time, so that only one
    session-long column is in memory. (nlb_tools interpolates every column once any has a gap;
    a column without missing samples is unchanged by that.)
    """
    samples = session.behavior_samples(name)
    channels = session.behavior_channels(name)
    out = None
    for c, channel in enumerate(channels):
        values = session.read_behavior_channel(name, channel)
        dtype = values.dtype if values.dtype.kind == "f" else np.float64
        column = np.full(session.n_samples, np.nan, dtype=dtype)
        column[samples] = values
        del values
        missing = np.isnan(column)
        if missing.any():
            valid = np.flatnonzero(~missing)
            if len(valid):
                column[missing] = np.interp(np.flatnonzero(missing), valid, column[valid])
            del valid
        if out is None:
            out = np.empty((n_bins(session.n_samples, bin_ms), len(channels)), dtype=dtype)
        out[:, c] = _decimate_channel(column, missing, bin_ms)
        del column, missing
    return out


def _decimate_channel(column: np.ndarray, missing: np.ndarray, bin_ms: int) -> np.ndarray:
    decimated = decimate_fir(column, bin_ms, n=500)  # scipy.signal.decimate(..., ftype='fir')
    decimated[missing[::bin_ms]] = np.nan
    return decimated


def behavior_rows(binned: np.ndarray, first_bin: np.ndarray, lengths: np.ndarray, length: int) -> np.ndarray:
    """Rows `first_bin[i] .. + lengths[i]` of resampled behaviour into `(n, length, channels)` (rest NaN)."""
    idx = first_bin[:, None] + np.arange(length)
    inside = np.arange(length)[None, :] < lengths[:, None]
    out = binned[np.clip(idx, 0, len(binned) - 1)].astype(np.float64)
    out[~inside] = np.nan
    return out
