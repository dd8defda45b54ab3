"""`nlbkit report RUN_DIR`: PNG figures of a run."""

from __future__ import annotations

from pathlib import Path

import click

from nlbkit.commands import inside_workdir


@click.command(name="report")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--output", "-o", type=click.Path(path_type=Path, file_okay=False), default=None,
              callback=inside_workdir,
              help="Folder for the PNG files (default RUN_DIR/report/).")
def command(run_dir: Path, output: Path | None) -> None:
    """Draw the figures of RUN_DIR as PNG files and list them.

    \b
    training_curves      loss, validation co-bps, KL weight and learning rate per epoch
    latent_trajectories  first principal components of the inferred latents, by condition
    rates_vs_spikes      predicted rates of held-out neurons against their smoothed spikes
    psth                 condition-averaged predicted rates against the true PSTHs
    decoded_velocity     hand velocity decoded from the rates against the true one
    true_rates           generated data: inferred rates against the true rates
    A figure whose pieces the run lacks (a smoothing run has no log or latents, a test-phase run
    no targets) is skipped with a note.
    """
    from nlbkit.nlb.marker import tensors_label
    from nlbkit.report.make import make_report
    from nlbkit.scoring.evaluate import read_run

    result = make_report(run_dir, output)
    info = read_run(run_dir)
    shown = tensors_label(info.dataset, info.tensors)
    click.echo(f"run: {run_dir} ({shown}, {info.bin_ms} ms, {info.phase})")
    for note in result.notes:
        click.echo(f"note: {note}")
    for path in result.written:
        click.echo(f"wrote {path}")
    for name, reason in result.skipped:
        click.echo(f"skipped {name}: {reason}")
