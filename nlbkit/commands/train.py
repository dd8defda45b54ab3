"""`nlbkit train DATASET`: fit LangevinFlow or a baseline (NDT, LFADS, smoothing, GPFA), and score it."""

from __future__ import annotations

from pathlib import Path

import click

from nlbkit.commands import inside_workdir, plain_name
from nlbkit.commands.dataset_arg import DATASET
from nlbkit.commands.rerun import rerun_command
from nlbkit.config import PRESETS
from nlbkit.errors import NlbkitError
from nlbkit.models import MODEL_NAMES, REGISTRY


@click.command(name="train")
@click.argument("dataset", type=DATASET)
@click.option(
    "--model",
    "model_name",
    type=click.Choice(MODEL_NAMES),
    default="langevin",
    show_default=True,
    help="Registered models: " + "; ".join(f"{m.name}: {m.description}" for m in REGISTRY.values()) + ".",
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
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Named settings over the dataset's defaults (under --config and --set). cpu: a "
                   "CPU-sized LangevinFlow (hidden 64, batch 64, 150 epochs); on generated full-size "
                   "mc_maze at 20 ms, one thread: 5.8 s an epoch against 35.6 s for mc_maze's "
                   "defaults (docs/training.md).")
@click.option("--seed", type=int, default=None, help="Random seed (train.seed).")
@click.option("--ensemble", "n_seeds", type=click.IntRange(min=2), default=None, metavar="N",
              help="Train N members of seeds seed..seed+N-1 and write the mean of their rates to the "
                   "run directory (members beside it, tagged s0, s1, ...). mc_maze_small: the mean "
                   "of 3 seeds scores above single runs in 5-fold CV (docs/results.md, first table).")
