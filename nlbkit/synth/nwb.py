"""Writing generated sessions as NWB files in the NLB layout (pynwb, columns built from arrays)."""

from __future__ import annotations

import datetime
import warnings
from pathlib import Path

import numpy as np
from hdmf.common import VectorData, VectorIndex
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject
from pynwb.misc import Units

from nlbkit.paths import atomic_path

_SESSION_START = datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC)
_FIXED_DESCRIPTIONS = {
    "start_time": "Start time of epoch, in seconds",
    "stop_time": "Stop time of epoch, in seconds",
    "split": 'Trial split that the trial belongs to for the Neural Latents Benchmark. Can be "train", '
    '"val", "test", or "none"',
}


def merge_spans(spans: np.ndarray) -> np.ndarray:
    """Union of (n, 2) [lo, hi) spans, sorted and non-overlapping."""
    if len(spans) == 0:
        return np.empty((0, 2))
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    out = [list(spans[0])]
    for lo, hi in spans[1:]:
        if lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return np.array(out, dtype=np.float64)


def subtract_spans(spans: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """The parts of `spans` outside every span of `remove` (both (n, 2), same unit)."""
    remove = merge_spans(remove)
    out = []
    for lo, hi in merge_spans(spans):
        first = np.searchsorted(remove[:, 1], lo, side="right")
        cur = lo
        for r_lo, r_hi in remove[first:]:
            if r_lo >= hi:
                break
            if r_lo > cur:
                out.append((cur, r_lo))
            cur = max(cur, r_hi)
        if cur < hi:
            out.append((cur, hi))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def complement(gaps: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The spans of [lo, hi] not covered by the sorted, disjoint `gaps`."""
    edges = np.concatenate([[lo], gaps.ravel(), [hi]])
    return edges.reshape(-1, 2)


def in_spans(times: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Boolean mask: times inside one of the sorted, disjoint [lo, hi) spans."""
    pos = np.searchsorted(spans.ravel(), times, side="right")
    return (pos % 2) == 1


def _column(name: str, values: np.ndarray, descriptions: dict[str, str]) -> VectorData:
    data = values.tolist() if values.dtype.kind in "UO" else values
    desc = descriptions.get(name) or _FIXED_DESCRIPTIONS.get(name) or name.replace("_", " ")
    return VectorData(name=name, data=data, description=desc)


def trials_table(columns: dict[str, np.ndarray], descriptions: dict[str, str]) -> TimeIntervals:
    n = len(columns["start_time"])
    cols = [_column(name, np.asarray(values), descriptions) for name, values in columns.items()]
    return TimeIntervals(name="trials", id=np.arange(n), columns=cols, description="experimental trials")


def units_table(
    ids: np.ndarray, heldout: np.ndarray, spike_times: np.ndarray, counts: np.ndarray, obs: np.ndarray
) -> Units:
    """Units with ragged `spike_times` (per-unit counts) and the same `obs_intervals` for every unit."""
    n = len(ids)
    times = VectorData(name="spike_times", data=spike_times, description="the spike times for each unit")
    obs_all = VectorData(
        name="obs_intervals", data=np.tile(obs, (n, 1)), description="the observation intervals for each unit"
    )
    columns = [
        VectorData(
            name="heldout",
            data=np.asarray(heldout, dtype=bool),
            description="Whether the unit is held out in the test data (True) or not (False) in the "
            "Neural Latents Benchmark",
        ),
        times,
        VectorIndex(name="spike_times_index", data=np.cumsum(counts), target=times),
        obs_all,
        VectorIndex(name="obs_intervals_index", data=np.arange(1, n + 1) * len(obs), target=obs_all),
    ]
    return Units(name="units", id=np.asarray(ids), columns=columns, description="data on spiking units")


def write_nwb(
    path: Path,
    *,
    identifier: str,
    description: str,
    session_id: str,
    subject: str,
    units: Units,
    trials: TimeIntervals,
    behavior: list[TimeSeries] | None = None,
) -> Path:
    """Write one NWB file atomically (temporary name, renamed on success)."""
    nwb = NWBFile(
        session_description=description,
        identifier=identifier,
        session_start_time=_SESSION_START,
        session_id=session_id,
        institution="nlbkit (generated data)",
        keywords=["synthetic", "Lorenz", "Neural Latents Benchmark"],
        subject=Subject(subject_id=subject, species="synthetic"),
        trials=trials,
    )
    nwb.units = units
    if behavior:
        module = nwb.create_processing_module("behavior", "Processed behavioral data")
        for series in behavior:
            module.add(series)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The temporary name does not end in .nwb; the final one does.
        warnings.filterwarnings("ignore", message=".*does not end in '.nwb'")
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return path


def behavior_series(
    name: str, data: np.ndarray, columns: tuple[str, ...], unit: str, description: str, start_ms: int
) -> TimeSeries:
    """A 1 kHz series whose `comments` carry the column names as nlb_tools parses them."""
    return TimeSeries(
        name=name,
        data=data,
        unit=unit,
        rate=1000.0,
        starting_time=start_ms / 1000.0,
        comments=f"columns=[{','.join(columns)}]",
        description=description,
    )
