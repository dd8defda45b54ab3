"""Paired comparison of `nlbkit cv` results: a lever's runs against the default's, fold x seed by fold x seed.

Usage: python benchmarks/cv_compare.py BASE.csv[,BASE2.csv...] LEVER.csv [--model NAME] [--base-model NAME]
                                      [--folds 0,1] [--seeds 0,1]

Reads the per-run rows (not the summary rows) of `cv.csv` files; several base files are joined
(e.g. the default's seeds 0-1 and a later seed 2). Only the (fold, seed) pairs present in both are
compared. Prints one line per pair with co-bps, fp-bps and vel R2 of both, then the means ± sample
sd over those pairs, the mean paired difference and on how many pairs the lever was above.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

METRICS = ("co-bps", "fp-bps", "vel R2")


def read_rows(paths: str, model: str) -> dict[tuple[int, int], dict[str, float]]:
    rows = {}
    for path in paths.split(","):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["model"] != model or row["fold"] in ("mean", "sd"):
                    continue
                rows[(int(row["fold"]), int(row["seed"]))] = {m: float(row[m]) for m in METRICS}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("lever")
    parser.add_argument("--model", default="langevin", help="model name of the lever's rows")
    parser.add_argument("--base-model", default="langevin", help="model name of the base rows")
    parser.add_argument("--folds", default=None, help="only these folds, e.g. 0,1")
    parser.add_argument("--seeds", default=None, help="only these seeds, e.g. 0,1")
    args = parser.parse_args()
    base, lever = read_rows(args.base, args.base_model), read_rows(args.lever, args.model)
    keys = sorted(set(base) & set(lever))
    if args.folds:
        keys = [k for k in keys if k[0] in {int(f) for f in args.folds.split(",")}]
    if args.seeds:
        keys = [k for k in keys if k[1] in {int(s) for s in args.seeds.split(",")}]
    if not keys:
        raise SystemExit("no (fold, seed) pair in both files")
    print("fold seed " + "  ".join(f"{m:>8} base / lever" for m in METRICS))
    for key in keys:
        cells = "  ".join(f"{base[key][m]:8.4f} / {lever[key][m]:7.4f}" for m in METRICS)
        print(f"{key[0]:>4} {key[1]:>4} {cells}")
    for name, rows in (("base", base), ("lever", lever)):
        stats = []
        for m in METRICS:
            values = np.array([rows[k][m] for k in keys])
            sd = values.std(ddof=1) if len(values) > 1 else float("nan")
            stats.append(f"{m} {values.mean():.4f} ± {sd:.4f}")
        print(f"{name:<6} (n={len(keys)})  " + "  ".join(stats))
    diff = np.array([lever[k]["co-bps"] - base[k]["co-bps"] for k in keys])
    print(f"co-bps lever - base: mean {diff.mean():+.4f}, lever above on {(diff > 0).sum()} of {len(keys)}")


if __name__ == "__main__":
    main()
