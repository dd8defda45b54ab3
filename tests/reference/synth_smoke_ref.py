"""Check that nlb_tools reads generated datasets and builds every tensor from them (reference env).

Usage: synth_smoke_ref.py [--out OUT.h5] DATA_DIR BIN_MS DATASET [DATASET ...]

For each dataset, loads `DATA_DIR/<dataset>/` the way the NLB tutorials do (`NWBDataset` on the
folder: train and test files stacked), resamples to BIN_MS and runs make_train_input_tensors
(behaviour and forward prediction), make_eval_input_tensors on val and test, and
make_eval_target_tensors with PSTHs. Prints one JSON line: {dataset: {key: {shape, nan}}}.
With --out, also writes the numeric arrays to OUT.h5 as '<dataset>/<group>/<key>' (float64).

pandas >= 1.4 defect (NLB_SPEC.md, "Known defects"): rows out of time order where a behaviour
series does not span the session; `import nlb_sorted_index` fixes that at run time by sorting
the index `NWBDataset.load` returns, as pandas 1.3 did. Nothing else in nlb_tools is changed.
"""

from __future__ import annotations

import json
import logging
import sys

import h5py
import nlb_sorted_index  # noqa: F401  (sorts NWBDataset.load's index; see its doc)
import numpy as np
from nlb_tools import make_tensors as mt
from nlb_tools.nwb_interface import NWBDataset

logging.disable(logging.WARNING)

def summary(arrays: dict) -> dict:
    out = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype == object:
            out[key] = {"shape": [len(value)], "nan": 0}
        else:
            out[key] = {"shape": list(value.shape), "nan": int(np.isnan(value.astype(float)).sum())}
    return out


def build(folder: str, name: str, bin_ms: int) -> dict[str, dict]:
    ds = NWBDataset(folder)
    ds.resample(bin_ms)
    groups = {
        "train": mt.make_train_input_tensors(
            ds, name, trial_split="train", include_behavior=True, include_forward_pred=True, save_file=False
        ),
        "val": mt.make_eval_input_tensors(ds, name, trial_split="val", save_file=False),
        "test": mt.make_eval_input_tensors(ds, name, trial_split="test", save_file=False),
    }
    target = mt.make_eval_target_tensors(
        ds, name, train_trial_split="train", eval_trial_split="val", include_psth=True, save_file=False
    )
    groups["val_target"] = target[name if bin_ms == 5 else f"{name}_{bin_ms}"]
    return groups


def main(argv: list[str]) -> None:
    out = None
    if argv[0] == "--out":
        out, argv = argv[1], argv[2:]
    folder, bin_ms, names = argv[0], int(argv[1]), argv[2:]
    built = {name: build(f"{folder}/{name}", name, bin_ms) for name in names}
    if out:
        with h5py.File(out, "w") as f:
            for name, groups in built.items():
                for group, arrays in groups.items():
                    for key, value in arrays.items():
                        value = np.asarray(value)
                        if value.dtype != object:
                            f[f"{name}/{group}/{key}"] = value.astype(np.float64)
    report = {
        name: {f"{group}/{k}": v for group, arrays in groups.items() for k, v in summary(arrays).items()}
        for name, groups in built.items()
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
