"""Published NLB'21 results, shipped as data: `nlbkit/nlb/published.csv` (sources: docs/published.md).

One row per (dataset, bin, phase, method) as a paper printed it; a metric the source does not give
is an empty cell (None here). Every row names its source.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import BIN_SIZES_MS, DATASET_NAMES
from nlbkit.nlb.keys import METRIC_NAMES, PHASES

PUBLISHED_CSV = Path(__file__).with_name("published.csv")
# CSV column -> nlb_tools' metric name, in METRIC_NAMES order ("vel R2" -> "vel_r2")
METRIC_COLUMNS: dict[str, str] = {m.lower().replace("-", "_").replace(" ", "_"): m for m in METRIC_NAMES}
COLUMNS: tuple[str, ...] = (
    "dataset", "bin_ms", "phase", "method", *METRIC_COLUMNS, "source", "source_detail", "read_on",
)


@dataclass(frozen=True)
class PublishedEntry:
    """One published row; `scores` maps metric names to values (missing metrics are absent)."""

    dataset: str
    bin_ms: int
    phase: str
    method: str
    scores: dict[str, float]
    source: str
    source_detail: str
    read_on: str


def _parse_row(row: dict[str, str], where: str) -> PublishedEntry:
    if row["dataset"] not in DATASET_NAMES:
        raise NlbkitError(f"{where}: unknown dataset '{row['dataset']}'")
    try:
        bin_ms = int(row["bin_ms"])
    except ValueError:
        raise NlbkitError(f"{where}: bin_ms '{row['bin_ms']}' is not an integer") from None
    if bin_ms not in BIN_SIZES_MS:
        raise NlbkitError(f"{where}: bin_ms {bin_ms} is not one of {BIN_SIZES_MS}")
    if row["phase"] not in PHASES:
        raise NlbkitError(f"{where}: phase '{row['phase']}' is neither 'val' nor 'test'")
    if not row["method"].strip() or not row["source"].strip():
        raise NlbkitError(f"{where}: empty method or source")
    scores = {}
    for column, metric in METRIC_COLUMNS.items():
        cell = row[column].strip()
        if not cell:
            continue
        try:
            value = float(cell)
        except ValueError:
            raise NlbkitError(f"{where}: {column} '{cell}' is not a number") from None
        if not math.isfinite(value):
            raise NlbkitError(f"{where}: {column} '{cell}' is not finite")
        scores[metric] = value
    return PublishedEntry(row["dataset"], bin_ms, row["phase"], row["method"].strip(), scores,
                          row["source"].strip(), row["source_detail"].strip(), row["read_on"].strip())


def load_published(path: str | os.PathLike = PUBLISHED_CSV) -> list[PublishedEntry]:
    """Every row of the published-results CSV, checked: columns, registry dataset names, bins 5/20,
    phase val/test, numeric or empty metric cells, a non-empty source. A bad row is an error naming
    the file and line."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise NlbkitError(f"{path}: columns {reader.fieldnames} are not {list(COLUMNS)}")
        return [_parse_row(row, f"{path}:{reader.line_num}") for row in reader]


def published_for(dataset: str, bin_ms: int, phase: str,
                  entries: list[PublishedEntry] | None = None) -> list[PublishedEntry]:
    """The published entries of one dataset, bin and phase (file order)."""
    entries = load_published() if entries is None else entries
    return [e for e in entries if (e.dataset, e.bin_ms, e.phase) == (dataset, bin_ms, phase)]
