"""`nlbkit train DATASET`: fit LangevinFlow (or the smoothing baseline), write a run dir, print scores."""

from __future__ import annotations

from pathlib import Path

import click

from nlbkit.commands import inside_workdir, plain_name
from nlbkit.nlb.datasets import DATASET_NAMES


@click.command(name="train")
@click.argument("dataset", type=click.Choice(DATASET_NAMES))
@click.option(
    "--model",
    "model_name",
    type=click.Choice(["langevin", "smoothing"]),
    default="langevin",
    show_default=True,
    help="LangevinFlow or the NLB smoothing baseline.",
)
@click.option(
    "--bin-ms", type=click.Choice(["5", "20"]), default="5", show_default=True, help="Bin size (ms)."
)
@click.option(
    "--phase",
    type=click.Choice(["val", "test"]),
    default="val",
    show_default=True,
    help="val: fit 'train', score on 'val'. test: fit 'trainval', predict 'test'.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory (default data/, or $NLBKIT_DATA); reads <dataset>/tensors_<bin>ms.h5.",
)
@click.option(
    "--from-tensors",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read this tensor file instead. A file of train trials only (nlb_tools' train key names) "
    "gets a seeded share of its trials (train.eval_fraction) held out and scored.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML/JSON file of settings ({train: {lr: ...}} or dotted keys).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one setting, e.g. --set train.lr=1e-3 --set model.hidden=128 (repeatable).",
)
@click.option("--seed", type=int, default=None, help="Random seed (train.seed).")
@click.option("--epochs", type=int, default=None, help="Number of epochs (train.epochs).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="auto uses a GPU when there is one, with mixed precision (train.device).",
)
@click.option(
    "--run-dir",
    "run_root",
    type=click.Path(file_okay=False),
    default="runs",
    show_default=True,
    callback=inside_workdir,
    help="Root of run directories: <root>/<dataset>_<bin>ms_<phase>_<model>[_<tag>].",
)
@click.option("--tag", default=None, callback=plain_name,
              help="Suffix of the run directory's name (default with a sweep's --config: the sweep's "
                   "name, e.g. 'sweep'; with a train-only --from-tensors file: 'holdout').")
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again in an existing run directory.")
@click.option("--show-config", is_flag=True, help="Print the resolved configuration and exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(
    dataset,
    model_name,
    bin_ms,
    phase,
    data_dir,
    from_tensors,
    config_file,
    overrides,
    seed,
    epochs,
    device,
    run_root,
    tag,
    resume,
    overwrite,
    show_config,
    quiet,
) -> None:
    """Train a rate model on DATASET's tensors and score it locally.

    Writes runs/<dataset>_<bin>ms_<phase>_<model>/ with run.json, config.json, metrics.csv,
    checkpoints/{last,best}.pt, rates.h5 (submission key names) and scores.json. LangevinFlow's
    scores are printed beside the smoothing baseline's on the same trials.

    \b
    Examples:
      nlbkit train mc_maze_small
      nlbkit train mc_maze_small --model smoothing
      nlbkit train mc_maze_small --set train.lr=1e-3 --set model.hidden=128 --epochs 50
      nlbkit train mc_maze_small --from-tensors mc_maze_small_train_5ms.h5
    """
    from nlbkit.config import build_config, dumps, set_value
    from nlbkit.paths import dataset_dir
    from nlbkit.scoring.rates import format_table
    from nlbkit.sweep.results import sweep_config_tag
    from nlbkit.synth.marker import GENERATED_LABEL, is_generated
    from nlbkit.train.run import train_run

    cfg = build_config(dataset, config_file, list(overrides))
    for key, value in (("train.seed", seed), ("train.epochs", epochs), ("train.device", device)):
        if value is not None:
            set_value(cfg, key, value)
    if show_config:
        click.echo(dumps(cfg))
        return
    if tag is None and config_file is not None:
        # A sweep's best configuration gets its own run directory beside the default one.
        tag = sweep_config_tag(config_file, dataset, int(bin_ms))
    outcome = train_run(
        dataset,
        cfg,
        int(bin_ms),
        phase,
        model_name,
        data_dir,
        from_tensors,
        run_root,
        tag,
        resume=resume,
        overwrite=overwrite,
        progress=not quiet,
    )
    folder = Path(from_tensors).parent if from_tensors else dataset_dir(dataset, data_dir)
    click.echo(f"run: {outcome.run.path}" + (f" ({GENERATED_LABEL})" if is_generated(folder) else ""))
    if not outcome.scores:
        click.echo("no local scores (test phase: targets are not in the tensor file)")
        return
    columns = {model_name: outcome.scores}
    if outcome.baseline:
        columns["smoothing"] = outcome.baseline
    click.echo(format_table(columns))