@click.option("--bag", "n_bags", type=click.IntRange(min=2), default=None, metavar="K",
              help="Bagging: K members, member k validating on fold k of K folds of the training "
                   "trials (so every trial trains), their mean written as with --ensemble (members "
                   "tagged f0, f1, ...). On mc_maze_small 3 bagged members scored below 3 seeds "
                   "(docs/results-archive.md).")
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
    preset,
    seed,
    n_seeds,
    n_bags,
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
    checkpoints/{last,best}.pt, rates.h5 (submission key names) and scores.json. A network's
    (LangevinFlow, NDT, LFADS) scores are printed beside the smoothing baseline's on the same trials.

    \b
    Examples:
      nlbkit train mc_maze_small
      nlbkit train mc_maze_small --model smoothing
      nlbkit train mc_maze_small --model ndt --bin-ms 20
      nlbkit train mc_maze_small --set train.lr=1e-3 --set model.hidden=128 --epochs 50
      nlbkit train mc_maze_small --from-tensors mc_maze_small_train_5ms.h5
      nlbkit train mc_maze_small --ensemble 3
      nlbkit train mc_maze --bin-ms 20 --preset cpu
    """
    from nlbkit.config import build_config, dumps, set_value
    from nlbkit.nlb.marker import GENERATED_LABEL, is_generated
    from nlbkit.paths import dataset_dir
    from nlbkit.scoring.tables import side_by_side
    from nlbkit.sweep.results import sweep_config_tag
    from nlbkit.train.run import TrainRequest, train_run

    cfg = build_config(dataset, config_file, list(overrides), preset, model=model_name)
    for key, value in (("train.seed", seed), ("train.epochs", epochs), ("train.device", device)):
        if value is not None:
            set_value(cfg, key, value)
    if show_config:
        click.echo(dumps(cfg))
        return
    from nlbkit.train.members import member_plan

    plan = member_plan(n_seeds, n_bags)
    if plan is not None and not REGISTRY[model_name].uses_torch:
        raise NlbkitError(
            f"--ensemble/--bag average trained members; '{model_name}' is fitted in closed form"
        )
    from nlbkit.train.loop import TrainingDiverged, TrainingInterrupted

    if tag is None and config_file is not None:
        # A sweep's best configuration gets its own run directory beside the default one.
        tag = sweep_config_tag(config_file, dataset, int(bin_ms))
    try:
        if plan is not None:
            return _train_members(plan, dataset, cfg, int(bin_ms), phase, model_name, data_dir,
                                  from_tensors, run_root, tag, resume, overwrite, quiet)
        outcome = train_run(
            TrainRequest(
                dataset,
                cfg,
                bin_ms=int(bin_ms),
                phase=phase,
                model=model_name,
                data_dir=data_dir,
                from_tensors=from_tensors,
                run_root=run_root,
                tag=tag,
                resume=resume,
                overwrite=overwrite,
                progress=not quiet,
            ),
        )
    except TrainingInterrupted as exc:
        ctx = click.get_current_context()
        if exc.checkpoint_epoch or plan is not None:  # members: finished ones are kept on --resume
            again = rerun_command(ctx, drop=["--overwrite", "--resume"], add=["--resume"])
            hint = f"continue with: {again}"
        else:
            hint = f"start again with: {rerun_command(ctx, drop=['--resume'], add=['--overwrite'])}"
        raise NlbkitError(f"{exc}; {hint}") from None
    except TrainingDiverged as exc:
        lower = f"train.lr={cfg.train.lr / 10:g}"
        again = rerun_command(click.get_current_context(), drop=["--resume", "--overwrite"],
                              add=["--overwrite", "--set", lower])
        raise NlbkitError(f"{exc}; start again with a lower learning rate: {again}") from None
    except KeyboardInterrupt:
        raise NlbkitError(
            "interrupted outside training (reading data, predicting or fitting the baseline); "
            "run the same command again, with --resume if the run has a checkpoint"
        ) from None
    folder = Path(from_tensors).parent if from_tensors else dataset_dir(dataset, data_dir)
    click.echo(f"run: {outcome.run.path}" + (f" ({GENERATED_LABEL})" if is_generated(folder) else ""))
    if outcome.stop_note and quiet:
        click.echo(outcome.stop_note)
    if not outcome.scores:
        where = f" --data-dir {data_dir}" if data_dir else ""
        click.echo("no local scores (test phase: the tensor file holds no test targets); to score it, "
                   f"`nlbkit fetch --targets{where}` then `nlbkit evaluate {outcome.run.path}{where}`")
        return
    columns = {model_name: outcome.scores}
    if outcome.baseline:
        columns["smoothing"] = outcome.baseline
    click.echo(side_by_side(columns))
    if model_name == "langevin" and cfg.train.seeds > 1 and plan is None:
        click.echo(f"(the leaderboard path trains {dataset} as the mean of {cfg.train.seeds} seeds, measured "
                   f"better than one run: add --ensemble {cfg.train.seeds}; docs/results.md)")


def _train_members(plan, dataset, cfg, bin_ms, phase, model_name, data_dir, from_tensors, run_root, tag,
                   resume, overwrite, quiet) -> None:
    from nlbkit.scoring.tables import side_by_side
    from nlbkit.train.members import train_members

    result = train_members(
        dataset, cfg, plan, bin_ms=bin_ms, phase=phase, model=model_name, data_dir=data_dir,
        from_tensors=from_tensors, run_root=run_root, tag=tag, resume=resume, overwrite=overwrite,
        progress=not quiet, say=click.echo,
    )
    from nlbkit.nlb.marker import GENERATED_LABEL, is_generated
    from nlbkit.paths import dataset_dir

    folder = Path(from_tensors).parent if from_tensors else dataset_dir(dataset, data_dir)
    label = f", {GENERATED_LABEL}" if is_generated(folder) else ""
    click.echo(f"run: {result.ensemble.run_dir} (mean of {plan.count} members{label})")
    if not result.ensemble.ensemble.scores:
        click.echo("no local scores (test phase: the tensor file holds no test targets); score it with "
                   f"`nlbkit evaluate {result.ensemble.run_dir}` once the targets are fetched")
        return
    columns = {plan.label: result.ensemble.ensemble.scores}
    for k, member in enumerate(result.members):
        columns[plan.member_tag(k, None)] = member.scores
    if result.baseline:
        columns["smoothing"] = result.baseline
    click.echo(side_by_side(columns))
