"""Seed ensemble against its best member, and a sweep's best configuration against the default one.

Usage:
    python benchmarks/sweep_ensemble.py --data-dir D --run-dir R [--dataset mc_maze_small]
        [--seeds 3] [--samples 8] [--epochs 100] [--scheduler asha] [--skip-sweep]

1. Trains the dataset's default configuration with seeds 0..seeds-1 (`--epochs` epochs each, one
   torch thread), in the val phase on `D/<dataset>/tensors_5ms.h5` (made by `nlbkit synth` and
   `nlbkit prepare`), and averages them with `nlbkit.ensemble`: prints each member's scores, the best
   member's and the ensemble's.
2. Runs `nlbkit sweep` (local Ray, all CPUs) with `--samples` trials of `--epochs` epochs on the same
   tensors, and prints the best trial's scores (chosen by its validation co-bps, the held-back share
   of the training trials) beside the default configuration's seed-0 run: same epochs, same trials.
Existing runs under R are reused (delete them to measure again). Prints JSON lines, then a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nlbkit.config import build_config
from nlbkit.ensemble import ensemble_runs
from nlbkit.runs import RunDir, run_name
from nlbkit.scoring.evaluate import score_run
from nlbkit.sweep.run import SweepOptions, run_sweep
from nlbkit.train.run import TrainRequest, train_run

METRICS = ("co-bps", "vel R2", "psth R2", "fp-bps")


def default_run(dataset: str, data_dir: Path, run_root: Path, seed: int, epochs: int) -> tuple[Path, float]:
    """The default configuration with `seed`, trained unless its scores exist; (run dir, seconds)."""
    path = run_root / run_name(dataset, 5, "val", "langevin", f"default_s{seed}")
    if (path / "scores.json").exists():
        return path, float("nan")
    cfg = build_config(dataset, overrides=[
        f"train.seed={seed}", f"train.epochs={epochs}", "train.threads=1", "train.compare_smoothing=false",
    ])
    started = time.perf_counter()
    train_run(
        TrainRequest(
            dataset,
            cfg,
            bin_ms=5,
            phase="val",
            data_dir=data_dir,
            run_root=run_root,
            tag=f"default_s{seed}",
            overwrite=True,
            progress=False,
        ),
    )
    return path, time.perf_counter() - started


def pick(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(scores[k], 4) for k in METRICS if k in scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--dataset", default="mc_maze_small")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--scheduler", default="asha")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    run_root = args.run_dir.absolute()

    members = []
    for seed in range(args.seeds):
        path, seconds = default_run(args.dataset, args.data_dir, run_root, seed, args.epochs)
        members.append(path)
        print(json.dumps({"member": path.name, "seconds": round(seconds, 1),
                          "scores": pick(score_run(path).scores)}), flush=True)
    ensemble = ensemble_runs(members, run_root / run_name(args.dataset, 5, "val", "ensemble"), overwrite=True)
    member_scores = [pick(m.scores) for m in ensemble.members]
    best = max(member_scores, key=lambda s: s["co-bps"])
    ens = pick(ensemble.ensemble.scores)
    print(json.dumps({"ensemble_of": len(members), "best_member": best, "ensemble": ens,
                      "co_bps_gain": round(ens["co-bps"] - best["co-bps"], 4)}), flush=True)
    if args.skip_sweep:
        return

    started = time.perf_counter()
    result = run_sweep(SweepOptions(
        args.dataset, samples=args.samples, scheduler=args.scheduler, data_dir=args.data_dir,
        run_root=run_root, name=f"bench_{args.scheduler}_{args.samples}x{args.epochs}",
        max_epochs=args.epochs, verbose=0, overrides=("train.threads=1",),
    ))
    seconds = time.perf_counter() - started
    top = result.rows[0]
    trial_dir = next((result.path / "trials").glob(f"*_{top['trial']}"))
    best_scores = RunDir(trial_dir).scores() or {}
    default_scores = pick(score_run(members[0]).scores)
    print(json.dumps({
        "sweep": result.path.name, "seconds": round(seconds, 1),
        "trials": {s: sum(r["status"] == s for r in result.rows) for s in ("finished", "stopped", "error")},
        "trial_epochs": [r["epochs"] for r in result.rows],
        "best_trial": top["trial"], "best_val_co_bps": round(top["best_val_co_bps"], 4),
        "best_values": {k: v for k, v in top.items() if "." in k},
        "best_scores": pick(best_scores) if best_scores else "stopped early (no eval scores)",
        "default_seed0_scores": default_scores,
    }), flush=True)


if __name__ == "__main__":
    main()
