"""Spike counts and behaviour on a bin grid, computed per trial window, as nlb_tools' resample gives them.

nlb_tools bins every spike at 1 ms, then sums `bin_ms` consecutive samples; a bin is NaN when its
first 1 ms sample lies outside the group's observed intervals. Behaviour is anti-alias filtered and
decimated over the whole session (`scipy.signal.decimate`, FIR of order 500), after linear
interpolation over missing samples; bins whose first sample was missing are NaN.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from nlbkit.nwb import Session, UnitGroup, observed_at


def n_bins(n_samples: int, bin_ms: int) -> int:
    """Bins of the resampled session (the last one may be partial)."""
    return -(-n_samples // bin_ms)


def count_spikes(
    group: UnitGroup, first_bin: np.ndarray, length: int, bin_ms: int, dtype=np.float32
) -> np.ndarray:
    """Spike counts `(trials, length, units)` for bins `first_bin[i] + j`; NaN where unobserved.

    Bins past the end of the session hold 0 and must be cut by the caller (nlb_tools has none).
    """
    bins = first_bin[:, None] + np.arange(length)
    edges = (first_bin[:, None] + np.arange(length + 1)) * bin_ms
    sdtype = group.spikes[0].dtype if group.spikes else np.int64
    edges = edges.astype(sdtype).ravel()
    out = np.empty((len(first_bin), length, group.n_units), dtype=dtype)
    for u, spikes in enumerate(group.spikes):
        cum = np.searchsorted(spikes, edges).reshape(len(first_bin), length + 1)
        out[:, :, u] = np.diff(cum, axis=1)
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
    interpolated linearly over missing samples (held constant past the ends) if any are missing,
    decimated, and set to NaN in the bins whose first sample was missing. One channel at a time,
    so that only one session-long column is in memory.
    """
    samples = session.behavior_samples(name)
    channels = session.behavior_channels(name)
    covered = (samples.stop - samples.start) if isinstance(samples, slice) else len(samples)
    # nlb_tools interpolates every channel once any channel has a missing sample
    gaps = covered < session.n_samples or any(
        np.isnan(session.read_behavior_channel(name, c)).any() for c in channels
    )
    first = session.read_behavior_channel(name, channels[0])
    dtype = first.dtype if first.dtype.kind == "f" else np.float64
    del first
    out = np.empty((n_bins(session.n_samples, bin_ms), len(channels)), dtype=dtype)
    for c, channel in enumerate(channels):
        column = np.full(session.n_samples, np.nan, dtype=dtype)
        column[samples] = session.read_behavior_channel(name, channel)
        missing = np.isnan(column)
        if gaps:
            valid = np.flatnonzero(~missing)
            if len(valid):
                column[missing] = np.interp(np.flatnonzero(missing), valid, column[valid])
            del valid
        out[:, c] = _decimate_channel(column, missing, bin_ms)
        del column, missing
    return out


def _decimate_channel(column: np.ndarray, missing: np.ndarray, bin_ms: int) -> np.ndarray:
    decimated = signal.decimate(column, bin_ms, n=500, ftype="fir", axis=0)
    decimated[missing[::bin_ms]] = np.nan
    return decimated


def behavior_rows(binned: np.ndarray, first_bin: np.ndarray, lengths: np.ndarray, length: int) -> np.ndarray:
    """Rows `first_bin[i] .. + lengths[i]` of resampled behaviour into `(n, length, channels)` (rest NaN)."""
    idx = first_bin[:, None] + np.arange(length)
    inside = np.arange(length)[None, :] < lengths[:, None]
    out = binned[np.clip(idx, 0, len(binned) - 1)].astype(np.float64)
    out[~inside] = np.nan
    return out
