"""`nlbkit sweep DATASET`: search LangevinFlow's hyper-parameters on Ray Tune."""

from __future__ import annotations

import click

from nlbkit.commands import inside_workdir, plain_name
from nlbkit.commands.dataset_arg import DATASET


@click.command(name="sweep")
@click.argument("dataset", type=DATASET)
@click.option("--samples", type=int, default=8, show_default=True, help="Number of trials.")
@click.option("--scheduler", type=click.Choice(["asha", "pbt"]), default="asha", show_default=True,
              help="asha: stop poor trials early. pbt: population-based training (copy good trials' "
                   "checkpoints, perturb their learning rate, KL weight and dropouts).")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="Run on an existing Ray cluster ('auto': the one this machine belongs to). "
                   "Default: a local Ray instance on this machine's CPUs.")
@click.option("--cpus", type=int, default=None,
              help="CPUs of the local Ray instance (default: all); trials run --cpus / --cpus-per-trial "
                   "at a time.")
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True,
              help="CPUs Ray reserves for each trial (a fraction lets trials share a CPU).")
@click.option("--gpus-per-trial", type=float, default=0.0, show_default=True,
              help="GPUs per trial (fractions share a GPU); > 0 trains on CUDA.")
@click.option("--bin-ms", type=click.Choice(["5", "20"]), default="5", show_default=True,
              help="Bin size (ms): reads <dataset>/tensors_<bin>ms.h5.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data directory (default data/, or $NLBKIT_DATA); reads <dataset>/tensors_<bin>ms.h5.")
@click.option("--from-tensors", type=click.Path(dir_okay=False), default=None,
              help="Read this tensor file instead (as `nlbkit train --from-tensors`).")
@click.option("--run-dir", "run_root", type=click.Path(file_okay=False), default="runs", show_default=True,
              callback=inside_workdir,
              help="Root of run directories; the sweep goes to <root>/<name>/.")
@click.option("--name", default=None, callback=plain_name,
              help="Sweep directory name (default <dataset>_<bin>ms_sweep).")
@click.option("--space", "space_file", type=click.Path(dir_okay=False), default=None,
              help="Search-space JSON file (default: nlbkit/sweep/spaces/<dataset>.json).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Base configuration file, as for `nlbkit train --config`.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one base setting (repeatable), as for `nlbkit train --set`.")
@click.option("--max-epochs", type=int, default=None,
              help="Epochs per trial (train.epochs; also the ASHA horizon).")
@click.option("--restart", is_flag=True, help="Delete an existing sweep of this name and start again.")
@click.option("--verbose", type=click.IntRange(0, 2), default=1, show_default=True,
              help="0: final table only; 1: a status table every 30 s; 2: every trial result.")
def command(dataset, samples, scheduler, address, cpus, cpus_per_trial, gpus_per_trial, bin_ms, data_dir,
            from_tensors, run_root, name, space_file, config_file, overrides, max_epochs, restart,
            verbose) -> None:
    """Search LangevinFlow's configuration for DATASET on Ray Tune, scored by validation co-bps.

    Each trial is an ordinary run directory under <run-dir>/<name>/trials/. An interrupted sweep
    resumes when the same command is run again. The best configuration is written to
    <run-dir>/<name>/best_config.json, for `nlbkit train DATASET --config` to reuse.

    \b
    Examples:
      nlbkit sweep mc_maze_small --samples 16 --max-epochs 100
      nlbkit sweep mc_maze_small --scheduler pbt --samples 8
      nlbkit sweep mc_maze --address auto --gpus-per-trial 0.5 --samples 64
    """
    from nlbkit.sweep.results import format_rows
    from nlbkit.sweep.run import SweepOptions, run_sweep

    opts = SweepOptions(
        dataset=dataset, bin_ms=int(bin_ms), samples=samples, scheduler=scheduler, address=address,
        cpus=cpus, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, data_dir=data_dir,
        from_tensors=from_tensors, run_root=run_root, name=name, space_file=space_file,
        config_file=config_file, overrides=tuple(overrides), max_epochs=max_epochs, restart=restart,
        verbose=verbose,
    )
    click.echo(f"sweep: {opts.sweep_dir()}")
    result = run_sweep(opts)
    click.echo(format_rows(result.rows))
    if result.unfinished:
        click.echo(f"interrupted: {result.unfinished} trial(s) unfinished; run the same command to resume")
    if result.best_config is not None:
        click.echo(f"best configuration: {result.best_config}")
        source = f" --from-tensors {from_tensors}" if from_tensors else ""
        click.echo(f"reuse it: nlbkit train {dataset} --bin-ms {bin_ms}{source} "
                   f"--config {result.best_config}")
