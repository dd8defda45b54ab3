"""Wall time of the leaderboard's training stage: one run after another against `nlbkit train-all`.

Usage: python benchmarks/leaderboard_parallel.py --work-dir DIR [--datasets ...] [--bins 5 20]
       [--epochs 10] [--cpus 2] [--set key=value ...]

Generates the datasets at small scale (`nlbkit synth --scale small`) and prepares their tensors
(not timed), then trains every dataset x bin in phase val twice, with the same configuration:

    sequential  one `nlbkit train` process per run, one after another (what leaderboard.mk did)
    ray 1 CPU   one `nlbkit train-all` process on a local Ray instance of 1 CPU: one run at a time,
                in Ray's long-lived workers (no new process, no torch import per run)
    parallel    one `nlbkit train-all` process: a local Ray instance of --cpus CPUs, 1 CPU per run

Each side is timed from its first process's start to its last one's end, Ray's start included.
Prints one JSON line: the three wall times, the ratios, and the machine's load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ALL = ("mc_maze", "mc_rtt", "area2_bump", "dmfc_rsg", "mc_maze_large", "mc_maze_medium", "mc_maze_small")
SHORT = (
    "model.hidden=16", "model.ff_dim=32", "model.prediction_samples=4", "train.batch_size=16",
    "train.val_every=5", "train.val_samples=2", "train.kl_ramp_epochs=5", "train.device=cpu",
    "train.compare_smoothing=false",
)


def nlbkit(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlbkit", *args], check=True, text=True, **kwargs)


def prepare_data(data_dir: Path, datasets: list[str], bins: list[int]) -> None:
    for dataset in datasets:
        if not (data_dir / dataset / ".bench-synth").exists():
            nlbkit("synth", dataset, "--data-dir", str(data_dir), "--scale", "small", capture_output=True)
            (data_dir / dataset / ".bench-synth").touch()
        for bin_ms in bins:
            if not (data_dir / dataset / f"tensors_{bin_ms}ms.h5").exists():
                nlbkit("prepare", dataset, "--bin-ms", str(bin_ms), "--data-dir", str(data_dir), "--quiet",
                       capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", default=list(ALL))
    parser.add_argument("--bins", nargs="+", type=int, default=[5, 20])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[])
    args = parser.parse_args()
    data_dir = args.work_dir / "data"
    prepare_data(data_dir, args.datasets, args.bins)
    settings = [f"--set={s}" for s in (*SHORT, *args.overrides)] + ["--epochs", str(args.epochs)]
    common = ["--phase", "val", "--data-dir", str(data_dir), *settings]
    load_before = os.getloadavg()

    seq_root = args.work_dir / "runs_sequential"
    shutil.rmtree(seq_root, ignore_errors=True)
    start = time.perf_counter()
    for dataset in args.datasets:
        for bin_ms in args.bins:
            nlbkit("train", dataset, "--bin-ms", str(bin_ms), "--run-dir", str(seq_root), "--overwrite",
                   "--quiet", *common, capture_output=True)
    sequential = time.perf_counter() - start

    bins = [f"--bin-ms={b}" for b in args.bins]
    ray_seconds = {}
    for cpus in (1, args.cpus):  # one run at a time on Ray, then --cpus side by side
        root = args.work_dir / f"runs_ray_{cpus}cpu"
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        out = nlbkit("train-all", *args.datasets, *bins, "--run-dir", str(root), "--cpus", str(cpus),
                     *common, capture_output=True)
        ray_seconds[cpus] = time.perf_counter() - start
        print(out.stdout, file=sys.stderr)
    parallel, ray_one = ray_seconds[args.cpus], ray_seconds[1]
    print(json.dumps({
        "datasets": args.datasets, "bins": args.bins, "runs": len(args.datasets) * len(args.bins),
        "epochs": args.epochs, "overrides": [*SHORT, *args.overrides], "cpus": args.cpus,
        "machine_cpus": os.cpu_count(), "sequential_s": round(sequential, 1),
        "ray_1cpu_s": round(ray_one, 1), "parallel_s": round(parallel, 1),
        "speedup": round(sequential / parallel, 2), "speedup_over_ray_1cpu": round(ray_one / parallel, 2),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
