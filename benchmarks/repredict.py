"""Predict trained cross-validation runs again with changed prediction settings, and score them.

Usage: python benchmarks/repredict.py RUN_DIR [RUN_DIR...] [--set KEY=VALUE ...] --out FILE.csv
                                      [--ensemble-by-fold]

Each RUN_DIR is a LangevinFlow run of `nlbkit cv` (its run.json names the tensor file and the
scored fold's trials). The network of its checkpoint (best.pt) predicts the fit and scored trials
again with the run's own configuration changed by `--set` (prediction settings such as
`model.prediction_samples=100`; training settings have no effect here),
with the same seeding as `nlbkit train`, and the rates are scored like the run's own. Without
`--set` this reproduces the run's scores.json exactly, which the script checks and reports.

It writes FILE.csv in the per-run format of `nlbkit cv` (model, fold, seed, co-bps, fp-bps,
vel R2), so `benchmarks/cv_compare.py` pairs it with the runs' own cv.csv. `--ensemble-by-fold`
also scores, per fold, the mean of the re-predicted rates of that fold's runs (model
'langevin xN'), as `nlbkit ensemble` would.

The checkpoint was chosen during training with the run's own settings (validation predicts
with them), so this measures a prediction setting on fixed checkpoints, not a full retraining.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from nlbkit.config import parse_assignment, set_value
from nlbkit.nlb.tensor_file import load_phase_data
from nlbkit.runs import RunDir, rates_dict
from nlbkit.scoring.evaluate import score_rates
from nlbkit.train.run import load_rate_model

METRICS = ("co-bps", "fp-bps", "vel R2")
TAG = re.compile(r"fold(\d+)_seed(\d+)")


def repredict(run_dir: Path, overrides: list[tuple[str, str]]) -> tuple[dict, dict, dict]:
    """(fold/seed, rates dict, scores) of one run predicted again with `overrides`."""
    run = RunDir(run_dir)
    info, cfg = run.info(), run.config()
    for key, value in overrides:
        set_value(cfg, key, value)
    index = np.asarray(info.eval_index) if info.eval_index is not None else None
    data = load_phase_data(info.tensors, info.phase, cfg.train.eval_fraction, cfg.train.seed, index)
    rates_of = load_rate_model(run, info, cfg, "cpu")  # seeded as `nlbkit train` predicts
    train_rates = rates_of(data.fit.heldin)
    rates = rates_dict(train_rates, rates_of(data.eval.heldin), info.n_heldin, data.fit.heldin.shape[1])
    scores = score_rates(info.dataset, info.bin_ms, data.targets, rates)
    match = TAG.search(run_dir.name)
    if match is None:
        raise SystemExit(f"{run_dir}: no fold<k>_seed<s> in the directory name")
    where = {"fold": int(match.group(1)), "seed": int(match.group(2)), "targets": data.targets,
             "dataset": info.dataset, "bin_ms": info.bin_ms}
    return where, rates, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--ensemble-by-fold", action="store_true")
    args = parser.parse_args()
    overrides = [parse_assignment(text) for text in args.overrides]
    torch.set_num_threads(1)
    rows, by_fold = [], defaultdict(list)
    for run_dir in args.runs:
        where, rates, scores = repredict(run_dir, overrides)
        stored = RunDir(run_dir).scores() or {}
        row = {"model": "langevin", "fold": where["fold"], "seed": where["seed"],
               **{m: scores.get(m, float("nan")) for m in METRICS}}
        rows.append(row)
        by_fold[where["fold"]].append((where, rates))
        same = all(stored.get(m) == scores.get(m) for m in METRICS if m in stored)
        was = f"stored {stored.get('co-bps', float('nan')):.4f}{', identical' if same else ''}"
        print(f"{run_dir.name}: co-bps {scores['co-bps']:.4f} ({was})", flush=True)
    if args.ensemble_by_fold:
        for fold, members in sorted(by_fold.items()):
            where = members[0][0]
            mean = {key: np.mean([r[key] for _, r in members], axis=0) for key in members[0][1]}
            scores = score_rates(where["dataset"], where["bin_ms"], where["targets"], mean)
            rows.append({"model": f"langevin x{len(members)}", "fold": fold,
                         "seed": min(w["seed"] for w, _ in members),
                         **{m: scores.get(m, float("nan")) for m in METRICS}})
            print(f"fold {fold}, mean of {len(members)}: co-bps {scores['co-bps']:.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["model", "fold", "seed", *METRICS])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
