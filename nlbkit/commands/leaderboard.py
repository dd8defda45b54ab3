"""`nlbkit leaderboard RUN_DIR...`: where scored runs would rank among the published NLB'21 entries."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="leaderboard")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), default=None,
              help="Test-phase targets in the layout of nlb_tools' eval_data_test.h5; default: "
                   "<data dir>/eval_data_test.h5 (`nlbkit fetch --targets`; generated data: the "
                   "one `nlbkit synth` wrote in the dataset's folder).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the val targets live (as for `nlbkit evaluate`).")
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None,
              help="Also write the same tables as JSON to this file.")
@click.option("--figures", "figures_dir", type=click.Path(path_type=Path), default=None,
              help="Write one PNG per dataset and bin here: published entries as bars, nlbkit's runs "
                   "highlighted, one panel per metric.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also give each run's 95% bootstrap interval of co-bps over its eval trials (N "
                   "resamples, e.g. 1000) and the ranks among the published entries at its ends.")
def command(run_dirs: tuple[Path, ...], targets_file: Path | None, data_dir: Path | None,
            json_file: Path | None, figures_dir: Path | None, n_boot: int) -> None:
    """Score RUN_DIR(s) as `nlbkit evaluate` does and rank them among published results.

    \b
    For each dataset and bin: the published entries (nlbkit/nlb/published.csv; sources and caveats
    in docs/published.md) and the runs, ranked by co-bps, every metric beside them, and the rank each
    run would have had among the published entries. Each run's scope is printed: phase, bin, number
    of eval trials scored, and whether the model saw the val trials (test-phase runs train on
    train+val). Test-phase runs score against the public eval_data_test.h5; val-phase runs are only
    compared with published val-phase entries, and there are none with a source yet.
    \b
    Examples:
      nlbkit leaderboard runs/mc_maze_5ms_test_langevin runs/mc_maze_5ms_test_smoothing
      nlbkit leaderboard runs/*_test_* --json leaderboard.json --figures leaderboard/
      nlbkit leaderboard runs/mc_maze_small_20ms_test_ensemble --bootstrap 1000
    """
    from nlbkit.scoring.leaderboard import format_boards, rank_runs, write_figures, write_json

    boards = rank_runs(run_dirs, data_dir=data_dir, targets_file=targets_file)
    click.echo(format_boards(boards))
    if n_boot:
        from nlbkit.scoring.leaderboard import format_rank_intervals

        click.echo(format_rank_intervals(boards, n_boot, data_dir=data_dir, targets_file=targets_file))
    if json_file is not None:
        click.echo(f"\nwrote {write_json(boards, json_file)}")
    if figures_dir is not None:
        for path in write_figures(boards, figures_dir):
            click.echo(f"wrote {path}")
