"""`nlbkit cv DATASET TENSORS`: K-fold cross-validation of registered models on train trials."""

from __future__ import annotations

import click

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import DATASET_NAMES


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise NlbkitError(f"{what} must be comma-separated integers, got '{text}'") from None


@click.command(name="cv")
@click.argument("dataset", type=click.Choice(DATASET_NAMES))
@click.argument("tensors", type=click.Path(dir_okay=False))
@click.option(
    "--bin-ms",
    type=click.Choice(["5", "20"]),
    default="5",
    show_default=True,
    help="Bin size (ms); 20 sums the 5 ms file's spikes over 4 bins and averages its behaviour.",
)
@click.option("--folds", "n_folds", type=int, default=5, show_default=True, help="Number of folds.")
@click.option("--fold-size", type=int, default=None, help="Trials per fold (default: trials // folds).")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the trial permutation.")
@click.option("--seeds", default="0,1", show_default=True, help="Training seeds, comma-separated.")
@click.option("--folds-subset", default=None, help="Run only these folds, e.g. 0,1 (choose settings there).")
@click.option(
    "--models", default="langevin,smoothing", show_default=True,
    help="Models to run, comma-separated (langevin, ndt, lfads, gpfa, smoothing); each with its own "
         "defaults for the dataset, under --config and --set."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML/JSON file of settings, as for `nlbkit train`.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one setting, e.g. --set train.fit_eval_heldin=true (repeatable).",
)
@click.option("--epochs", type=int, default=None, help="Number of epochs (train.epochs).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/cv",
    show_default=True,
    help="Folder of cv.csv and the runs' directories.",
)
@click.option("--ensemble", "n_seeds", type=click.IntRange(min=2), default=None, metavar="N",
              help="LangevinFlow as the mean of N seeds (seeds s..s+N-1 for each --seeds s), as "
                   "`nlbkit train --ensemble N`; rows of the members and of their mean.")
@click.option("--bag", "n_bags", type=click.IntRange(min=2), default=None, metavar="K",
              help="LangevinFlow as a bagging of K members, as `nlbkit train --bag K`.")
@click.option("--mix", "mixes", multiple=True, metavar="A+B[+C]",
              help="A mixed ensemble: per fold and seed, the mean of these models' rates, scored as a "
                   "row of its own (models among --models; repeatable), e.g. --mix langevin+lfads.")
@click.option("--progress", is_flag=True, help="Show each training run's progress bar.")
@click.option("--reference", default=None, metavar="MODEL",
              help="Model the others are compared with, pair by pair (fold x seed): mean ± sd of "
                   "the difference, how often above, a 95% interval over folds. Default: smoothing "
                   "when it runs, else the first of --models.")
def command(
    dataset,
    tensors,
    bin_ms,
    n_folds,
    fold_size,
    split_seed,
    seeds,
    folds_subset,
    models,
    config_file,
    overrides,
    epochs,
    out_dir,
    n_seeds,
    n_bags,
    mixes,
    progress,
    reference,
) -> None:
    """Cross-validate models (LangevinFlow and the smoothing baseline by default) on TENSORS, a
    5 ms file of train trials only (nlb_tools' train key names at its root).

    Each fold of trials (seeded permutation, disjoint folds) is scored with the official metrics
    after fitting on every other trial; prints mean ± sd over folds x seeds, each model's paired
    difference from the reference model (--reference) per fold and seed, and writes
    <out>/cv.csv (one row per model x fold x seed, then the summary rows).

    \b
    Examples:
      nlbkit cv mc_maze_small mc_maze_small_train_5ms.h5
      nlbkit cv mc_maze_small mc_maze_small_train_5ms.h5 --bin-ms 20 --folds-subset 0,1
      nlbkit cv mc_maze_small train.h5 --models langevin,ndt,lfads,gpfa,smoothing --reference smoothing
      nlbkit cv mc_maze_small train.h5 --set train.fit_eval_heldin=true --out runs/cv_heldin
      nlbkit cv mc_maze_small train.h5 --models langevin --seeds 0 --bag 3 --out runs/cv_bag3
    """
    from nlbkit.config import build_config, set_value
    from nlbkit.models import get_model
    from nlbkit.train.cv import CvPlan, format_paired, format_summary, paired_differences, run_cv
    from nlbkit.train.members import member_plan

    members = member_plan(n_seeds, n_bags)

    names = [m.strip() for m in models.split(",") if m.strip()]
    configs = {}
    for name in names:
        get_model(name)
        configs[name] = build_config(dataset, config_file, list(overrides), model=name)
        if epochs is not None:
            set_value(configs[name], "train.epochs", epochs)
    plan = CvPlan(
        n_folds=n_folds,
        fold_size=fold_size,
        split_seed=split_seed,
        seeds=_ints(seeds, "--seeds"),
        folds=_ints(folds_subset, "--folds-subset"),
        models=names,
        members=members,
        mixes=[tuple(part.strip() for part in mix.split("+") if part.strip()) for mix in mixes],
    )
    result = run_cv(
        dataset, configs, tensors, int(bin_ms), out_dir, plan, progress=click.echo, train_progress=progress
    )
    click.echo(format_summary(result.summary))
    ran = list(dict.fromkeys(r["model"] for r in result.rows))
    if reference is not None and reference not in ran:
        raise NlbkitError(f"--reference {reference}: not among the models that ran ({', '.join(ran)})")
    if len(ran) > 1:
        base = reference or ("smoothing" if "smoothing" in ran else ran[0])
        click.echo(format_paired(paired_differences(result.rows, base)))
    click.echo(f"csv: {result.csv_path}")
