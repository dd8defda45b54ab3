"""Hyper-parameter sweeps of LangevinFlow on Ray Tune, each trial an ordinary training run.

Results tables and best configurations are written by `nlbkit.sweep.results`.

Layout of a sweep directory `<run root>/<name>/`:

    sweep.json          what was swept: dataset, bin, scheduler, space file, the base configuration
    tune/               Ray Tune's experiment (trial results, Tune checkpoints; what a resume reads)
    trials/<run>/       one run directory per trial, as `nlbkit train` writes it
    results.csv         one row per trial: status, epochs, best validation co-bps, eval scores, values
    best_config.json    the best trial's resolved configuration, for `nlbkit train --config`
    best_configs/       the best few, ranked

Trials report the validation co-bps of every validated epoch (the held-back share of the fitted
trials, `train.val_fraction`, never the scored eval trials) so that ASHA can stop poor trials early
and PBT can copy good ones; each report carries the run's checkpoint files, which PBT restores into
the exploiting trial's run directory. Trials are ranked by their best validation co-bps.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nlbkit.claims import claim
from nlbkit.config import (
    RunConfig,
    TrainConfig,
    build_config,
    flatten,
    from_dict,
    parse_assignment,
    set_value,
    to_dict,
    validate,
)
from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import check_bin, get_spec
from nlbkit.paths import atomic_path, check_plain_name, tensors_path, write_json
from nlbkit.ray_session import start_ray
from nlbkit.runs import RunDir, run_name
from nlbkit.sweep.results import RANK_METRIC, SweepResult, write_results
from nlbkit.sweep.space import SearchSpace, load_space, param_space, pbt_mutations, short_name
from nlbkit.train.checkpoint import load_checkpoint, save_checkpoint

METRIC = "val_co_bps"  # the latest validation co-bps: what the schedulers act on
SCHEDULERS = ("asha", "pbt")
CKPT_FILES = ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.csv", "config.json")
TRIAL_CLAIM_WAIT_S = 60.0
REPORTED = ("epoch", "val_co_bps", "best_co_bps", "loss", "nll", "kl", "val_nll", "lr")


@dataclass
class SweepOptions:
    """What `nlbkit sweep` was asked for."""

    dataset: str
    bin_ms: int = 5
    samples: int = 8
    scheduler: str = "asha"
    address: str | None = None  # None: start a local Ray instance
    cpus: int | None = None  # CPUs of the local instance (default: all of this machine's)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    data_dir: str | Path | None = None
    from_tensors: str | Path | None = None
    run_root: str | Path = "runs"
    name: str | None = None
    space_file: str | Path | None = None
    config_file: str | Path | None = None
    overrides: tuple[str, ...] = ()
    max_epochs: int | None = None
    restart: bool = False
    verbose: int = 1  # Tune's verbosity: 0 silent, 1 status tables, 2 every result

    def sweep_dir(self) -> Path:
        name = check_plain_name(self.name, "--name") if self.name else f"{self.dataset}_{self.bin_ms}ms_sweep"
        return Path(self.run_root).absolute() / name


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled values; sent to the Ray workers."""

    dataset: str
    bin_ms: int
    tensors: str
    trials_root: str
    base: dict[str, Any]  # the base run configuration (to_dict)


# --- inside a trial (runs in a Ray worker) ------------------------------------------------------
def trial_config(base: dict[str, Any], sampled: dict[str, Any]) -> RunConfig:
    """The base configuration with a trial's sampled values (nested as Tune passes them) applied."""
    cfg = from_dict(base)
    for key, value in flatten(sampled).items():
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def restore_checkpoint(folder: Path, run: RunDir, cfg: RunConfig) -> None:
    """Put a Tune checkpoint's run files into `run` so that training resumes from them.

    The checkpoint may come from another trial (a PBT exploit) with another learning rate: the
    saved optimiser then gets this trial's `train.lr`, else the perturbation would be lost.
    """
    for name in CKPT_FILES:
        source = folder / name
        if source.exists():
            target = run.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    donor = folder / "config.json"
    if donor.exists() and RunDir(folder).config().train.lr != cfg.train.lr and run.last_ckpt.exists():
        state = load_checkpoint(run.last_ckpt, "cpu", ("model", "optimizer"))
        for group in state["optimizer"]["param_groups"]:
            group["lr"] = cfg.train.lr
        save_checkpoint(state, run.last_ckpt)


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


