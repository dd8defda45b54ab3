"""`nlbkit validate FILE`: check a submission file before upload, and score it in the val phase."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="validate")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--phase", type=click.Choice(["val", "test"]), default=None,
              help="Phase of the file; default: the file's 'phase' attribute, else test.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where data/<dataset>/tensors_<bin>ms.h5 lives (shapes; val targets).")
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), default=None,
              help="Test-phase targets (eval_data_test.h5 layout): check windows and score against them.")
@click.option("--subset", is_flag=True,
              help="The file holds some datasets on purpose (a demo, a partial leaderboard): no warning "
                   "that the scaled mc_maze sets, one leaderboard entry, are incomplete.")
def command(file: Path, phase: str | None, data_dir: Path | None, targets_file: Path | None,
            subset: bool) -> None:
    """Check FILE: group names, keys, dtypes, shapes, and NaN/negative rates where scored.

    \b
    Every problem is listed, one per line; the exit status is 1 if there is any. In the val phase
    (or with --targets) a valid file is also scored with the NLB metrics.
    """
    from nlbkit.errors import NlbkitError
    from nlbkit.scoring.tables import format_results
    from nlbkit.submit.validate import validate_submission

    report = validate_submission(file, phase, data_dir, targets_file, subset=subset)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for error in report.errors:
        click.echo(f"invalid: {error}", err=True)
    if not report.ok:
        raise NlbkitError(f"{file}: {len(report.errors)} problem(s); not fit for upload")
    click.echo(f"{file}: valid {report.phase}-phase submission ({', '.join(report.groups)})")
    if report.scores:
        click.echo(format_results(report.scores))
