"""`nlbkit evaluate RUN_DIR...`: score runs with the official NLB metrics, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(name="evaluate")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--phase", type=click.Choice(["val", "test"]), default=None,
              help="Phase to score in; default: each run's own phase (a run only scores in its phase).")
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), default=None,
              help="Test-phase targets in the layout of nlb_tools' eval_data_test.h5 "
                   "(`nlbkit fetch --targets` downloads it); default: <data dir>/eval_data_test.h5 "
                   "when present (generated data: the one `nlbkit synth` wrote in the dataset's "
                   "folder). Needed for test-phase runs.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where data/<dataset>/tensors_<bin>ms.h5 (val targets) lives; default: the tensor "
                   "file each run recorded, else $NLBKIT_DATA or data/.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON (nlb_tools' metric names).")
@click.option("--fewshot", is_flag=True,
              help="Also compute few-shot co-bps (Dabholkar & Barak 2025): Poisson readouts from the "
                   "run's latents, fit on k of its train trials, scored on the eval trials; mean and sd "
                   "over repeats. Slow: it computes the latents of every train and eval trial (a "
                   "LangevinFlow run's forward passes, minutes on a CPU for the big datasets). Never "
                   "part of a submission.")
@click.option("--fewshot-k", type=click.IntRange(min=1), default=16, show_default=True,
              help="Train trials per few-shot readout.")
@click.option("--fewshot-repeats", type=click.IntRange(min=1), default=20, show_default=True,
              help="Random k-trial subsets (seeded) the mean and sd are taken over.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also give 95% bootstrap intervals over the eval trials (N resamples, e.g. 1000) "
                   "of co-bps, fp-bps and vel R2, and each later run's paired difference from the "
                   "first run where both scored the same trials: a lead inside the noise shows as an "
                   "interval across 0.")
@click.option("--bootstrap-seed", type=int, default=0, show_default=True, help="Seed of the resampling.")
def command(run_dirs: tuple[Path, ...], phase: str | None, targets_file: Path | None,
            data_dir: Path | None, as_json: bool, fewshot: bool, fewshot_k: int,
            fewshot_repeats: int, n_boot: int, bootstrap_seed: int) -> None:
    """Score RUN_DIR(s) with co-bps, vel R2, psth R2, fp-bps and tp corr, as EvalAI did.

    \b
    Val-phase runs score against the val targets of `nlbkit prepare`; runs trained on a
    train-only file (`--from-tensors`) against the train trials they held out; test-phase runs
    against --targets. Several runs print as one table, runs of one dataset and bin next to each other
    (the smoothing baseline beside the model).
    \b
    Examples:
      nlbkit evaluate runs/mc_maze_small_5ms_val_langevin runs/mc_maze_small_5ms_val_smoothing
      nlbkit evaluate runs/*_test_langevin --targets data/eval_data_test.h5 --json
      nlbkit evaluate runs/mc_maze_small_5ms_val_langevin --fewshot --fewshot-k 16
      nlbkit evaluate runs/mc_maze_small_5ms_val_{smoothing,langevin} --bootstrap 1000
    """
    from nlbkit.scoring.evaluate import score_run
    from nlbkit.scoring.tables import format_table

    scores = [score_run(d, phase=phase, data_dir=data_dir, targets_file=targets_file) for d in run_dirs]
    if fewshot:
        from nlbkit.errors import NlbkitError
        from nlbkit.scoring.fewshot import column_names
        from nlbkit.train.fewshot import run_fewshot

        mean_name, sd_name = column_names(fewshot_k)
        for s in scores:
            try:
                result = run_fewshot(s.run.run_dir, data_dir=data_dir, targets_file=targets_file,
                                     k=fewshot_k, repeats=fewshot_repeats)
            except NlbkitError as exc:  # e.g. an ensemble: no latents; the other runs still get theirs
                click.echo(f"note: no few-shot co-bps: {exc}", err=True)
                continue
            s.scores[mean_name], s.scores[sd_name] = result.mean, result.sd
    intervals = None
    if n_boot:
        from nlbkit.scoring.bootstrap import run_intervals

        intervals = run_intervals(run_dirs, n_boot, bootstrap_seed, 0.95, data_dir, targets_file)
    if as_json:
        runs = [s.as_json() for s in scores]
        for run, extra in zip(runs, intervals or [], strict=False):
            run["bootstrap"] = extra.as_json()
        click.echo(json.dumps({"runs": runs}, indent=2))
    else:
        click.echo(format_table(scores))
        if intervals:
            from nlbkit.scoring.bootstrap import format_intervals

            click.echo(format_intervals(intervals, n_boot, bootstrap_seed, 0.95))