class EpochReporter:
    """The per-epoch callback of a trial: reports each validated epoch to Tune with a checkpoint.

    The last epoch is not reported: a scheduler may stop a trial at any report, and the run must
    go on to write its rates and scores. Results are read back from the run directories.
    """

    def __init__(self, run: RunDir, last_epoch: int) -> None:
        self.run = run
        self.last_epoch = last_epoch
        self.last: dict[str, float] = {}

    def __call__(self, epoch: int, row: dict) -> None:
        if row.get("val_co_bps", "") == "":
            return  # not a validation epoch: nothing new for the scheduler
        self.last = {key: _number(row.get(key, "")) for key in REPORTED}
        self.last["epoch"] = epoch
        if epoch < self.last_epoch:
            self.report(self.last)

    def report(self, metrics: dict[str, float]) -> None:
        """Send `metrics` to Tune with a copy of the run's checkpoint files."""
        from ray import tune

        with tempfile.TemporaryDirectory(prefix="nlbkit-ckpt-") as tmp:
            for name in CKPT_FILES:
                source = self.run.path / name
                if source.exists():
                    (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, Path(tmp) / name)
            tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(tmp))


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """One trial: train a run directory under the sweep's `trials/`, reporting every validated epoch."""
    from ray import tune

    from nlbkit.train.run import TrainRequest, train_run

    cfg = trial_config(context.base, config)
    trial_id = tune.get_context().get_trial_id()
    name = run_name(context.dataset, context.bin_ms, "val", "langevin", trial_id)
    run = RunDir(Path(context.trials_root) / name)
    # A trial restarted from a checkpoint (PBT, a resume) may start while the process that ran it
    # before is still exiting: wait for that one's claim rather than fail. The sweep's driver holds
    # the sweep directory and Tune runs one attempt of a trial at a time, so a claim that another
    # node's attempt left (a lost node, a killed job) is taken over after the wait.
    with claim(run.path, wait_s=TRIAL_CLAIM_WAIT_S, take_foreign=True):
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                restore_checkpoint(Path(folder), run, cfg)
        reporter = EpochReporter(run, cfg.train.epochs)
        outcome = train_run(
            TrainRequest(
                context.dataset,
                cfg,
                bin_ms=context.bin_ms,
                phase="val",
                model="langevin",
                from_tensors=context.tensors,
                run_root=context.trials_root,
                tag=trial_id,
                resume=checkpoint is not None,
                overwrite=checkpoint is None,
                progress=False,
            ),
            on_epoch=reporter,
        )
    # No report after the last epoch: the run's files (metrics.csv, scores.json) hold it, and a
    # scheduler acting on a last report would only restart a trial that has ended.
    del outcome


# --- the driver ---------------------------------------------------------------------------------
def base_config(opts: SweepOptions, space: SearchSpace) -> RunConfig:
    """Dataset defaults, then --config, then the space's fixed values, then --set, then --max-epochs.

    A sweep ranks its trials on validation trials: where the defaults or --config train on every
    trial (`train.val_fraction` 0), a trial holds back the usual share instead.
    """
    cfg = build_config(opts.dataset, opts.config_file)
    if not cfg.train.holds_back_validation:
        cfg.train.val_fraction = TrainConfig.val_fraction
    for key, value in space.fixed.items():
        set_value(cfg, key, value)
    for text in opts.overrides:
        set_value(cfg, *parse_assignment(text))
    if opts.max_epochs is not None:
        set_value(cfg, "train.epochs", opts.max_epochs)
    if opts.gpus_per_trial > 0:
        set_value(cfg, "train.device", "cuda")
    validate(cfg)
    if not cfg.train.holds_back_validation:
        raise NlbkitError(
            "a sweep ranks its trials by their validation co-bps: train.val_fraction must be above 0"
        )
    return cfg


def make_scheduler(kind: str, space: SearchSpace, max_epochs: int):
    """ASHA (stops poor trials at epoch milestones) or PBT (copies good trials, perturbs values)."""
    from ray.tune.schedulers import ASHAScheduler

    if kind == "asha":
        grace = min(int(space.asha.get("grace_period", 10)), max_epochs)
        return ASHAScheduler(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=max(1, grace),
            reduction_factor=float(space.asha.get("reduction_factor", 3)),
        )
    if kind == "pbt":
        from nlbkit.sweep.pbt import SynchronousPBT

        interval = min(int(space.pbt.get("perturbation_interval", 10)), max_epochs)
        # Generations, as AutoLFADS: every trial reaches the interval, then the bottom quantile
        # copies the top one; deterministic where asynchronous exploits depend on timing.
        return SynchronousPBT(
            time_attr="epoch",
            perturbation_interval=max(1, interval),
            hyperparam_mutations=pbt_mutations(space),
            quantile_fraction=float(space.pbt.get("quantile_fraction", 0.25)),
        )
    raise NlbkitError(f"unknown scheduler '{kind}': use one of {', '.join(SCHEDULERS)}")


