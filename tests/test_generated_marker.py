"""Generated data is marked, never replaces real data unasked, and says so wherever it is printed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from nlbkit.cli import main
from nlbkit.errors import NlbkitError
from nlbkit.nlb.marker import MARKER_NAME, check_replaceable, has_stamp, is_generated, label
from nlbkit.synth.generate import write_dataset

SMALL = "mc_maze_small"
TEST_NAME = "sub-Jenkins_ses-small_desc-test_ecephys.nwb"
TRAIN_NAME = "sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_synth_refuses_to_replace_a_real_file_unless_forced(tmp_path, real_data, nlbkit_cli):
    folder = tmp_path / SMALL
    folder.mkdir()
    real = folder / TEST_NAME
    shutil.copy(real_data / SMALL / TEST_NAME, real)
    before = _sha(real)

    proc = nlbkit_cli("synth", SMALL, "--data-dir", tmp_path, check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(real) in lines[0], proc.stderr
    assert "--force" in lines[0]
    assert _sha(real) == before and sorted(p.name for p in folder.iterdir()) == [TEST_NAME]

    forced = nlbkit_cli("synth", SMALL, "--data-dir", tmp_path, "--force")
    assert "generated data" in forced.stdout
    assert _sha(real) != before and has_stamp(real) and is_generated(folder)


def test_synth_replaces_its_own_files_and_lists_them(tmp_path):
    write_dataset(SMALL, tmp_path, seed=0)
    folder = tmp_path / SMALL
    listed = json.loads((folder / MARKER_NAME).read_text())["files"]
    assert sorted(listed) == sorted([TRAIN_NAME, TEST_NAME, "ground_truth.h5", "eval_data_test.h5"])
    assert all(has_stamp(folder / name) for name in listed)
    first = _sha(folder / TEST_NAME)
    write_dataset(SMALL, tmp_path, seed=1)  # its own files: replaced without --force
    assert _sha(folder / TEST_NAME) != first


def test_real_data_copied_over_a_generated_file_counts_as_real(tmp_path, real_data):
    write_dataset(SMALL, tmp_path, seed=0)
    folder = tmp_path / SMALL
    shutil.copy(real_data / SMALL / TEST_NAME, folder / TEST_NAME)  # listed, but not stamped
    assert not has_stamp(folder / TEST_NAME)
    with pytest.raises(NlbkitError, match=TEST_NAME):
        check_replaceable(folder, [TEST_NAME])


def test_label_only_for_a_generated_folder(tmp_path):
    assert label(SMALL, tmp_path) == SMALL and label(SMALL, None) == SMALL
    (tmp_path / MARKER_NAME).write_text('{"files": []}\n')
    assert label(SMALL, tmp_path) == f"{SMALL} (generated data)"


def _run(*args) -> str:
    """`nlbkit ARGS` in this process (a subprocess per command would spend its time importing)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.slow
def test_commands_say_generated_data(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    _run("synth", SMALL, "--data-dir", data)
    prepared = _run("prepare", SMALL, "--data-dir", data, "--quiet")
    assert f"{SMALL} (generated data) 5 ms: wrote" in prepared
    trained = _run("train", SMALL, "--model", "smoothing", "--data-dir", data, "--run-dir", runs)
    assert "(generated data)" in trained.splitlines()[0]
    run_dir = runs / f"{SMALL}_5ms_val_smoothing"
    evaluated = _run("evaluate", run_dir)
    assert f"{SMALL} (generated data)" in evaluated
    as_json = json.loads(_run("evaluate", run_dir, "--json"))
    assert as_json["runs"][0]["generated_data"] is True
    reported = _run("report", run_dir)
    assert f"({SMALL} (generated data), 5 ms, val)" in reported.splitlines()[0]


def test_a_generated_test_phase_run_is_scored_against_the_generated_targets(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    _run("synth", SMALL, "--data-dir", data)
    _run("prepare", SMALL, "--data-dir", data, "--quiet")
    # Real test targets in the data dir are for the real trials: never used for generated ones.
    (data / "eval_data_test.h5").write_bytes(b"not the generated targets")
    trained = _run("train", SMALL, "--model", "smoothing", "--phase", "test", "--data-dir", data,
                   "--run-dir", runs)
    assert "no local scores" not in trained and "co-bps" in trained
    run_dir = runs / f"{SMALL}_5ms_test_smoothing"
    scored = json.loads(_run("evaluate", run_dir, "--json"))["runs"][0]
    assert scored["generated_data"] is True
    assert scored["scores"] == pytest.approx(json.loads((run_dir / "scores.json").read_text()))
    assert scored["scores"]["co-bps"] > 0.1  # inputs and targets are the same trials, lined up
    board = _run("leaderboard", run_dir)
    assert board.startswith(f"== {SMALL} (generated data) 5 ms, test phase")
    assert f"scored against {data / SMALL / 'eval_data_test.h5'}" in board
    submitted = _run("submit", "--runs", runs, "--model", "smoothing", "-o", tmp_path / "sub.h5")
    assert "(test phase, generated data)" in submitted
    with h5py.File(tmp_path / "sub.h5") as h5:
        assert has_stamp(tmp_path / "sub.h5") and list(h5) == [SMALL]


@pytest.mark.slow
def test_a_run_on_real_tensors_is_not_labelled(tmp_path, real_data):
    runs = tmp_path / "runs"
    tensors = real_data / SMALL / "mc_maze_small_train_5ms.h5"
    trained = _run("train", SMALL, "--model", "smoothing", "--from-tensors", tensors, "--run-dir", runs)
    assert "generated" not in trained
    evaluated = _run("evaluate", runs / f"{SMALL}_5ms_val_smoothing_holdout")
    assert "generated" not in evaluated and SMALL in evaluated


def test_forgetting_one_file_keeps_the_folder_generated_until_no_nwb_is_left(tmp_path):
    from nlbkit.nlb.marker import forget_generated, generated_files

    write_dataset(SMALL, tmp_path, seed=0)
    folder = tmp_path / SMALL
    forget_generated(folder, TRAIN_NAME)
    assert is_generated(folder)
    assert generated_files(folder) == {TEST_NAME, "ground_truth.h5", "eval_data_test.h5"}
    forget_generated(folder, TEST_NAME)
    assert not is_generated(folder)
