"""A markdown table of `nlbkit cv` results: every model's runs per fold, their mean ± sd, and each
model's paired difference against a reference model.

Usage: python benchmarks/cv_table.py CV.csv [CV.csv ...] [--reference smoothing] [--report-folds 2,3,4]

Reads the per-run rows (not the summary rows) of the given `cv.csv` files (several commands' files
are joined; a (model, fold, seed) present twice is an error). Per model: co-bps per fold (seeds
separated by '/'), mean ± sample sd of co-bps over every run and over the runs of
`--report-folds` alone (the folds no setting was chosen on), fp-bps and vel R2 means, and against
`--reference` the mean paired difference on the report folds with how many pairs it was above
(`nlbkit.train.cv.paired_differences`, a 95% t interval over fold means).
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from nlbkit.train.cv import METRICS, paired_differences


def read_rows(paths: list[str]) -> list[dict]:
    rows, seen = [], set()
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["fold"] in ("mean", "sd"):
                    continue
                key = (row["model"], int(row["fold"]), int(row["seed"]))
                if key in seen:
                    raise SystemExit(f"{path}: {key} appears twice among the files")
                seen.add(key)
                rows.append({**row, "fold": int(row["fold"]), "seed": int(row["seed"]),
                             **{m: float(row[m]) for m in METRICS}})
    return rows


def mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    sd = np.std(values, ddof=1) if len(values) > 1 else float("nan")
    return f"{np.mean(values):.4f} ± {sd:.4f}"


def table(rows: list[dict], reference: str | None, report: list[int]) -> str:
    folds = sorted({r["fold"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    reported = [r for r in rows if r["fold"] in report]
    paired = {p["model"]: p for p in paired_differences(reported, reference)} if reference else {}
    shown = ",".join(map(str, report))
    head = ["model", *(f"fold {k}" for k in folds), "co-bps, all runs", f"co-bps, folds {shown}",
            "fp-bps", "vel R2", f"Δ co-bps vs {reference}, folds {shown} (above on)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        cells = [model]
        for k in folds:
            cells.append(" / ".join(f"{r['co-bps']:.4f}" for r in sorted(mine, key=lambda r: r["seed"])
                                    if r["fold"] == k))
        cells.append(f"{mean_sd([r['co-bps'] for r in mine])} (n={len(mine)})")
        cells.append(mean_sd([r["co-bps"] for r in mine if r["fold"] in report]))
        cells.append(f"{np.mean([r['fp-bps'] for r in mine]):.4f}")
        cells.append(f"{np.mean([r['vel R2'] for r in mine]):.4f}")
        d = paired.get(model, {}).get("co-bps")
        cells.append(f"{d['mean']:+.4f} ({d['above']} of {paired[model]['n']}; 95% CI "
                     f"[{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}])" if d else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+")
    parser.add_argument("--reference", default="smoothing")
    parser.add_argument("--report-folds", default="2,3,4")
    args = parser.parse_args()
    rows = read_rows(args.csv)
    reference = args.reference if any(r["model"] == args.reference for r in rows) else None
    print(table(rows, reference, [int(k) for k in args.report_folds.split(",")]))


if __name__ == "__main__":
    main()
