"""`nlbkit predict RUN_DIR --input FILE.h5 --output RATES.h5`."""

from __future__ import annotations

import click

from nlbkit.commands import inside_workdir


@click.command(name="predict")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="HDF5 holding eval_spikes_heldin (and optionally train_spikes_heldin), at its root or in "
    "the run phase's groups of a `nlbkit prepare` file.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    callback=inside_workdir,
    help="Rates file to write (one group named after dataset and bin, submission key names).",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def command(run_dir, input_path, output, device) -> None:
    """Rates per bin from a trained run (its best checkpoint) for the trials of an input file."""
    from nlbkit.train.run import predict_file

    path = predict_file(run_dir, input_path, output, device=device)
    click.echo(f"wrote {path}")
