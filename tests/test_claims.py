"""One writer per shared output: claims taken atomically, refused in one line, released at the end,
taken over from a killed holder; readers refuse a run that another process is writing.

Racers are separate processes let go at a barrier together, never staggered by sleeps.
"""

from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from eval_layouts import random_rates, write_run

from nlbkit.claims import ClaimHeld, claim, claim_path, holder_of
from nlbkit.cli import main
from nlbkit.runs import RunDir
from tests import claim_workers
from tests.training_fixtures import write_prepared

ROOT = Path(__file__).resolve().parents[1]
SPAWN = multiprocessing.get_context("spawn")
TINY = [f"--set={k}={v}" for k, v in (
    ("model.hidden", 8), ("model.ff_dim", 16), ("model.prediction_samples", 2), ("train.batch_size", 8),
    ("train.val_every", 1), ("train.val_samples", 2), ("train.kl_ramp_epochs", 2),
    ("train.val_fraction", 0.15), ("train.device", "cpu"), ("train.compare_smoothing", "false"),
)]


@contextlib.contextmanager
def held_elsewhere(target: Path):
    """`target` claimed by another live process for the duration of the block; yields its pid."""
    ready, release = SPAWN.Event(), SPAWN.Event()
    proc = SPAWN.Process(target=claim_workers.hold_until, args=(str(target), ready, release))
    proc.start()
    try:
        assert ready.wait(timeout=120), "the holder never took its claim"
        yield proc.pid
    finally:
        release.set()
        proc.join(timeout=60)
    assert proc.exitcode == 0


def _read_claim(target: Path) -> dict:
    return json.loads(claim_path(target).read_text())


# --- the claim itself ------------------------------------------------------------------------------
def test_a_claim_records_host_pid_and_start_and_is_released_also_on_error(tmp_path):
    target = tmp_path / "runs" / "a_run"
    with claim(target) as path:
        assert path == tmp_path / "runs" / ".a_run.claim"
        meta = _read_claim(target)
        assert meta["host"] == socket.gethostname() and meta["pid"] == os.getpid()
        stat = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
        assert meta["started"] == stat[19]
        assert holder_of(target) is None  # this process's own claim does not block its reads
    assert not path.exists()
    with pytest.raises(RuntimeError), claim(target):
        raise RuntimeError("boom")
    assert not path.exists()


def test_a_claim_nests_within_its_process_and_the_outer_block_releases_it(tmp_path):
    target = tmp_path / "ensemble"
    with claim(target) as path:
        with claim(target):
            assert path.exists()
        assert path.exists()  # still held by the outer block
    assert not path.exists()


def test_a_second_process_is_refused_in_one_line_naming_the_run_and_the_holder(tmp_path):
    target = tmp_path / "runs" / "mc_maze_small_5ms_val_langevin"
    with held_elsewhere(target) as pid:
        with pytest.raises(ClaimHeld) as caught:
            with claim(target):
                pytest.fail("two holders")
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{target}: run directory is being written by process {pid} on "
                                  f"{socket.gethostname()}")
        assert holder_of(target).pid == pid
    with claim(target):  # released by the other process: free again
        pass


def test_a_killed_holders_claim_is_stale_and_the_next_claim_takes_it_over(tmp_path):
    target = tmp_path / "run"
    ready = SPAWN.Event()
    proc = SPAWN.Process(target=claim_workers.hold_then_die, args=(str(target), ready))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == -signal.SIGKILL and ready.is_set()
    assert _read_claim(target)["pid"] == proc.pid  # left behind by the killed holder
    assert holder_of(target) is None  # readers see nobody writing
    with claim(target):
        assert _read_claim(target)["pid"] == os.getpid()
    assert not claim_path(target).exists()


