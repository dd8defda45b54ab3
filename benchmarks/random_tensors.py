"""A train-only tensor file (nlb_tools' train key names at the root) of random Poisson counts, at a
given size: for timing training where `nlbkit synth` cannot run (no pynwb), as on a bare GPU machine.

Usage: python benchmarks/random_tensors.py OUT.h5 TRIALS BINS FORWARD HELDIN HELDOUT [RATE]

RATE is the mean count per bin (default 0.05, about 10 Hz at 5 ms). Timing does not depend on the
counts' values; scores on such a file mean nothing.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np


def main(out: str, trials: int, bins: int, forward: int, heldin: int, heldout: int, rate: float) -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(rate, size=(trials, bins + forward, heldin + heldout)).astype(np.float32)
    with h5py.File(out, "w") as h5:
        h5["train_spikes_heldin"] = counts[:, :bins, :heldin]
        h5["train_spikes_heldout"] = counts[:, :bins, heldin:]
        h5["train_spikes_heldin_forward"] = counts[:, bins:, :heldin]
        h5["train_spikes_heldout_forward"] = counts[:, bins:, heldin:]
        h5["train_behavior"] = rng.standard_normal((trials, bins, 2)).astype(np.float32)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], *(int(x) for x in a[1:6]), float(a[6]) if len(a) > 6 else 0.05)
