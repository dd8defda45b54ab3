"""`nlbkit train-all`: the training stage of a whole leaderboard, every run a Ray task.

A task is one `train_run` of one dataset x bin (x seed, when an ensemble of seeds is asked for),
with the resources it declares (CPUs, a GPU or a share of one). Ray runs as many at once as the
instance has room for: a local instance by default, an existing cluster with `address`. Run
directories and tensor files must then lie on a file system every node sees.

What a task does follows from its run directory (`plan_task`), so an interrupted leaderboard
picks up where it stopped:

    skip       the run finished (rates.h5 and scores.json) after the tensor file was written
    resume     checkpoints/last.pt is there (and no up-to-date rates): training continues from it
    overwrite  the directory holds neither, or rates older than the tensors: trained afresh
    new        no directory yet

With `seeds > 1` each seed is a run tagged `s<k>` (seed `train.seed + k`) and the runs' mean
(`nlbkit.ensemble`) goes to the untagged run directory, the one `nlbkit submit` reads.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlbkit.config import build_config, set_value, to_dict
from nlbkit.errors import NlbkitError
from nlbkit.models import get_model
from nlbkit.nlb.datasets import check_bin, get_spec
from nlbkit.nlb.keys import PHASES
from nlbkit.paths import tensors_path
from nlbkit.runs import RunDir, run_name

ACTIONS = ("skip", "resume", "overwrite", "new")


class LeaderboardInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during the Ray stage, after the line saying how to continue."""

Log = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class TrainTask:
    """One run of the leaderboard: what to train, where its tensors are, and its configuration."""

    dataset: str
    bin_ms: int
    phase: str
    model: str
    tag: str | None
    tensors: str  # absolute path of the tensor file
    run_root: str  # absolute path of the run root
    config: dict[str, Any]  # the resolved run configuration (config.to_dict)

    @property
    def name(self) -> str:
        return run_name(self.dataset, self.bin_ms, self.phase, self.model, self.tag)

    @property
    def run(self) -> RunDir:
        return RunDir(Path(self.run_root) / self.name)


@dataclass
class TaskResult:
    """How a task ended: status 'done', 'failed' or 'skipped', its wall time (s) and scores."""

    name: str
    action: str
    status: str
    seconds: float = 0.0
    epochs: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    error: str = ""
    host: str = ""


@dataclass
class TrainAllOptions:
    """What `nlbkit train-all` was asked for."""

    datasets: tuple[str, ...]
    bins: tuple[int, ...] = (5, 20)
    phase: str = "test"
    model: str = "langevin"
    seeds: int | None = None  # None: each dataset's train.seeds
    data_dir: str | Path | None = None
    run_root: str | Path = "runs"
    config_file: str | Path | None = None
    overrides: tuple[str, ...] = ()
    seed: int | None = None
    epochs: int | None = None
    device: str | None = None
    address: str | None = None  # None: start a local Ray instance
    cpus: int | None = None  # CPUs of the local instance (default: all of this machine's)
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0


# --- planning (no Ray) ------------------------------------------------------------------------
def plan_task(run: RunDir, tensors: Path) -> str:
    """What a task must do, from its run directory's files: one of `ACTIONS` (see the module doc)."""
    if run.finished(newer_than=tensors):
        return "skip"
    if run.rates_h5.exists():
        return "overwrite"  # the tensors changed since, or it stopped before its scores
    if run.last_ckpt.exists():
        return "resume"
    return "overwrite" if run.path.exists() else "new"


def task_config(opts: TrainAllOptions, dataset: str, seed_offset: int) -> dict[str, Any]:
    """The dataset's configuration with --config, --set, --seed, --epochs and --device applied."""
    cfg = build_config(dataset, opts.config_file, list(opts.overrides), model=opts.model)
    given = {"train.seed": opts.seed, "train.epochs": opts.epochs, "train.device": opts.device}
    for key, value in given.items():
        if value is not None:
            set_value(cfg, key, value)
    if opts.gpus_per_task > 0:
        set_value(cfg, "train.device", "cuda")
    if cfg.train.threads == 0:
        # One torch thread per CPU the task holds: tasks side by side must not oversubscribe.
        set_value(cfg, "train.threads", max(1, int(opts.cpus_per_task)))
    set_value(cfg, "train.seed", cfg.train.seed + seed_offset)
    return to_dict(cfg)


def seed_count(opts: TrainAllOptions, dataset: str) -> int:
    """Runs per dataset x bin: --seeds, else the dataset's `train.seeds`; one for closed-form models."""
    if not get_model(opts.model).uses_torch:
        return 1  # the smoothing baseline does not depend on the seed
    if opts.seeds is not None:
        return opts.seeds
    return int(task_config(opts, dataset, 0)["train"]["seeds"])