def test_a_killed_holder_not_yet_reaped_by_its_parent_holds_nothing(tmp_path):
    target = tmp_path / "run"
    code = ("import os, signal, sys; from nlbkit.claims import claim\n"
            "with claim(sys.argv[1]):\n    os.kill(os.getpid(), signal.SIGKILL)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], env=env)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, left a zombie: not reaped yet
    assert Path(f"/proc/{proc.pid}").exists() and _read_claim(target)["pid"] == proc.pid
    assert holder_of(target) is None
    with claim(target):
        pass
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_a_reused_pid_does_not_keep_a_claim_but_another_hosts_claim_holds(tmp_path):
    target = tmp_path / "run"
    # A live pid (our parent) whose recorded start time is not its own: the id was reused.
    claim_path(target).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(),
                                              "started": "1", "command": "nlbkit train"}))
    with claim(target):
        assert _read_claim(target)["pid"] == os.getpid()
    claim_path(target).write_text(json.dumps({"host": "elsewhere", "pid": 1, "command": "nlbkit train"}))
    with pytest.raises(ClaimHeld, match=rf"process 1 on elsewhere.*delete {claim_path(target)}\)$"):
        with claim(target):
            pass
    assert holder_of(target).host == "elsewhere"
    # A sweep trial takes over what another node's earlier attempt left, once the wait is over.
    with claim(target, wait_s=0.3, take_foreign=True):
        assert _read_claim(target)["pid"] == os.getpid()


def test_an_unreadable_claim_file_stops_writers_with_the_file_named(tmp_path):
    target = tmp_path / "run"
    claim_path(target).write_text("{not json")
    with pytest.raises(ClaimHeld, match=rf"unreadable {claim_path(target)}\); delete that file if no nlbkit"):
        with claim(target):
            pass
    assert holder_of(target) is None  # it names no process a reader could wait for


@pytest.mark.parametrize("stale_first", [False, True], ids=["free", "stale claim present"])
def test_processes_started_together_get_exactly_one_claim(tmp_path, stale_first):
    racers, rounds = 4, 10
    if stale_first:  # every round begins with a dead holder's claim, which all racers try to break
        for k in range(rounds):
            claim_path(tmp_path / f"run{k}").write_text(json.dumps(
                {"host": socket.gethostname(), "pid": _dead_pid(), "command": "killed"}))
    start, end, results = SPAWN.Barrier(racers), SPAWN.Barrier(racers), SPAWN.Queue()
    procs = [SPAWN.Process(target=claim_workers.race_for_claim, args=(str(tmp_path), rounds, start, end,
                                                                     results)) for _ in range(racers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in range(racers * rounds)]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for k in range(rounds):
        this_round = [o for o in outcomes if o[0] == k]
        winners = [o for o in this_round if o[2] == "won"]
        assert len(winners) == 1, this_round
        for _, _, _, message in (o for o in this_round if o[2] == "refused"):
            assert f"being written by process {winners[0][1]} on" in message
        assert not claim_path(tmp_path / f"run{k}").exists()  # released by the winner


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- writers ---------------------------------------------------------------------------------------
@pytest.fixture
def tensors(tmp_path):
    return write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")


def _train_args(tensors: Path, run_root: Path, seed: int, epochs: int) -> list[str]:
    return ["mc_maze_small", "--from-tensors", str(tensors), "--run-dir", str(run_root), "--seed", str(seed),
            "--epochs", str(epochs), "--quiet", *TINY]


@pytest.mark.slow  # two interpreters importing torch, then three tiny trainings each: 15-18 s here
def test_two_trains_started_together_on_one_run_directory_one_trains(tensors, tmp_path):
    """Repeated: exactly one trains, the other exits non-zero with one line, and every file of the
    run is the winner's (its seed and epoch count, which the two racers do not share)."""
    rounds = 3
    racers = {0: (1, 2), 1: (2, 3)}  # racer -> (seed, epochs)
    args = {r: [_train_args(tensors, tmp_path / f"round{k}", seed, epochs) for k in range(rounds)]
            for r, (seed, epochs) in racers.items()}
    start, results = SPAWN.Barrier(2), SPAWN.Queue()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = {r: SPAWN.Process(target=claim_workers.train_at_the_gate,
                              args=(args[r], str(logs), start, results)) for r in racers}
    for proc in procs.values():
        proc.start()
    outcomes = [results.get(timeout=600) for _ in range(2 * rounds)]
    for proc in procs.values():
        proc.join(timeout=60)
        assert proc.exitcode == 0
    racer_of = {proc.pid: r for r, proc in procs.items()}
    for k in range(rounds):
        [won] = [o for o in outcomes if o[0] == k and o[2] == 0]
        [lost] = [o for o in outcomes if o[0] == k and o[2] != 0]
        seed, epochs = racers[racer_of[won[1]]]
        run = RunDir(tmp_path / f"round{k}" / "mc_maze_small_5ms_val_langevin")
        error = (logs / f"{k}_{lost[1]}.err").read_text().strip().splitlines()
        assert len(error) == 1 and error[0].startswith(f"error: {run.path}: run directory is being written "
                                                       f"by process {won[1]} on "), error
        assert (logs / f"{k}_{lost[1]}.out").read_text() == ""
        assert run.config().train.seed == seed and run.config().train.epochs == epochs
        assert run.info().seed == seed
        with open(run.metrics_csv, newline="") as handle:
            assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(1, epochs + 1))
        shown = (logs / f"{k}_{won[1]}.out").read_text()
        assert f"{run.scores()['co-bps']:.4f}" in shown  # the scores on disk are the ones it printed
        assert not claim_path(run.path).exists()
        assert sorted(p.name for p in run.path.iterdir()) == [
            "checkpoints", "config.json", "metrics.csv", "rates.h5", "run.json", "scores.json"]


