"""Seconds per training epoch of LangevinFlow: the float32 loop ("eager") against the fast path, side by side.

Usage:
    python benchmarks/epoch_time.py [--batches N] [--rounds R] [--device cpu|cuda] [--paths eager,fast]
                                    [--preset NAME] [--set KEY=VALUE ...]
                                    TENSORS DATASET BIN_MS [TENSORS DATASET BIN_MS ...]

Each case is a tensor file of `nlbkit prepare` (or a train-only file), its dataset and bin width;
the configuration is the dataset's defaults for BIN_MS, then the named preset of
`nlbkit train --preset`, then the `--set` overrides. Two paths:

    eager  the loop as it was before the fast path: float32 throughout (train.cpu_amp and
           train.amp off) and one torch thread on a machine of <= 2 cores (torch's default above)
    fast   reduced precision in the forward passes (bfloat16 autocast on a CPU with native
           bfloat16, the dataset's AMP dtype on CUDA; the Langevin integration float32 in both)
           and torch threads by `training_threads` (every core for a released-size step)

Every (case, round, path) runs in a fresh process, eager and fast alternating, so that both see the
same machine load and each reports its own peak RSS (and peak CUDA memory). A process builds the
run's trainer on all of a run's fitted trials, takes one untimed warm-up batch, then times N batches
of the real training step (`Trainer._train_epoch`: forward, backward, clipping, Adam, the EMA) and
extrapolates to an epoch. Validation and checkpoint writes are not included. The figure per path is
the median over rounds; the ratio is eager's seconds over fast's. Prints a table, then one JSON line
per case.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PATHS = ("eager", "fast")


def path_overrides(path: str) -> list[str]:
    if path == "fast":
        return ["train.cpu_amp=true", "train.amp=true"]
    threads = ["train.threads=1"] if (os.cpu_count() or 1) <= 2 else []
    return ["train.cpu_amp=false", "train.amp=false", *threads]


def child(args: argparse.Namespace) -> None:
    """Time one path on one case in this process; print one JSON line."""
    import math

    import torch

    from nlbkit.config import build_config, resolve_for_bin
    from nlbkit.nlb.tensor_file import load_phase_data
    from nlbkit.runs import RunDir
    from nlbkit.train.loop import Trainer, resolve_device, seed_everything, training_threads
    from nlbkit.train.run import build_langevin, training_trials

    tensors, dataset, bin_ms = args.case[0], args.case[1], int(args.case[2])
    # --set last: it may change a path's own settings (e.g. train.threads=1 for bfloat16 alone)
    overrides = [*path_overrides(args.child), f"train.device={args.device}", *args.set]
    cfg = resolve_for_bin(build_config(dataset, overrides=overrides, preset=args.preset), bin_ms)
    tc = cfg.train
    device = resolve_device(tc.device)
    if device.type == "cpu":
        torch.set_num_threads(training_threads(tc, cfg.model.hidden))
    seed_everything(tc.seed)
    data = load_phase_data(tensors, "val", tc.eval_fraction, tc.seed)
    fit, _ = training_trials(data, tc)
    net = build_langevin(cfg, data.n_heldin, data.n_heldout, data.n_forward)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(net, tc, RunDir(Path(tmp)), fit, None, device, progress=False)
        trainer._train_epoch(tc.kl_max, max_batches=1)  # one-off allocations and kernel choices
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        totals = trainer._train_epoch(tc.kl_max, max_batches=args.batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    n_fit = len(fit)
    batches = min(args.batches, math.ceil(n_fit / tc.batch_size))
    per_batch = elapsed / batches
    result = {
        "path": args.child,
        "seconds_per_batch": per_batch,
        "seconds_per_epoch": per_batch * math.ceil(n_fit / tc.batch_size),
        "batches_timed": batches,
        "batches_per_epoch": math.ceil(n_fit / tc.batch_size),
        "fit_trials": n_fit,
        "batch_size": tc.batch_size,
        "hidden": cfg.model.hidden,
        "bins": int(fit.heldin.shape[1]),
        "forward": data.n_forward,
        "neurons": data.n_heldin + data.n_heldout,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "autocast": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "float32",
        "loss": totals["loss"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "device": device.type,
    }
    print(json.dumps(result))


def run_child(path: str, case: list[str], args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", path, "--batches", str(args.batches),
               "--device", args.device, *[f"--set={s}" for s in args.set], *case]
    if args.preset:
        command += ["--preset", args.preset]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{path} on {' '.join(case)} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(case: list[str], args: argparse.Namespace) -> dict:
    runs: dict[str, list[dict]] = {p: [] for p in args.paths}
    for _ in range(args.rounds):
        for path in args.paths:
            runs[path].append(run_child(path, case, args))
    out = {"tensors": case[0], "dataset": case[1], "bin_ms": int(case[2]), "preset": args.preset,
           "overrides": args.set}
    for path in args.paths:
        first = runs[path][0]
        out[path] = {
            **{k: first[k] for k in ("threads", "autocast", "batch_size", "hidden", "bins", "fit_trials",
                                     "batches_per_epoch", "batches_timed")},
            "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in runs[path]),
            "seconds_per_epoch_rounds": [round(r["seconds_per_epoch"], 2) for r in runs[path]],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[path]),
            "peak_gpu_mb": first["peak_gpu_mb"],
            "loss": [round(r["loss"], 5) for r in runs[path]],
        }
    if len(args.paths) == 2:
        out["ratio"] = out["eager"]["seconds_per_epoch"] / out["fast"]["seconds_per_epoch"]
    return out


def table(results: list[dict]) -> str:
    lines = ["| case | path | threads | precision | s / epoch | peak RSS (MB) | peak GPU (MB) | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        name = f"{r['dataset']} {r['bin_ms']} ms"
        for path in (p for p in PATHS if p in r):
            p = r[path]
            gpu = f"{p['peak_gpu_mb']:.0f}" if p["peak_gpu_mb"] is not None else "-"
            ratio = f"{r['ratio']:.2f}x" if path == "fast" and "ratio" in r else ""
            lines.append(f"| {name} | {path} | {p['threads'] or '-'} | {p['autocast']} | "
                         f"{p['seconds_per_epoch']:.2f} | {p['peak_rss_mb']:.0f} | {gpu} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", help="TENSORS DATASET BIN_MS, repeated")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per path and case")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--paths", default="eager,fast", help="the paths to time: eager, fast or both")
    parser.add_argument("--preset", default=None, help="a preset of `nlbkit train --preset`, e.g. cpu")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if len(args.cases) % 3:
        parser.error("cases come in threes: TENSORS DATASET BIN_MS")
    cases = [args.cases[i : i + 3] for i in range(0, len(args.cases), 3)]
    args.paths = [p for p in PATHS if p in args.paths.split(",")] or parser.error("--paths: eager, fast")
    if args.child:
        args.case = cases[0]
        child(args)
        return
    results = []
    for case in cases:
        r = compare(case, args)
        results.append(r)
        timed = ", ".join(f"{p} {r[p]['seconds_per_epoch']:.2f} s" for p in args.paths)
        ratio = f" ({r['ratio']:.2f}x)" if "ratio" in r else ""
        print(f"{case[1]} {case[2]} ms: {timed} an epoch{ratio}", file=sys.stderr, flush=True)
    print(table(results))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
