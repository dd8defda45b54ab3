"""The published-results file shipped in the package: its schema, and a source for every row."""

from __future__ import annotations

import csv
import math

import pytest

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import DATASET_NAMES
from nlbkit.nlb.keys import METRIC_NAMES
from nlbkit.nlb.published import COLUMNS, METRIC_COLUMNS, PUBLISHED_CSV, load_published, published_for


def _raw_rows() -> tuple[list[str], list[dict[str, str]]]:
    with open(PUBLISHED_CSV, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_the_file_has_the_documented_columns():
    fields, rows = _raw_rows()
    assert fields == ["dataset", "bin_ms", "phase", "method", "co_bps", "vel_r2", "psth_r2", "fp_bps",
                      "tp_corr", "source", "source_detail", "read_on"]
    assert tuple(fields) == COLUMNS
    assert set(METRIC_COLUMNS.values()) <= set(METRIC_NAMES)
    assert len(rows) > 0


def test_every_cell_fits_the_schema_and_every_row_has_a_source():
    _, rows = _raw_rows()
    for line, row in enumerate(rows, start=2):
        assert row["dataset"] in DATASET_NAMES, line
        assert row["bin_ms"] in ("5", "20"), line
        assert row["phase"] in ("test", "val"), line
        assert row["method"].strip(), line
        assert row["source"].strip(), line
        for column in METRIC_COLUMNS:
            cell = row[column].strip()
            assert cell == "" or math.isfinite(float(cell)), (line, column)
        assert row["co_bps"].strip(), line  # rows are ranked by co-bps


def test_loader_reads_every_row_as_printed():
    _, rows = _raw_rows()
    entries = load_published()
    assert len(entries) == len(rows)
    slds = [e for e in published_for("mc_maze", 5, "test", entries) if e.method == "SLDS"]
    assert len(slds) == 1 and slds[0].scores["fp-bps"] == 1.1579  # doubtful, kept as printed
    assert "tp corr" not in slds[0].scores
    assert all((e.dataset, e.bin_ms, e.phase) == ("dmfc_rsg", 5, "test")
               for e in published_for("dmfc_rsg", 5, "test", entries))


def test_a_bad_cell_is_an_error_naming_file_and_line(tmp_path):
    _, rows = _raw_rows()
    bad = dict(rows[0], co_bps="0.3x")
    path = tmp_path / "published.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([rows[1], bad])
    with pytest.raises(NlbkitError, match=r"published.csv:3: co_bps '0.3x' is not a number"):
        load_published(path)