@pytest.mark.slow  # one interpreter importing torch and training until it is killed: 10-14 s each here
@pytest.mark.parametrize("resumer", ["train --resume", "train-all"])
def test_a_killed_train_leaves_a_stale_claim_that_the_next_run_takes_over(tensors, tmp_path, resumer):
    runs = tmp_path / "runs"
    run = RunDir(runs / "mc_maze_small_5ms_val_langevin")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "nlbkit", "train", *_train_args(tensors, runs, 0, 400)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not run.last_ckpt.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.1)
    held = holder_of(run.path)
    assert held is not None and held.pid == proc.pid
    for flag in ("--resume", "--overwrite"):  # both take the same claim as a fresh start
        result = CliRunner().invoke(main, ["train", *_train_args(tensors, runs, 0, 400), flag])
        assert result.exit_code == 1 and f"being written by process {proc.pid}" in result.stderr, flag
    assert run.last_ckpt.exists()  # --overwrite removed nothing
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _read_claim(run.path)["pid"] == proc.pid  # the killed holder's claim is left behind
    if resumer == "train-all":  # its plan resumes a run with a checkpoint and no rates, in this process
        from nlbkit.train.parallel import TrainAllOptions, train_all

        opts = TrainAllOptions(("mc_maze_small",), (5,), "val", seeds=1, data_dir=tmp_path / "data",
                               run_root=runs, epochs=4, overrides=tuple(a[6:] for a in TINY))
        [done] = train_all(opts, log=lambda line: None)
        assert (done.action, done.status) == ("resume", "done"), done
    else:
        result = CliRunner().invoke(main, ["train", *_train_args(tensors, runs, 0, 4), "--resume"])
        assert result.exit_code == 0, result.output
    assert run.finished() and not claim_path(run.path).exists()


def test_prepare_submit_and_ensemble_refuse_an_output_being_written(tmp_path):
    rng = np.random.default_rng(0)
    members = [write_run(tmp_path / "runs", "mc_maze_small", 5, "val", "langevin",
                         random_rates("mc_maze_small", 5, rng), tag=f"s{k}") for k in range(2)]
    at_20ms = write_run(tmp_path / "runs", "mc_maze_small", 20, "val", "langevin",
                        random_rates("mc_maze_small", 20, rng))
    tensors = tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5"
    submission = tmp_path / "sub.h5"
    ensemble = tmp_path / "runs" / "mean"
    commands = {
        tensors: ["prepare", "mc_maze_small", "--data-dir", str(tmp_path / "data"), "-q"],
        submission: ["submit", str(members[0]), str(at_20ms), "--output", str(submission)],
        ensemble: ["ensemble", *map(str, members), "--output", str(ensemble)],
    }
    from nlbkit.synth.generate import write_dataset

    write_dataset("mc_maze_small", tmp_path / "data", seed=0, scale="small")
    what = {tensors: "tensor file", submission: "submission file", ensemble: "run directory"}
    for target, args in commands.items():
        with held_elsewhere(target) as pid:
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 1, result.output
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(
                f"error: {target}: {what[target]} is being written by process {pid} on "), lines
        assert not target.exists()


def test_a_sweep_directory_being_written_is_refused_before_ray_starts(tmp_path, monkeypatch):
    from nlbkit.sweep import run as sweep_run

    tensors = write_prepared(tmp_path / "t.h5")
    opts = sweep_run.SweepOptions("mc_maze_small", samples=1, cpus=1, from_tensors=tensors,
                                  run_root=tmp_path, verbose=0)
    monkeypatch.setattr(sweep_run, "start_ray", lambda *a: pytest.fail("Ray started"))
    with held_elsewhere(opts.sweep_dir()) as pid, pytest.raises(ClaimHeld, match=f"sweep is being written by "
                                                                              f"process {pid} on"):
        sweep_run.run_sweep(opts)