def make_tasks(opts: TrainAllOptions) -> list[TrainTask]:
    """Every dataset x bin (x seed) of `opts`, datasets first; the tensor files must exist."""
    if not opts.datasets:
        raise NlbkitError("no dataset given")
    get_model(opts.model)
    if opts.seeds is not None and opts.seeds < 1:
        raise NlbkitError("--seeds must be at least 1")
    if opts.phase not in PHASES:
        raise NlbkitError(f"unknown phase '{opts.phase}': use one of {', '.join(PHASES)}")
    run_root = str(Path(opts.run_root).absolute())
    tasks = []
    for dataset in dict.fromkeys(opts.datasets):
        get_spec(dataset)
        for bin_ms in dict.fromkeys(opts.bins):
            check_bin(bin_ms)
            tensors = tensors_path(dataset, bin_ms, opts.data_dir).absolute()
            if not tensors.exists():
                raise NlbkitError(f"{tensors}: tensor file not found (run `nlbkit prepare` first)")
            seeds = seed_count(opts, dataset)
            for k in range(seeds):
                tag = f"s{k}" if seeds > 1 else None
                config = task_config(opts, dataset, k)
                tasks.append(TrainTask(dataset, bin_ms, opts.phase, opts.model, tag, str(tensors),
                                       run_root, config))
    return tasks


# --- one task (runs in a Ray worker) ----------------------------------------------------------
def run_task(task: TrainTask, action: str, events=None) -> TaskResult:
    """Train `task` as `action` says; a failure is reported in the result, only Ctrl-C raises."""
    start = time.perf_counter()
    host = socket.gethostname()
    if events is not None:
        # Fire and forget: a blocking put (ray.get inside Queue.put) makes Ray lend this task's CPU
        # to the next queued task meanwhile, so a third run started on two CPUs.
        events.actor.put_nowait.remote((task.name, host))
    from nlbkit.config import from_dict
    from nlbkit.train.loop import TrainingInterrupted
    from nlbkit.train.run import TrainRequest, train_run

    try:
        outcome = train_run(
            TrainRequest(
                task.dataset,
                from_dict(task.config),
                bin_ms=task.bin_ms,
                phase=task.phase,
                model=task.model,
                from_tensors=task.tensors,
                run_root=task.run_root,
                tag=task.tag,
                resume=action == "resume",
                overwrite=action == "overwrite",
                progress=False,
            ),
        )
    except TrainingInterrupted:
        raise  # Ctrl-C in this process (a single run trains here): stop, as `nlbkit train` does
    except Exception as exc:  # noqa: BLE001 - one failed run must not end the others
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return TaskResult(task.name, action, "failed", time.perf_counter() - start, error=message, host=host)
    return TaskResult(task.name, action, "done", time.perf_counter() - start, outcome.epochs,
                      dict(outcome.scores), host=host)


# --- the driver -------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def stamp(self) -> str:
        return f"[{time.perf_counter() - self.start:7.1f} s]"


def _end_line(result: TaskResult) -> str:
    if result.status == "failed":
        return f"failed {result.name} after {result.seconds:.1f} s: {result.error}"
    return f"done   {result.name} in {result.seconds:.1f} s ({result.epochs} epochs)"


def _run_on_ray(todo: list[tuple[TrainTask, str]], opts: TrainAllOptions, clock: _Clock,
                log: Log) -> list[TaskResult]:
    import ray
    from ray.util.queue import Empty, Queue

    check_cluster_resources(opts)
    events = Queue(actor_options={"num_cpus": 0})
    remote = ray.remote(run_task).options(
        num_cpus=opts.cpus_per_task, num_gpus=opts.gpus_per_task, max_retries=0
    )
    actions = {task.name: action for task, action in todo}
    pending = {remote.remote(task, action, events): task for task, action in todo}
    results = []

    def drain() -> None:
        while True:
            try:
                name, host = events.get_nowait()
            except Empty:
                return
            log(f"{clock.stamp()} start  {name} ({actions[name]}, {host})")

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for ref in ready:
            task = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died (out of memory, a node lost)
                result = TaskResult(task.name, actions[task.name], "failed", error=str(exc).splitlines()[0])
            results.append(result)
            log(f"{clock.stamp()} {_end_line(result)}")
        drain()  # after the ends: a run that starts in a slot just freed is logged after its predecessor
    return results


def check_cluster_resources(opts: TrainAllOptions) -> None:
    """A task asking for more than the whole instance has would wait forever: say so instead."""
    import ray

    total = ray.cluster_resources()
    for key, asked, flag in (("CPU", opts.cpus_per_task, "--cpus-per-task"),
                             ("GPU", opts.gpus_per_task, "--gpus-per-task")):
        if asked > total.get(key, 0):
            raise NlbkitError(f"{flag} {asked:g}, but the Ray instance has {total.get(key, 0):g} {key}(s)")


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # so that Ray is shut down (and its workers with it) on the way out


