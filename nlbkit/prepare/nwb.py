"""Reading NLB NWB files with h5py: units, observation intervals, the trials table, behaviour.

Only what the tensors need is read, and the 1 kHz behaviour only when asked for. Times follow
nlb_tools' loader: the session is a 1 ms grid of `n_samples` samples starting at 0 s; a spike at
`t` seconds falls in sample `int(round(t * 1000, 6))`; a unit group (held-in or held-out) is
observed on the samples its first unit's `obs_intervals` cover, `[ceil(start), floor(end))` in ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.h5io import open_h5

_READ_BLOCK = 1 << 22  # spike times per read (32 MB of float64)


@dataclass
class UnitGroup:
    """Held-in or held-out units of a session, in nlb_tools' column order (ascending unit id).

    The spikes of all units live in one sorted array `keys`: the spike of unit `u` (column order)
    in 1 ms sample `s` is `u * stride + s` (`stride` >= the session's samples), so one
    `searchsorted` finds the spikes of every unit in every window at once. Only spikes in observed
    samples are kept; `observed` holds the merged half-open sample ranges `(k, 2)` where the group
    is observed (outside them nlb_tools puts NaN).
    """

    ids: np.ndarray
    keys: np.ndarray
    stride: int
    observed: np.ndarray

    @classmethod
    def from_spikes(cls, ids: np.ndarray, spikes: list[np.ndarray], observed: np.ndarray,
                    stride: int | None = None) -> UnitGroup:
        """From per-unit sorted sample indices (all in `[0, stride)`)."""
        if stride is None:
            stride = 1 + max((int(s[-1]) for s in spikes if len(s)), default=0)
        dtype = _key_dtype(len(spikes), stride)
        keys = np.empty(sum(len(s) for s in spikes), dtype=dtype)
        at = 0
        for u, s in enumerate(spikes):
            part = keys[at : at + len(s)]
            part[:] = s
            part += dtype(u * stride)
            at += len(s)
        return cls(np.asarray(ids), keys, stride, np.asarray(observed, dtype=np.int64).reshape(-1, 2))

    @property
    def n_units(self) -> int:
        return len(self.ids)

    def unit_spikes(self, u: int) -> np.ndarray:
        """Sample indices of unit `u`'s spikes (int64)."""
        lo = u * self.stride
        a, b = np.searchsorted(self.keys, np.array([lo, lo + self.stride], dtype=self.keys.dtype))
        return self.keys[a:b].astype(np.int64) - lo

    def gather(self, lo: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Spikes of every unit in samples `[lo[i], lo[i] + width)`: (window i, unit, offset from lo[i]).

        Windows may overlap and extend past the session; samples outside it hold no spikes.
        """
        n, n_units = len(lo), self.n_units
        kt = self.keys.dtype.type
        base = (np.arange(n_units, dtype=np.int64) * self.stride)[:, None]
        start = base + np.clip(lo, 0, self.stride)[None, :]
        stop = base + np.clip(lo + width, 0, self.stride)[None, :]
        a = np.searchsorted(self.keys, start.ravel().astype(kt))
        counts = np.searchsorted(self.keys, stop.ravel().astype(kt)) - a
        pair = np.repeat(np.arange(n_units * n), counts)
        first = np.cumsum(counts) - counts  # where each pair's spikes begin in the output
        pos = np.arange(len(pair)) + np.repeat(a - first, counts)
        unit, window = np.divmod(pair, n)
        offset = self.keys[pos].astype(np.int64) - (unit * self.stride + lo[window])
        return window, unit, offset


def _key_dtype(n_units: int, stride: int) -> type:
    return np.int32 if n_units * stride < 2**31 else np.int64


@dataclass
class BehaviorInfo:
    """Where a 1 kHz behaviour TimeSeries lives in the file, and its column names."""

    h5_path: str
    columns: list[str]


@dataclass
class Session:
    """One NWB file as the tensors see it.

    `trials` maps column names to arrays (times in seconds, `split` as str, `trial_id` from the
    table's ids); `n_samples` is the length of nlb_tools' 1 ms grid.
    """

    path: Path
    n_samples: int
    heldin: UnitGroup
    heldout: UnitGroup | None
    trials: dict[str, np.ndarray]
    behavior: dict[str, BehaviorInfo] = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return len(self.trials["trial_id"])

    def behavior_channels(self, name: str) -> list[str]:
        """Column names of a behaviour series, in nlb_tools' order (sorted as strings)."""
        return sorted(self._behavior_info(name).columns)

    def behavior_samples(self, name: str) -> slice | np.ndarray:
        """Where a behaviour series' samples fall on the 1 ms grid: a slice if regular, else indices.

        Samples must lie on the grid of the session, as nlb_tools requires (it silently drops the
        series otherwise).
        """
        info = self._behavior_info(name)
        with _open(self.path) as f:
            ts = f[info.h5_path]
            n = ts["data"].shape[0]
            if "timestamps" not in ts:
                start = ts["starting_time"]
                rate, t0 = float(start.attrs["rate"]), float(start[()])
                k0 = round(t0 * 1000.0)
                if rate == 1000.0 and abs(t0 * 1000.0 - k0) < 1e-6 and k0 >= 0 and k0 + n <= self.n_samples:
                    return slice(k0, k0 + n)
                times = np.arange(n) / rate + t0
            else:
                times = ts["timestamps"][()]
        samples_f = np.round(times * 1000.0, 6)
        samples = np.round(samples_f).astype(np.int64)
        off_grid = np.any(np.abs(samples_f - samples) > 1e-6)
        if off_grid or samples.min() < 0 or samples.max() >= self.n_samples:
            raise NlbkitError(
                f"{self.path}: behaviour '{name}' has samples off the 1 ms grid of the spike data "
                f"[0, {self.n_samples}) ms"
            )
        return samples

    def read_behavior_channel(self, name: str, channel: str) -> np.ndarray:
        """One channel of a behaviour series, (samples,) in the file's dtype."""
        info = self._behavior_info(name)
        with _open(self.path) as f:
            data = f[info.h5_path]["data"]
            if data.ndim == 1:
                return data[()]
            return data[:, info.columns.index(channel)]

    def _behavior_info(self, name: str) -> BehaviorInfo:
        info = self.behavior.get(name)
        if info is None:
            raise NlbkitError(f"{self.path}: no behaviour series '{name}' in processing/ or acquisition/")
        return info


def _open(path: Path) -> h5py.File:
    return open_h5(path, kind="NWB/HDF5")


def _ragged(table: h5py.Group, name: str) -> list[np.ndarray]:
    data = table[name][()]
    ends = table[f"{name}_index"][()].astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    return [data[a:b] for a, b in zip(starts, ends, strict=True)]


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "OS":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)
    return values


def _sample_index(times_s: np.ndarray) -> np.ndarray:
    """nlb_tools' 1 ms binning: truncation of the time in ms rounded to 6 decimals."""
    return np.round(times_s * 1000.0, 6).astype(np.int64)


def observed_at(observed: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Whether each 1 ms sample lies in one of the half-open `observed` ranges `(k, 2)`."""
    if len(observed) == 0:
        return np.zeros(samples.shape, dtype=bool)
    r = np.searchsorted(observed[:, 0], samples, side="right") - 1
    return (r >= 0) & (samples < observed[np.maximum(r, 0), 1])


def _observed_ranges(intervals: np.ndarray, n_samples: int) -> np.ndarray:
    """Merged `[ceil(start), floor(end))` sample ranges, clipped to the session."""
    if len(intervals) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    lo = np.ceil(np.round(intervals[:, 0] * 1000.0, 6)).astype(np.int64)
    hi = np.floor(np.round(intervals[:, 1] * 1000.0, 6)).astype(np.int64)
    lo, hi = np.clip(lo, 0, n_samples), np.clip(hi, 0, n_samples)
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    order = np.argsort(lo, kind="stable")
    merged: list[list[int]] = []
    for a, b in zip(lo[order], hi[order], strict=True):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], int(b))
        else:
            merged.append([int(a), int(b)])
    return np.array(merged, dtype=np.int64).reshape(-1, 2)


def _read_trials(path: Path, f: h5py.File) -> dict[str, np.ndarray]:
    if "intervals/trials" not in f:
        raise NlbkitError(f"{path}: no trials table (intervals/trials); not an NLB NWB file")
    table = f["intervals/trials"]
    for required in ("start_time", "stop_time", "split"):
        if required not in table:
            raise NlbkitError(f"{path}: trials table has no '{required}' column")
    trials: dict[str, np.ndarray] = {"trial_id": table["id"][()].astype(np.int64)}
    for name, obj in table.items():
        if name == "id" or name.endswith("_index") or not isinstance(obj, h5py.Dataset):
            continue
        if f"{name}_index" in table or obj.ndim != 1:
            continue  # ragged or multi-dimensional columns carry no per-trial scalar
        trials[name] = _decode(obj[()])
    trials["split"] = trials["split"].astype(str)
    return trials


def _find_behavior(f: h5py.File) -> dict[str, BehaviorInfo]:
    """TimeSeries in acquisition/ and directly in processing modules, named as nlb_tools names them."""
    found: dict[str, BehaviorInfo] = {}
    parents = [f["acquisition"]] if "acquisition" in f else []
    if "processing" in f:
        parents += [g for g in f["processing"].values() if isinstance(g, h5py.Group)]
    for parent in parents:
        for name, obj in parent.items():
            timed = "timestamps" in obj or "starting_time" in obj if isinstance(obj, h5py.Group) else False
            if timed and "data" in obj:
                comments = obj.attrs.get("comments", "")
                comments = comments.decode() if isinstance(comments, bytes) else str(comments)
                if "columns=" in comments:
                    columns = comments.split("[")[-1].split("]")[0].split(",")
                else:
                    width = 1 if obj["data"].ndim == 1 else obj["data"].shape[1]
                    columns = [f"{i:04d}" for i in range(width)]
                found[name] = BehaviorInfo(obj.name, columns)
    return found


def _spike_samples(
    units: h5py.Group, observed: dict[int, np.ndarray], n_samples: int
) -> dict[int, np.ndarray]:
    """Per unit row: sorted 1 ms samples (int32 if they fit) of its spikes in its `observed` ranges.

    The spike_times column is read in blocks of `_READ_BLOCK` values in storage order, so neither
    the whole column nor one small read per unit is needed.
    """
    ends = units["spike_times_index"][()].astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    data = units["spike_times"]
    out: dict[int, np.ndarray] = {}
    buf, buf_lo = np.zeros(0), 0
    for r in sorted(observed, key=lambda row: starts[row]):
        a, b = int(starts[r]), int(ends[r])
        if a < buf_lo or b > buf_lo + len(buf):
            buf_lo = a
            try:
                buf = data[a : max(b, min(a + _READ_BLOCK, data.shape[0]))]
            except (OSError, ValueError) as exc:
                raise NlbkitError(f"cannot read units/spike_times: {exc}") from None
        idx = _sample_index(buf[a - buf_lo : b - buf_lo])
        if np.any(idx[1:] < idx[:-1]):
            idx = np.sort(idx)
        # a spike in an unobserved sample is overwritten by NaN in nlb_tools' frame: it never counts
        out[r] = idx[observed_at(observed[r], idx)].astype(np.int32 if n_samples < 2**31 else np.int64)
    return out


def _unit_groups(ids, units: h5py.Group, intervals, heldout, n_samples) -> list[UnitGroup | None]:
    """(held-in, held-out) groups; a group is observed where its first unit (table order) is."""
    selected = [np.flatnonzero(~heldout), np.flatnonzero(heldout)]
    observed = [_observed_ranges(np.asarray(intervals[rows[0]]).reshape(-1, 2), n_samples) if len(rows)
                else None for rows in selected]
    samples = _spike_samples(units, {r: obs for rows, obs in zip(selected, observed, strict=True)
                                     for r in rows}, n_samples)
    groups: list[UnitGroup | None] = []
    for rows, obs in zip(selected, observed, strict=True):
        if len(rows) == 0:
            groups.append(None)
            continue
        rows = rows[np.argsort(ids[rows], kind="stable")]
        groups.append(UnitGroup.from_spikes(ids[rows], [samples.pop(r) for r in rows], obs, n_samples))
    return groups


def read_session(path: str | Path) -> Session:
    """Read an NLB train or test NWB file; bad input raises NlbkitError naming the file."""
    path = Path(path)
    try:
        return _read(path)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        reason = f"cannot read it as an NLB NWB file (truncated or damaged?): {exc}"
        raise NlbkitError(f"{path}: {reason}") from None


def _read(path: Path) -> Session:
    with _open(path) as f:
        if "units" not in f or "spike_times" not in f["units"]:
            raise NlbkitError(f"{path}: no units table with spike_times; not an NLB NWB file")
        units = f["units"]
        for required in ("spike_times_index", "obs_intervals", "obs_intervals_index", "heldout"):
            if required not in units:
                raise NlbkitError(f"{path}: units table has no '{required}' column")
        trials = _read_trials(path, f)
        ids = units["id"][()].astype(np.int64)
        heldout = units["heldout"][()].astype(bool)
        intervals = _ragged(units, "obs_intervals")
        if not intervals or any(len(iv) == 0 for iv in intervals):
            raise NlbkitError(f"{path}: a unit has no obs_intervals")
        # nlb_tools: the session ends at the last unit's last observed time (or the last trial).
        end = round(max(float(np.reshape(iv, (-1, 2))[-1, 1]) for iv in intervals) * 1000.0)
        last_stop = float(trials["stop_time"][-1]) if len(trials["stop_time"]) else 0.0
        if end < last_stop:  # nlb_tools compares ms with s here; kept for parity
            end = round(last_stop * 1000.0)
        n_samples = math.ceil(end)
        try:
            heldin, held = _unit_groups(ids, units, intervals, heldout, n_samples)
        except NlbkitError as exc:
            raise NlbkitError(f"{path}: {exc}") from None
        if heldin is None:
            raise NlbkitError(f"{path}: no held-in units (every unit is marked heldout)")
        behavior = _find_behavior(f)
    return Session(path, n_samples, heldin, held, trials, behavior)
