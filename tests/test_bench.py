"""The benchmark's machinery: measuring a subprocess, capping it, and reporting ratios."""

from __future__ import annotations

import sys

from nlbkit.prepare.bench import Measurement, measure, summarise, table


def test_measure_reports_peak_memory_of_a_child():
    code = "import numpy as np; a = np.ones(200 * 2**20 // 8); print(a.sum())"
    m = measure([sys.executable, "-c", code], "probe", "1", mem_cap_gb=8, timeout_s=120)
    assert m.status == "ok" and m.wall_s > 0
    assert m.peak_rss_mb > 200


def test_measure_kills_above_the_memory_cap():
    code = "import numpy as np, time; a = np.ones(600 * 2**20 // 8); time.sleep(30)"
    m = measure([sys.executable, "-c", code], "probe", "1", mem_cap_gb=0.3, timeout_s=120)
    assert m.status == "killed: memory cap" and m.wall_s is None


def test_measure_reports_a_failure_with_its_last_line():
    m = measure([sys.executable, "-c", "raise SystemExit('no such file')"], "probe", "1", 8, 60)
    assert m.status == "failed" and "no such file" in m.detail


def test_ratios_are_taken_on_the_largest_size_both_finish(tmp_path, monkeypatch):
    import nlbkit.prepare.bench as bench

    monkeypatch.setattr(bench, "_session_sizes", lambda work, sizes: {})
    rows = [
        Measurement("nlbkit", "1/4", 1.0, 100.0, "ok"),
        Measurement("nlbkit", "1", 4.0, 400.0, "ok"),
        Measurement("nlb_tools", "1/4", 50.0, 3000.0, "ok"),
        Measurement("nlb_tools", "1", None, 12000.0, "killed: memory cap"),
    ]
    result = summarise(rows, tmp_path, 5, 12.0, 60.0)
    assert result["largest_common_size"] == "1/4"
    assert result["speedup"] == 50.0 and result["memory_ratio"] == 30.0
    assert "50.0x faster" in table(result)


def test_table_sets_both_tools_side_by_side_with_ratios_per_size(tmp_path, monkeypatch):
    import nlbkit.prepare.bench as bench

    monkeypatch.setattr(bench, "_session_sizes", lambda work, sizes: {})
    rows = [
        Measurement("nlbkit", "1/8", 2.0, 100.0, "ok"),
        Measurement("nlbkit", "1/4", 4.0, 200.0, "ok"),
        Measurement("nlb_tools", "1/8", 90.0, 5000.0, "ok"),
        Measurement("nlb_tools", "1/4", None, 12500.0, "killed: memory cap"),
    ]
    result = summarise(rows, tmp_path, 5, 12.0, 60.0)
    assert set(result["ratios"]) == {"1/8"} and result["ratios"]["1/8"]["speedup"] == 45.0
    lines = table(result).splitlines()
    row_8 = next(line for line in lines if line.lstrip().startswith("1/8"))
    row_4 = next(line for line in lines if line.lstrip().startswith("1/4"))
    assert row_8.split()[1:] == ["2.0", "s", "100", "MB", "90.0", "s", "5000", "MB", "45.0x", "50.0x"]
    assert "killed (memory)" in row_4 and "x" not in row_4.split("MB")[-1]