def train_all(opts: TrainAllOptions, log: Log = _print) -> list[TaskResult]:
    """Plan every task, skip the finished ones, run the rest on Ray; one result per task, in order.

    Logs one line per task as it starts and ends. Ray is started only when there is work; a
    single task on a local instance runs in this process (a local Ray start costs tens of seconds
    on a small machine and would buy nothing).
    """
    tasks = make_tasks(opts)
    clock = _Clock()
    plans = [(task, plan_task(task.run, Path(task.tensors))) for task in tasks]
    skipped = {}
    for task, action in plans:
        if action == "skip":
            scores = task.run.scores() or {}
            skipped[task.name] = TaskResult(task.name, action, "skipped", scores=scores)
            log(f"{clock.stamp()} skip   {task.name} (rates up to date)")
    todo = [(task, action) for task, action in plans if action != "skip"]
    ran: dict[str, TaskResult] = {}
    if len(todo) == 1 and not opts.address and opts.gpus_per_task == 0:
        task, action = todo[0]
        log(f"{clock.stamp()} start  {task.name} ({action}, in this process)")
        ran[task.name] = run_task(task, action)
        log(f"{clock.stamp()} {_end_line(ran[task.name])}")
    elif todo:
        ran = _run_all(todo, opts, clock, log)
    results = [skipped.get(t.name) or ran[t.name] for t in tasks]
    if any(task.tag for task in tasks):
        results += ensemble_seeds([t for t in tasks if t.tag], results, log, clock)
    log(format_summary(results, time.perf_counter() - clock.start))
    return results


def _run_all(todo: list[tuple[TrainTask, str]], opts: TrainAllOptions, clock: _Clock,
             log: Log) -> dict[str, TaskResult]:
    from nlbkit.ray_session import start_ray

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = False
    try:
        started = start_ray(opts.address, opts.cpus)
        signal.signal(signal.SIGTERM, _on_sigterm)  # ray.init puts its own handler (an abort) in place
        log(f"{clock.stamp()} ray: {len(todo)} task(s), {opts.cpus_per_task:g} CPU"
            f"{f' and {opts.gpus_per_task:g} GPU' if opts.gpus_per_task else ''} each")
        results = _run_on_ray(todo, opts, clock, log)
    except KeyboardInterrupt:
        log(f"{clock.stamp()} interrupted: run the same command to continue (finished runs are kept, "
            "started ones resume from their last checkpoint)")
        raise LeaderboardInterrupted from None
    finally:
        if started:
            import ray

            ray.shutdown()
        signal.signal(signal.SIGTERM, previous)
    return {r.name: r for r in results}


def ensemble_seeds(tasks: list[TrainTask], results: list[TaskResult], log: Log = _print,
                   clock: _Clock | None = None) -> list[TaskResult]:
    """Average each dataset x bin's seed runs into its untagged run directory (when all are done)."""
    from nlbkit.ensemble import ensemble_runs

    clock = clock or _Clock()
    status = {r.name: r.status for r in results}
    groups: dict[str, list[TrainTask]] = {}
    for task in tasks:
        groups.setdefault(run_name(task.dataset, task.bin_ms, task.phase, task.model), []).append(task)
    out = []
    for name, members in groups.items():
        output = RunDir(Path(members[0].run_root) / name)
        if any(status[m.name] == "failed" for m in members):
            out.append(TaskResult(name, "ensemble", "failed", error="a seed run failed"))
            continue
        newest = max(m.run.rates_h5.stat().st_mtime for m in members)
        if output.rates_h5.exists() and output.rates_h5.stat().st_mtime >= newest:
            out.append(TaskResult(name, "ensemble", "skipped", scores=output.scores() or {}))
            log(f"{clock.stamp()} skip   {name} (ensemble up to date)")
            continue
        start = time.perf_counter()
        result = ensemble_runs([m.run.path for m in members], output.path, overwrite=True)
        out.append(TaskResult(name, "ensemble", "done", time.perf_counter() - start,
                              scores=dict(result.ensemble.scores or {})))
        log(f"{clock.stamp()} done   {name} (mean of {len(members)} seeds)")
    return out


def format_summary(results: list[TaskResult], wall: float) -> str:
    """A table of every task (action, status, wall time, epochs, co-bps) and a totals line."""
    width = max([len(r.name) for r in results] + [3])
    lines = [f"{'run':<{width}}  {'action':<9}  {'status':<7}  {'wall s':>7}  {'epochs':>6}  {'co-bps':>7}"]
    for r in results:
        seconds = f"{r.seconds:7.1f}" if r.status != "skipped" else f"{'-':>7}"
        epochs = f"{r.epochs:6d}" if r.epochs else f"{'-':>6}"
        co_bps = r.scores.get("co-bps")
        score = f"{co_bps:7.4f}" if co_bps is not None else f"{'-':>7}"
        lines.append(f"{r.name:<{width}}  {r.action:<9}  {r.status:<7}  {seconds}  {epochs}  {score}")
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    busy = sum(r.seconds for r in results)
    lines.append(f"{len(results)} runs: {counts['done']} done, {counts['skipped']} skipped, "
                 f"{counts['failed']} failed; wall {wall:.1f} s (task time {busy:.1f} s)")
    return "\n".join(lines)