def test_a_waiting_claim_gets_the_output_once_its_holder_ends(tmp_path):
    import threading

    target = tmp_path / "trial"
    ready, release = SPAWN.Event(), SPAWN.Event()
    proc = SPAWN.Process(target=claim_workers.hold_until, args=(str(target), ready, release))
    proc.start()
    assert ready.wait(timeout=120)
    with pytest.raises(ClaimHeld, match=f"process {proc.pid} "):
        with claim(target):
            pass
    # The holder ends a moment after the waiting starts (a restarted trial's predecessor exiting).
    threading.Timer(1.0, release.set).start()
    with claim(target, wait_s=60):
        assert _read_claim(target)["pid"] == os.getpid()
    proc.join(timeout=60)
    assert proc.exitcode == 0


def test_an_ensemble_being_trained_is_refused_before_any_member_trains(tensors, tmp_path):
    runs = tmp_path / "runs"
    output = runs / "mc_maze_small_5ms_val_langevin"
    with held_elsewhere(output) as pid:
        result = CliRunner().invoke(main, ["train", *_train_args(tensors, runs, 0, 1), "--ensemble", "2"])
    assert result.exit_code == 1 and f"run directory is being written by process {pid} on" in result.stderr
    assert sorted(p.name for p in runs.iterdir()) == []  # no member started


def test_a_train_all_task_on_a_run_being_written_fails_in_one_line(tensors, tmp_path):
    from nlbkit.train.parallel import TrainAllOptions, make_tasks, run_task

    opts = TrainAllOptions(("mc_maze_small",), (5,), "val", seeds=1, data_dir=tmp_path / "data",
                           run_root=tmp_path / "runs", epochs=1, overrides=tuple(a[6:] for a in TINY))
    [task] = make_tasks(opts)
    with held_elsewhere(task.run.path) as pid:
        result = run_task(task, "new")
    assert result.status == "failed" and "\n" not in result.error
    assert result.error.startswith(f"ClaimHeld: {task.run.path}: run directory is being written by "
                                   f"process {pid} on ")
    assert not task.run.path.exists()


def test_a_cross_validation_folder_being_written_is_refused_before_any_fold_trains(tmp_path):
    from nlbkit.train.cv import run_cv
    from tests.training_fixtures import tiny_config, write_train_only

    tensors = write_train_only(tmp_path / "train_5ms.h5")
    out = tmp_path / "cv"
    with held_elsewhere(out) as pid, pytest.raises(ClaimHeld, match=f"{out}: cross-validation folder is "
                                                                    f"being written by process {pid} on"):
        run_cv("mc_maze_small", tiny_config(), tensors, 5, out)
    assert not out.exists()


def test_a_busy_shared_baseline_is_fitted_under_the_runs_own_tag(tensors, tmp_path):
    from nlbkit.train.run import TrainRequest, train_run
    from tests.training_fixtures import tiny_config

    runs = tmp_path / "runs"
    shared = runs / "mc_maze_small_5ms_val_smoothing"
    with held_elsewhere(shared):
        outcome = train_run(
            TrainRequest(
                "mc_maze_small",
                tiny_config("train.compare_smoothing=true", "train.epochs=1"),
                from_tensors=tensors,
                run_root=runs,
                tag="a",
                progress=False,
            ),
        )
    own = RunDir(runs / "mc_maze_small_5ms_val_smoothing_a")
    assert outcome.baseline and outcome.baseline == own.scores()
    assert not shared.exists()


# --- readers ---------------------------------------------------------------------------------------
def test_evaluate_report_and_leaderboard_say_a_run_is_still_being_written(tmp_path):
    rng = np.random.default_rng(1)
    run_dir = write_run(tmp_path / "runs", "mc_maze_small", 5, "val", "langevin",
                        random_rates("mc_maze_small", 5, rng))
    with held_elsewhere(run_dir) as pid:
        meta = _read_claim(run_dir)
        since = meta["since"][:19].replace("T", " ")
        expected = (f"error: {run_dir}: still being written by process {pid} on {socket.gethostname()}, "
                    f"`{meta['command']}`, since {since} UTC; read it once that has finished")
        for args in (["evaluate", str(run_dir)], ["report", str(run_dir)], ["leaderboard", str(run_dir)]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 1, (args, result.output)
            assert result.stderr.strip() == expected, args
    assert holder_of(run_dir) is None
