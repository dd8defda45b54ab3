"""`nlbkit ensemble RUN_DIR... --output RUN_DIR`: average runs' rates into a new run."""

from __future__ import annotations

from pathlib import Path

import click

from nlbkit.commands import inside_workdir


@click.command(name="ensemble")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, callback=inside_workdir,
              help="Run directory to write (e.g. runs/mc_maze_small_5ms_val_ensemble).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where data/<dataset>/tensors_<bin>ms.h5 (val targets) lives; default: the tensor "
                   "file the runs recorded.")
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), default=None,
              help="Test-phase targets (nlb_tools' eval_data_test.h5) to score test-phase runs.")
def command(run_dirs: tuple[Path, ...], output: Path, overwrite: bool, data_dir: Path | None,
            targets_file: Path | None) -> None:
    """Average the rates of RUN_DIRs (seeds, sweep winners) into a run that evaluate and submit take.

    The runs must be of one dataset, bin and phase, on the same trials. The members' scores and the
    ensemble's are printed side by side (val phase, or test phase with --targets).

    \b
    Examples:
      nlbkit ensemble runs/mc_maze_small_5ms_val_langevin_s0 runs/mc_maze_small_5ms_val_langevin_s1 \\
          --output runs/mc_maze_small_5ms_val_ensemble
      nlbkit evaluate runs/mc_maze_small_5ms_val_ensemble
    """
    from nlbkit.ensemble import ensemble_runs
    from nlbkit.scoring.tables import format_table

    result = ensemble_runs(run_dirs, output, overwrite, data_dir, targets_file)
    click.echo(f"wrote {result.run_dir} (mean of {len(result.members)} runs)")
    scored = [*result.members, result.ensemble]
    if any(s.scores for s in scored):
        click.echo(format_table(scored))
    else:
        click.echo("no local scores (test phase: pass --targets FILE to score)")
