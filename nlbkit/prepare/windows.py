"""Trial windows on the bin grid, cut exactly as nlb_tools' `NWBDataset.make_trial_data` cuts them.

Times are int64 nanoseconds converted from seconds the way pandas converts them; bin `k` of a
`bin_ms` grid starts at `k * bin_ms` ms and a window keeps the bins whose start lies in
`[align_start, align_end - 1 us]`. Without `allow_overlap`, a window is cut where the next
selected trial's window (or the start of the trial after it) begins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NS_PER_MS = 1_000_000
_ONE_US = 1_000


def seconds_to_ns(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ns int64, valid bool) as `pd.to_timedelta(seconds, unit='s')` gives them (NaN: invalid)."""
    x = np.asarray(seconds, dtype=np.float64)
    valid = np.isfinite(x)
    x = np.where(valid, x, 0.0)
    base = x.astype(np.int64)
    frac = np.round(x - base, 9)
    return base * 1_000_000_000 + (frac * 1e9).astype(np.int64), valid


def ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-a) // b)


@dataclass(frozen=True)
class WindowParams:
    """One `make_params` dict of nlb_tools: a fixed range around `align_field`, or start..end."""

    align_field: str | None
    align_range: tuple[float, float] | None = None
    start_field: str = "start_time"
    end_field: str = "stop_time"
    allow_overlap: bool = False

    def shifted(self, lag_ms: float) -> WindowParams:
        """The behaviour window: the same range `lag_ms` later (a variable window gets (lag, lag))."""
        lo, hi = self.align_range if self.align_range is not None else (0, 0)
        return WindowParams(self.align_field, (lo + lag_ms, hi + lag_ms), self.start_field,
                            self.end_field, self.allow_overlap)

    def forward(self, fp_ms: float) -> WindowParams:
        """nlb_tools' `_prep_fp`: `fp_ms` after the end of the window, overlap allowed."""
        end = self.align_range[1] if self.align_range is not None else 0
        align = self.align_field if self.align_field is not None else self.end_field
        return WindowParams(align, (end, end + fp_ms), allow_overlap=True)


@dataclass
class Windows:
    """Windows of the selected trials that nlb_tools keeps (table order).

    `rows`: table row of each trial; `first_bin`: its first bin; `n_bins`: how many bins it
    holds (0 when it falls outside the session); `align_bin`: the bin its align time rounds up to
    (the key of nlb_tools' `align_time`).
    """

    rows: np.ndarray
    first_bin: np.ndarray
    n_bins: np.ndarray
    align_bin: np.ndarray


def field_ns(trials: dict[str, np.ndarray], name: str, extra: dict[str, np.ndarray] | None = None):
    if extra is not None and name in extra:
        return extra[name]
    return seconds_to_ns(trials[name])


def trial_windows(
    trials: dict[str, np.ndarray],
    select: np.ndarray,
    params: WindowParams,
    bin_ms: int,
    n_session_bins: int,
    extra_fields: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Windows:
    """The windows `make_trial_data(ignored_trials=~select, **params)` cuts on a `bin_ms` grid.

    `extra_fields` adds time columns (ns, valid) such as a jittered align time.
    """
    bin_ns = bin_ms * NS_PER_MS
    rows = np.flatnonzero(select)
    start, start_ok = field_ns(trials, params.start_field, extra_fields)
    next_start = np.append(start[1:], 0)[rows]
    next_ok = np.append(start_ok[1:], False)[rows]
    t_start, t_start_ok = start[rows], start_ok[rows]
    if params.align_field is not None:
        align, align_ok = field_ns(trials, params.align_field, extra_fields)
        align, align_ok = align[rows], align_ok[rows]
    else:
        align, align_ok = t_start, t_start_ok
    if params.align_range is not None:
        lo, hi = (round(v * NS_PER_MS) for v in params.align_range)
        a_start, a_end, ok = align + lo, align + hi - _ONE_US, align_ok & t_start_ok
        a_start_ok = align_ok
    else:
        end, end_ok = field_ns(trials, params.end_field, extra_fields)
        a_start, a_end = t_start, end[rows] - _ONE_US
        ok = t_start_ok & end_ok[rows] & align_ok
        a_start_ok = t_start_ok
    # end bound of a trial: the earlier of the next selected trial's window start and the start of
    # the trial after that one (pandas' row-wise min skips NaN, then shifts by one selected row)
    both = next_ok & a_start_ok
    bound = np.where(both, np.minimum(next_start, a_start), np.where(next_ok, next_start, a_start))
    bound_ok = next_ok | a_start_ok
    bound, bound_ok = np.append(bound[1:], 0), np.append(bound_ok[1:], False)
    end_ns = a_end.copy()
    if not params.allow_overlap:
        cut = bound_ok & (a_end > bound)
        end_ns[cut] = bound[cut] - _ONE_US
    first = np.maximum(ceil_div(a_start, bin_ns), 0)
    last = np.minimum(end_ns // bin_ns, n_session_bins - 1)
    n_bins = np.maximum(last - first + 1, 0)
    return Windows(rows[ok], first[ok], n_bins[ok], ceil_div(align, bin_ns)[ok])
