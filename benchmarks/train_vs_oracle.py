"""Scores of trained runs on generated data beside the oracle (the true rates), and R2 to the true rates.

Usage: python benchmarks/train_vs_oracle.py DATA_DIR RUN_DIR [RUN_DIR ...]
Each run must be a val-phase run on `DATA_DIR/<dataset>/tensors_<bin>ms.h5` made by `nlbkit synth` and
`nlbkit prepare`. Prints one JSON line per run.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from sklearn.metrics import r2_score

from nlbkit.nlb.h5io import load_val_target
from nlbkit.runs import read_rates, read_run
from nlbkit.scoring.evaluate import score_rates
from nlbkit.synth.oracle import oracle_rates


def rates_r2(inferred: dict, true: dict) -> float:
    """R2 of inferred to true eval rates, held-in and held-out neurons over the observed bins, pooled."""
    keys = ("eval_rates_heldin", "eval_rates_heldout")
    a = np.concatenate([inferred[k] for k in keys], axis=2).reshape(-1)
    b = np.concatenate([true[k] for k in keys], axis=2).reshape(-1)
    return float(r2_score(b, a))


def main(data_dir: str, run_dirs: list[str]) -> None:
    for run_dir in run_dirs:
        run = read_run(run_dir)
        target = load_val_target(run.tensors)
        true = oracle_rates(run.dataset, run.bin_ms, data_dir, phase="val")
        rates = read_rates(run)
        print(json.dumps({
            "run": str(run_dir), "model": run.model,
            "scores": score_rates(run.dataset, run.bin_ms, target, rates),
            "oracle": score_rates(run.dataset, run.bin_ms, target, true),
            "r2_to_true_rates": rates_r2(rates, true),
        }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
