"""`nlbkit synth`: generate datasets in the exact NLB layout, with their true rates."""

from __future__ import annotations

import time

import click

from nlbkit.commands.dataset_arg import DATASET_OR_ALL
from nlbkit.nlb.datasets import DATASET_NAMES


@click.command(name="synth")
@click.argument("dataset", type=DATASET_OR_ALL)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root of the data directory (default: $NLBKIT_DATA or data/).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator.")
@click.option("--scale", type=click.Choice(["small", "full"]), default="small", show_default=True,
              help="small: tens of trials and units, seconds to write (tests, demos); "
                   "full: the real dataset's trial and unit counts.")
@click.option("--force", is_flag=True,
              help="Replace files that nlbkit synth did not write (real data) too.")
def command(dataset: str, data_dir: str | None, seed: int, scale: str, force: bool) -> None:
    """Generate DATASET (or all seven) as train and test NWB files under the real NLB names.

    \b
    Spikes are Poisson from rates exp(C z + b) driven by a Lorenz latent system; behaviour is a
    linear read-out of the latents. Writes <data-dir>/<dataset>/ with the train NWB, the test
    NWB, eval_data_test.h5 (the test trials' targets, which `evaluate` scores test-phase runs
    against) and ground_truth.h5 (the true rates, for oracle scores). Same seed, same files.
    Each file is stamped as generated and listed in <dataset>/.nlbkit-generated; a file already
    there that synth did not write (real data) is left alone with an error, unless --force.
    """
    from tqdm import tqdm

    from nlbkit.synth.generate import write_dataset

    names = list(DATASET_NAMES) if dataset == "all" else [dataset]
    for name in tqdm(names, desc="synth", unit="dataset", disable=True if len(names) == 1 else None):
        t0 = time.perf_counter()
        train, test = write_dataset(name, data_dir, seed=seed, scale=scale, force=force)
        click.echo(f"{name} (generated data): {train} and {test} ({time.perf_counter() - t0:.1f} s)")
