"""`nlbkit leaderboard`: runs scored against an eval_data_test.h5-layout file, ranked among published rows."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nlbkit.nlb.h5io import write_h5_groups
from nlbkit.nlb.published import PublishedEntry, load_published, published_for
from nlbkit.scoring.evaluate import score_run
from nlbkit.scoring.leaderboard import format_boards, rank_runs
from tests.eval_layouts import N_EVAL, random_rates, random_target, write_run, write_tensors_file

DATASET, BIN = "mc_maze", 5


@pytest.fixture
def test_run(tmp_path):
    """A test-phase run of mc_maze at 5 ms and a targets file in nlb_tools' eval_data_test.h5 layout."""
    rng = np.random.default_rng(0)
    target = random_target(DATASET, BIN, rng)
    targets = write_h5_groups(tmp_path / "eval_data_test.h5", {DATASET: target})
    run_dir = write_run(tmp_path / "runs", DATASET, BIN, "test", "smoothing", random_rates(DATASET, BIN, rng))
    return run_dir, targets


def _entry(method: str, co_bps: float, **more: float) -> PublishedEntry:
    return PublishedEntry(DATASET, BIN, "test", method, {"co-bps": co_bps, **more}, "A & B 2022, T", "", "")


def test_run_ranks_among_given_entries(test_run):
    run_dir, targets = test_run
    co_bps = score_run(run_dir, targets_file=targets).scores["co-bps"]
    entries = [_entry("best", co_bps + 0.1), _entry("second", co_bps + 0.05, **{"vel R2": 0.5}),
               _entry("worse", co_bps - 0.05), _entry("other bin", 9.0)]
    entries[-1] = PublishedEntry(DATASET, 20, "test", "other bin", {"co-bps": 9.0}, "x", "", "")
    (board,) = rank_runs([run_dir], targets_file=targets, entries=entries)
    (run,) = board.runs
    assert (run.rank, run.of, run.n_trials, run.saw_val_trials) == (3, 4, N_EVAL, True)
    rows = board.rows()
    assert [r["name"] for r in rows] == ["best", "second", run_dir.name, "worse"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 3]  # 'worse' is 3rd among the published alone
    assert rows[2]["kind"] == "nlbkit" and rows[2]["scores"]["co-bps"] == co_bps
    text = format_boards([board])
    assert f"{run_dir.name} would rank 3 of 4 by co-bps" in text
    assert f"test phase, 5 ms bins, {N_EVAL} eval trials scored against {targets}" in text
    assert "saw the val trials" in text


def test_rank_against_the_shipped_entries(test_run):
    run_dir, targets = test_run
    co_bps = score_run(run_dir, targets_file=targets).scores["co-bps"]
    published = published_for(DATASET, BIN, "test", load_published())
    (board,) = rank_runs([run_dir], targets_file=targets)
    assert len(board.published) == len(published) > 0
    assert board.runs[0].rank == 1 + sum(e.scores["co-bps"] > co_bps for e in published)
    assert board.runs[0].of == len(published) + 1
    assert board.note() is None


def test_val_phase_run_says_there_are_no_val_entries(tmp_path):
    rng = np.random.default_rng(1)
    target = random_target(DATASET, BIN, rng)
    tensors = write_tensors_file(tmp_path / "data", DATASET, BIN, target, rng)
    run_dir = write_run(tmp_path / "runs", DATASET, BIN, "val", "smoothing", random_rates(DATASET, BIN, rng),
                        tensors=tensors)
    (board,) = rank_runs([run_dir])
    assert board.published == [] and board.runs[0].rank is None
    assert not board.runs[0].saw_val_trials
    assert "no published val-phase entries" in board.note()
    assert "no published val-phase entries" in format_boards([board])


@pytest.mark.slow
def test_cli_writes_json_and_png_without_torch(test_run, tmp_path):
    run_dir, targets = test_run
    out_json, figures = tmp_path / "board.json", tmp_path / "figures"
    code = (
        "import sys\n"
        "from nlbkit.cli import main\n"
        "try:\n"
        f"    main([{'leaderboard'!r}, {str(run_dir)!r}, '--targets', {str(targets)!r},"
        f" '--json', {str(out_json)!r}, '--figures', {str(figures)!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'leaderboard imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "would rank" in proc.stdout
    saved = json.loads(out_json.read_text())
    (board,) = saved["boards"]
    assert (board["dataset"], board["bin_ms"], board["phase"]) == (DATASET, BIN, "test")
    co_bps = score_run(run_dir, targets_file=targets).scores["co-bps"]
    (run,) = board["runs"]
    assert run["scores"]["co-bps"] == pytest.approx(co_bps, abs=1e-12)
    assert run["n_trials"] == N_EVAL and run["saw_val_trials"] is True
    assert run["rank"] == 1 + sum(r["scores"]["co-bps"] > co_bps for r in board["rows"]
                                  if r["kind"] == "published")
    assert len(board["rows"]) == board["n_published"] + 1
    png = figures / f"{DATASET}_{BIN}ms_test.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
