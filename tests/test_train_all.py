"""`nlbkit train-all`: the leaderboard's runs as Ray tasks, skipping finished runs, resuming the rest."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlbkit.claims import holder_of
from nlbkit.errors import NlbkitError
from nlbkit.runs import RunDir
from nlbkit.train.parallel import (
    TaskResult,
    TrainAllOptions,
    ensemble_seeds,
    format_summary,
    make_tasks,
    plan_task,
    run_task,
    train_all,
)
from tests.training_fixtures import tiny_config, write_prepared

ROOT = Path(__file__).resolve().parents[1]
TINY = tuple(f"{k}={v}" for k, v in (
    ("model.hidden", 8), ("model.ff_dim", 16), ("model.prediction_samples", 2), ("train.batch_size", 8),
    ("train.val_every", 1), ("train.val_samples", 2), ("train.kl_ramp_epochs", 2),
    ("train.device", "cpu"), ("train.compare_smoothing", "false"), ("smoothing.max_iter", 50),
))


def _age(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_plan_follows_the_run_directory(tmp_path):
    tensors = tmp_path / "tensors_5ms.h5"
    _age(tensors, 100)
    run = RunDir(tmp_path / "run")
    assert plan_task(run, tensors) == "new"
    run.path.mkdir()
    assert plan_task(run, tensors) == "overwrite"  # a directory left without a checkpoint
    _age(run.last_ckpt, 50)
    assert plan_task(run, tensors) == "resume"
    _age(run.rates_h5, 10)
    assert plan_task(run, tensors) == "overwrite"  # stopped between its rates and its scores
    _age(run.scores_json, 10)
    assert plan_task(run, tensors) == "skip"
    _age(tensors, 0)  # new tensors: the rates and the checkpoint are of other data
    assert plan_task(run, tensors) == "overwrite"


def test_tasks_cover_every_dataset_bin_and_seed(tmp_path):
    for dataset in ("mc_maze_small", "mc_rtt"):
        for bin_ms in (5, 20):
            _age(tmp_path / dataset / f"tensors_{bin_ms}ms.h5", 0)
    opts = TrainAllOptions(("mc_maze_small", "mc_rtt"), (5, 20), "test", seeds=2, data_dir=tmp_path,
                           run_root=tmp_path / "runs", seed=7, epochs=3, cpus_per_task=2)
    tasks = make_tasks(opts)
    assert [t.name for t in tasks][:4] == [
        "mc_maze_small_5ms_test_langevin_s0", "mc_maze_small_5ms_test_langevin_s1",
        "mc_maze_small_20ms_test_langevin_s0", "mc_maze_small_20ms_test_langevin_s1",
    ]
    assert len(tasks) == 8 and {t.dataset for t in tasks[4:]} == {"mc_rtt"}
    assert [t.config["train"]["seed"] for t in tasks[:2]] == [7, 8]
    assert {t.config["train"]["epochs"] for t in tasks} == {3}
    assert {t.config["train"]["threads"] for t in tasks} == {2}  # torch threads = the task's CPUs
    assert all(Path(t.run_root).is_absolute() and Path(t.tensors).is_absolute() for t in tasks)
    with pytest.raises(NlbkitError, match=r"dmfc_rsg/tensors_5ms.h5: tensor file not found"):
        make_tasks(TrainAllOptions(("dmfc_rsg",), (5,), data_dir=tmp_path))


def test_seed_ensembles_follow_each_dataset_unless_asked(tmp_path):
    """mc_maze_small's measured default is a 3-seed ensemble, other datasets one run; --seeds wins;
    the smoothing baseline, which no seed changes, is one run."""
    for dataset in ("mc_maze_small", "mc_rtt"):
        _age(tmp_path / dataset / "tensors_5ms.h5", 0)
    both = ("mc_maze_small", "mc_rtt")
    names = [t.name for t in make_tasks(TrainAllOptions(both, (5,), "val", data_dir=tmp_path))]
    assert names == [f"mc_maze_small_5ms_val_langevin_s{k}" for k in range(3)] + ["mc_rtt_5ms_val_langevin"]
    asked = make_tasks(TrainAllOptions(both, (5,), "val", seeds=2, data_dir=tmp_path))
    assert [t.tag for t in asked] == ["s0", "s1", "s0", "s1"]
    smoothing = make_tasks(TrainAllOptions(both, (5,), "val", model="smoothing", seeds=3, data_dir=tmp_path))
    assert [t.tag for t in smoothing] == [None, None]


def test_summary_lists_every_run_and_the_totals():
    results = [
        TaskResult("a_5ms_val_langevin", "new", "done", 12.5, 3, {"co-bps": 0.25}),
        TaskResult("b_5ms_val_langevin", "skip", "skipped"),
        TaskResult("c_5ms_val_langevin", "resume", "failed", 1.0, error="boom"),
    ]
    table = format_summary(results, 20.0).splitlines()
    assert table[0].split() == ["run", "action", "status", "wall", "s", "epochs", "co-bps"]
    assert table[1].split() == ["a_5ms_val_langevin", "new", "done", "12.5", "3", "0.2500"]
    assert table[2].split() == ["b_5ms_val_langevin", "skip", "skipped", "-", "-", "-"]
    assert table[-1] == "3 runs: 1 done, 1 skipped, 1 failed; wall 20.0 s (task time 13.5 s)"


def test_a_single_run_trains_in_process_then_is_skipped(tmp_path):
    write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")
    overrides = tuple(f"{k}={v}" for k, v in [("train.epochs", 2)]) + TINY
    opts = TrainAllOptions(("mc_maze_small",), (5,), "val", seeds=1, data_dir=tmp_path / "data",
                           run_root=tmp_path / "runs", overrides=overrides)
    lines: list[str] = []
    [result] = train_all(opts, log=lines.append)
    assert result.status == "done" and result.action == "new" and result.epochs == 2
    run = RunDir(tmp_path / "runs" / "mc_maze_small_5ms_val_langevin")
    assert run.rates_h5.exists() and run.config().model.hidden == tiny_config().model.hidden
    assert "start  mc_maze_small_5ms_val_langevin (new, in this process)" in lines[0]
    mtime = run.rates_h5.stat().st_mtime_ns
    lines.clear()
    [again] = train_all(opts, log=lines.append)
    assert again.status == "skipped" and again.scores == result.scores
    assert "skip   mc_maze_small_5ms_val_langevin (rates up to date)" in lines[0]
    assert run.rates_h5.stat().st_mtime_ns == mtime


def test_seed_runs_are_averaged_into_the_untagged_run(tmp_path):
    write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")
    opts = TrainAllOptions(("mc_maze_small",), (5,), "val", seeds=2, data_dir=tmp_path / "data",
                           run_root=tmp_path / "runs", overrides=("train.epochs=1", *TINY))
    tasks = make_tasks(opts)
    results = [run_task(task, "new") for task in tasks]
    assert [r.status for r in results] == ["done", "done"]
    assert [RunDir(Path(t.run_root) / t.name).config().train.seed for t in tasks] == [0, 1]
    lines: list[str] = []
    [mean] = ensemble_seeds(tasks, results, log=lines.append)
    output = RunDir(tmp_path / "runs" / "mc_maze_small_5ms_val_langevin")
    assert mean.status == "done" and output.rates_h5.exists() and "mean of 2 seeds" in lines[0]
    assert set(mean.scores) == set(results[0].scores)
    [again] = ensemble_seeds(tasks, results, log=lines.append)
    assert again.status == "skipped" and "ensemble up to date" in lines[1]
    failed = [results[0], TaskResult(tasks[1].name, "new", "failed", error="boom")]
    assert ensemble_seeds(tasks, failed, log=lines.append)[0].status == "failed"


# --- the whole thing on Ray, interrupted and continued --------------------------------------------
DATASETS = ("mc_maze_small", "area2_bump")


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> Path:
    from nlbkit.prepare.tensors import prepare
    from nlbkit.synth.generate import write_dataset

    data_dir = tmp_path_factory.mktemp("leaderboard") / "data"
    for dataset in DATASETS:
        write_dataset(dataset, data_dir, seed=0, scale="small")
        for bin_ms in (5, 20):
            prepare(dataset, bin_ms, data_dir, progress=False)
    return data_dir


def _command(data_dir: Path, run_root: Path) -> list[str]:
    settings = [f"--set={s}" for s in TINY]
    return [sys.executable, "-m", "nlbkit", "train-all", *DATASETS, "--bin-ms", "5", "--bin-ms", "20",
            "--phase", "val", "--epochs", "8", "--seeds", "1", "--cpus", "2", "--data-dir", str(data_dir),
            "--run-dir", str(run_root), *settings]


def _epochs(run: RunDir) -> list[int]:
    with open(run.metrics_csv, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_an_interrupted_leaderboard_continues_where_it_stopped(two_datasets, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    names = [f"{d}_{b}ms_val_langevin" for d in DATASETS for b in (5, 20)]
    # Four runs, two at a time: when the first ends, at least two have not; the third has started.
    proc = subprocess.Popen(_command(two_datasets, runs), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    first_log = []
    for line in proc.stdout:
        first_log.append(line)
        if re.search(r"\] done ", line):
            break
    # Stop it once a run that has not ended has a checkpoint (written after each epoch) and at
    # least half its 8 epochs to go, so it cannot finish between this check and the signal.
    deadline = time.monotonic() + 120

    def in_progress(name: str) -> bool:
        run = RunDir(runs / name)
        if not run.last_ckpt.exists() or run.rates_h5.exists() or not run.metrics_csv.exists():
            return False
        done = _epochs(run)
        return bool(done) and done[-1] <= 4

    while not any(in_progress(n) for n in names):
        assert time.monotonic() < deadline and proc.poll() is None, "no run in progress to interrupt"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    try:
        rest, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
        pytest.fail("train-all did not stop within 60 s of SIGTERM")
    first_log = "".join(first_log) + rest
    assert proc.returncode != 0 and "interrupted: run the same command to continue" in first_log, first_log
    assert "error: interrupted" not in first_log  # said once, the friendly way
    assert len(re.findall(r"\] start ", first_log)) >= 2, "two runs side by side"
    finished = {n: RunDir(runs / n).rates_h5.stat().st_mtime_ns for n in names if RunDir(runs / n).finished()}
    assert 1 <= len(finished) <= 2, first_log
    # Stopped after writing its rates but before its scores: not finished, trained afresh.
    half_written = {n for n in names if n not in finished and RunDir(runs / n).rates_h5.exists()}
    with_checkpoint = {
        n for n in names if n not in {*finished, *half_written} and RunDir(runs / n).last_ckpt.exists()
    }
    assert with_checkpoint
    # Ray's workers were shut down mid-run: each claim was released or left by a dead process.
    assert all(holder_of(runs / n) is None for n in names)

    command = _command(two_datasets, runs)
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    log = second.stdout
    assert second.returncode == 0, log + second.stderr
    for name in names:
        run = RunDir(runs / name)
        assert run.rates_h5.exists() and _epochs(run) == list(range(1, 9)), name
        if name in finished:
            assert f"skip   {name} (rates up to date)" in log
            assert run.rates_h5.stat().st_mtime_ns == finished[name]  # not redone
        else:
            action = "resume" if name in with_checkpoint else "(new|overwrite)"
            action = "overwrite" if name in half_written else action
            assert re.search(rf"start  {name} \({action},", log), log
            assert re.search(rf"done   {name} in [\d.]+ s \(8 epochs\)", log), log
    assert f"4 runs: {4 - len(finished)} done, {len(finished)} skipped, 0 failed" in log
    assert list(runs.glob(".*.claim")) == []  # every claim released, stale ones taken over