def check_local_resources(opts: SweepOptions) -> None:
    """On a local instance, a trial asking for more than the machine has would wait forever."""
    if opts.address:
        return
    cpus = opts.cpus or os.cpu_count() or 1
    if opts.cpus_per_trial > cpus:
        raise NlbkitError(f"--cpus-per-trial {opts.cpus_per_trial} exceeds the local instance's {cpus} CPUs")
    gpus = torch.cuda.device_count()
    if opts.gpus_per_trial > gpus:
        raise NlbkitError(
            f"--gpus-per-trial {opts.gpus_per_trial}, but torch sees {gpus} GPU(s) here; "
            "use --address for a cluster with GPUs"
        )


def progress_reporter(space: SearchSpace):
    from ray import tune

    return tune.CLIReporter(
        metric_columns={
            "epoch": "epoch", METRIC: "val co-bps", RANK_METRIC: "best"
        },
        parameter_columns={key.replace(".", "/"): short_name(key) for key in space.keys()},
        max_report_frequency=30,
        sort_by_metric=True,
    )


def run_sweep(opts: SweepOptions) -> SweepResult:
    """Run (or resume) a sweep and write its results, best configurations first; see the module doc."""
    get_spec(opts.dataset)
    check_bin(opts.bin_ms)
    if opts.scheduler not in SCHEDULERS:
        raise NlbkitError(f"unknown scheduler '{opts.scheduler}': use one of {', '.join(SCHEDULERS)}")
    if opts.samples < 1:
        raise NlbkitError("--samples must be at least 1")
    space = load_space(opts.dataset, opts.space_file)
    cfg = base_config(opts, space)
    tensors = Path(opts.from_tensors or tensors_path(opts.dataset, opts.bin_ms, opts.data_dir)).absolute()
    if not tensors.exists():
        raise NlbkitError(f"{tensors}: tensor file not found (run `nlbkit prepare` first, or --from-tensors)")
    check_local_resources(opts)
    sweep_dir = opts.sweep_dir()
    with claim(sweep_dir, "sweep"):  # one sweep command per sweep directory
        return _run_claimed(opts, space, cfg, tensors, sweep_dir)


def _run_claimed(opts: SweepOptions, space: SearchSpace, cfg: RunConfig, tensors: Path,
                 sweep_dir: Path) -> SweepResult:
    experiment = sweep_dir / "tune"
    if opts.restart and sweep_dir.exists():
        shutil.rmtree(sweep_dir)
    context = TrialContext(opts.dataset, opts.bin_ms, str(tensors), str(sweep_dir / "trials"), to_dict(cfg))
    started = start_ray(opts.address, opts.cpus)
    try:
        tuner = _tuner(opts, space, cfg, context, experiment)
        with warnings.catch_warnings():
            # Actor reuse needs a class trainable; a trial here restarts from its checkpoint instead.
            warnings.filterwarnings("ignore", message=".*reuse_actors.*", category=UserWarning)
            tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    plain = build_config(opts.dataset, opts.config_file, opts.overrides)
    return write_results(sweep_dir, experiment, space, plain)


def _tuner(opts: SweepOptions, space: SearchSpace, cfg: RunConfig, context: TrialContext, experiment: Path):
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial},
    )
    if tune.Tuner.can_restore(str(experiment)):
        _check_same_sweep(experiment.parent, opts, space)
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
    if experiment.parent.exists() and any(experiment.parent.iterdir()):
        raise NlbkitError(
            f"{experiment.parent}: exists but holds no sweep to resume; pass --restart or another --name"
        )
    write_json(experiment.parent / "sweep.json", {
        "dataset": opts.dataset, "bin_ms": opts.bin_ms, "scheduler": opts.scheduler,
        "samples": opts.samples, "space": space.source, "tensors": context.tensors, "base": context.base,
    })
    return tune.Tuner(
        trainable,
        param_space=param_space(space),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=opts.samples,
            scheduler=make_scheduler(opts.scheduler, space, cfg.train.epochs),
            reuse_actors=False,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment.name,
            storage_path=str(experiment.parent),
            verbose=opts.verbose,
            progress_reporter=progress_reporter(space),
            # PBT exploits a donor's latest checkpoint: keep a few, so none vanishes under it.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if opts.scheduler == "pbt" else 2),
        ),
    )


def trial_dirname(trial) -> str:
    """Tune's folder of a trial: its id (Tune's default name lists every sampled value)."""
    return trial.trial_id


def _check_same_sweep(sweep_dir: Path, opts: SweepOptions, space: SearchSpace) -> None:
    """A resumed sweep must be the one asked for (same dataset, bin and scheduler)."""
    import json

    meta_path = sweep_dir / "sweep.json"
    if not meta_path.exists():
        return
    meta = json.loads(meta_path.read_text())
    asked = {"dataset": opts.dataset, "bin_ms": opts.bin_ms, "scheduler": opts.scheduler}
    differ = [f"{k} {meta.get(k)} (asked: {v})" for k, v in asked.items() if meta.get(k) != v]
    if differ:
        raise NlbkitError(
            f"{sweep_dir}: resuming a sweep of {', '.join(differ)}; pass --restart or another --name"
        )
