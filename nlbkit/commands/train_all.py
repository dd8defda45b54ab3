"""`nlbkit train-all DATASET...`: train every dataset x bin (x seed) of a leaderboard as Ray tasks."""

from __future__ import annotations

import sys

import click

from nlbkit.commands import inside_workdir
from nlbkit.models import MODEL_NAMES
from nlbkit.nlb.datasets import DATASET_NAMES
from nlbkit.nlb.keys import PHASES


@click.command(name="train-all")
@click.argument("datasets", nargs=-1, required=True, type=click.Choice(DATASET_NAMES))
@click.option("--bin-ms", "bins", type=click.Choice(["5", "20"]), multiple=True,
              help="Bin size (ms), repeatable; default: 5 and 20.")
@click.option("--phase", type=click.Choice(PHASES), default="test", show_default=True,
              help="val: fit 'train', score on 'val'. test: fit 'trainval', predict 'test'.")
@click.option("--model", "model_name", type=click.Choice(MODEL_NAMES), default="langevin",
              show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Runs per dataset x bin, tagged s0, s1, ... (seed train.seed + k); more than one "
                   "writes their mean (`nlbkit ensemble`) to the untagged run directory. Default: "
                   "the dataset's train.seeds (3 for mc_maze_small, measured; 1 elsewhere).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data directory (default data/, or $NLBKIT_DATA); reads <dataset>/tensors_<bin>ms.h5.")
@click.option("--run-dir", "run_root", type=click.Path(file_okay=False), default="runs", show_default=True,
              callback=inside_workdir, help="Root of run directories, as for `nlbkit train`.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML/JSON file of settings, applied to every dataset's defaults.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one setting for every run (repeatable), as for `nlbkit train --set`.")
@click.option("--seed", type=int, default=None, help="Random seed (train.seed).")
@click.option("--epochs", type=int, default=None, help="Number of epochs (train.epochs).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="train.device; --gpus-per-task > 0 implies cuda.")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="Run on an existing Ray cluster ('auto': the one this machine belongs to). "
                   "Default: a local Ray instance on this machine's CPUs.")
@click.option("--cpus", type=int, default=None,
              help="CPUs of the local Ray instance (default: all); --cpus / --cpus-per-task runs at once.")
@click.option("--cpus-per-task", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="CPUs each run holds (also its torch threads).")
@click.option("--gpus-per-task", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="GPUs each run holds (fractions share a GPU); > 0 trains on CUDA.")
def command(datasets, bins, phase, model_name, seeds, data_dir, run_root, config_file, overrides, seed,
            epochs, device, address, cpus, cpus_per_task, gpus_per_task) -> None:
    """Train DATASETs at every bin, each run a Ray task; skip finished runs, resume interrupted ones.

    A run whose rates.h5 is newer than its tensors is skipped; one with a checkpoint but no rates
    continues from it; any other is trained afresh. One line per run as it starts and ends, and a
    table at the end. `make leaderboard` and `make leaderboard-val` train through this command.

    \b
    Examples:
      nlbkit train-all mc_maze_small mc_maze_medium --phase val --epochs 50
      nlbkit train-all mc_maze mc_rtt area2_bump dmfc_rsg --bin-ms 5 --cpus-per-task 2
      nlbkit train-all mc_maze --address auto --gpus-per-task 0.25 --seeds 4
    """
    from nlbkit.errors import NlbkitError
    from nlbkit.train.parallel import LeaderboardInterrupted, TrainAllOptions, train_all

    opts = TrainAllOptions(
        datasets=tuple(datasets), bins=tuple(int(b) for b in bins) or (5, 20), phase=phase,
        model=model_name, seeds=seeds, data_dir=data_dir, run_root=run_root, config_file=config_file,
        overrides=tuple(overrides), seed=seed, epochs=epochs, device=device, address=address, cpus=cpus,
        cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
    )
    try:
        results = train_all(opts, log=click.echo)
    except LeaderboardInterrupted:
        sys.exit(130)  # how to continue is printed already; no second 'error: interrupted'
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        raise NlbkitError(f"{len(failed)} run(s) failed: {', '.join(failed)}; run the same command to retry")
