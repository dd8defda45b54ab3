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
                   "when present. Needed for test-phase runs.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where data/<dataset>/tensors_<bin>ms.h5 (val targets) lives; default: the tensor "
                   "file each run recorded, else $NLBKIT_DATA or data/.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON (nlb_tools' metric names).")
def command(run_dirs: tuple[Path, ...], phase: str | None, targets_file: Path | None,
            data_dir: Path | None, as_json: bool) -> None:
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
    """
    from nlbkit.scoring.evaluate import score_run
    from nlbkit.scoring.tables import format_table

    scores = [score_run(d, phase=phase, data_dir=data_dir, targets_file=targets_file) for d in run_dirs]
    if as_json:
        click.echo(json.dumps({"runs": [s.as_json() for s in scores]}, indent=2))
    else:
        click.echo(format_table(scores))
