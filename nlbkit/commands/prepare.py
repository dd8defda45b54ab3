"""`nlbkit prepare`: NWB files to the NLB tensors file of a dataset and bin size."""

from __future__ import annotations

import time

import click

from nlbkit.commands.dataset_arg import DATASET_OR_ALL
from nlbkit.nlb.datasets import BIN_SIZES_MS, DATASET_NAMES


@click.command(name="prepare")
@click.argument("dataset", type=DATASET_OR_ALL)
@click.option("--bin-ms", "bins", type=click.Choice([str(b) for b in BIN_SIZES_MS]), multiple=True,
              help="Bin size in ms; repeat for both (default: 5).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root of the data directory (default: $NLBKIT_DATA or data/).")
@click.option("--compress", is_flag=True,
              help="Store the arrays LZF-compressed (about 3x smaller files, slower to write).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no shapes; only the written paths.")
def command(dataset: str, bins: tuple[str, ...], data_dir: str | None, compress: bool, quiet: bool) -> None:
    """Build DATASET's tensors (as nlb_tools makes them) into <data-dir>/<dataset>/tensors_<bin>ms.h5.

    \b
    Reads <data-dir>/<dataset>/ (train and test NWB files under their DANDI names, from
    `nlbkit fetch` or `nlbkit synth`) and writes one HDF5 file with the groups
      train       train-trial inputs: spikes held-in/held-out, forward bins, behaviour
      trainval    the same over train + val trials (for a test-phase model)
      val         val-trial inputs: held-in and held-out spikes
      test        test-trial inputs: held-in spikes (from the test NWB)
      val_target  targets for scoring val predictions (held-out and forward spikes,
                  behaviour, PSTHs, condition indices, decode masks, jitter)
    Keys, shapes and values are those of nlb_tools 0.0.4. Arrays are stored uncompressed
    (fastest) unless --compress. The file appears only when complete; an existing one is
    replaced only on success.

    \b
    Examples:
      nlbkit prepare mc_maze_small
      nlbkit prepare mc_maze --bin-ms 5 --bin-ms 20 --data-dir /data/nlb
      nlbkit prepare all --bin-ms 20
    """
    from nlbkit.nlb.marker import label
    from nlbkit.paths import dataset_dir
    from nlbkit.prepare.tensors import describe_file, prepare

    names = list(DATASET_NAMES) if dataset == "all" else [dataset]
    for name in names:
        for bin_ms in map(int, bins or ("5",)):
            t0 = time.perf_counter()
            path = prepare(name, bin_ms, data_dir, progress=not quiet, compress=compress)
            shown = label(name, dataset_dir(name, data_dir))
            click.echo(f"{shown} {bin_ms} ms: wrote {path} ({time.perf_counter() - t0:.1f} s)")
            if not quiet:
                for line in describe_file(path):
                    click.echo(f"  {line}")
