"""CPU seconds per training epoch of LangevinFlow on a tensor file, timed on a few batches.

Usage: python benchmarks/epoch_time.py TENSORS.h5 DATASET BIN_MS [BATCHES] [preset=NAME] [key=value ...]

Builds the dataset's default configuration (with the named preset of `nlbkit train --preset`, and
the overrides) for BIN_MS, takes the `train`
trials of a `nlbkit prepare` file (or a train-only file's), times BATCHES optimiser steps of
`train.batch_size` trials (the first, warm-up step not counted) and extrapolates to one epoch over the
trials a run would fit (all train trials: validation trials train through their held-in spikes).
Validation and prediction are not included. Prints one JSON line. One torch thread unless
`train.threads` says otherwise.
"""

from __future__ import annotations

import json
import math
import sys
import time

import torch

from nlbkit.config import build_config, resolve_for_bin
from nlbkit.nlb.tensor_file import load_phase_data
from nlbkit.train.loop import DeviceTrials, seed_everything
from nlbkit.train.run import build_langevin


def main(path: str, dataset: str, bin_ms: int, batches: int, overrides: list[str]) -> None:
    presets = [o.split("=", 1)[1] for o in overrides if o.startswith("preset=")]
    overrides = [o for o in overrides if not o.startswith("preset=")]
    preset = presets[-1] if presets else None
    cfg = resolve_for_bin(build_config(dataset, overrides=overrides, preset=preset), bin_ms)
    torch.set_num_threads(cfg.train.threads or 1)
    seed_everything(0)
    data = load_phase_data(path, "val", cfg.train.eval_fraction, 0)
    net = build_langevin(cfg, data.n_heldin, data.n_heldout, data.n_forward).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.train.lr)
    n_fit, size = len(data.fit), cfg.train.batch_size
    times = []
    for step in range(batches + 1):
        trials = DeviceTrials.from_trials(
            data.fit.subset(torch.randperm(n_fit)[:size].numpy()), torch.device("cpu")
        )
        start = time.perf_counter()
        loss, _ = net.loss(trials.heldin, trials.target, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:  # the first step pays one-off allocation costs
            times.append(time.perf_counter() - start)
    per_batch = sum(times) / len(times)
    print(
        json.dumps(
            {
                "tensors": path,
                "dataset": dataset,
                "bin_ms": bin_ms,
                "preset": preset,
                "overrides": overrides,
                "fit_trials": n_fit,
                "bins": int(data.fit.heldin.shape[1]),
                "forward": data.n_forward,
                "neurons": data.n_heldin + data.n_heldout,
                "hidden": cfg.model.hidden,
                "bins_per_step": cfg.model.bins_per_step,
                "batch_size": size,
                "seconds_per_batch": round(per_batch, 2),
                "batches_timed": len(times),
                "batches_per_epoch": math.ceil(n_fit / size),
                "seconds_per_epoch_extrapolated": round(per_batch * math.ceil(n_fit / size), 1),
            }
        )
    )


if __name__ == "__main__":
    argv = sys.argv[1:]
    main(argv[0], argv[1], int(argv[2]), int(argv[3]) if len(argv) > 3 else 2, argv[4:])
