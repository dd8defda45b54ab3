"""Build the five tensor groups of `nlbkit prepare` with nlb_tools itself (reference environment).

Usage:
    make_tensors_ref.py OUT.h5 DATASET BIN_MS TRAIN_NWB TEST_NWB [DATASET BIN_MS TRAIN_NWB TEST_NWB ...]

TRAIN_NWB or TEST_NWB may be '-' (absent): then the groups that need that file are not built.
If nlb_tools fails on a file, the error is stored as attribute `error_train_file` or
`error_test_file` of the '<dataset>_<bin>' group and the script goes on.
OUT.h5 gets one HDF5 group per (dataset, bin), named '<dataset>_<bin>', holding the groups
'train', 'trainval', 'val', 'test', 'val_target' with nlb_tools' arrays, unrounded: float16 spike
counts are stored as float32 (exact), float64 stays float64, and object arrays of index arrays
(`train_cond_idx`, `eval_cond_idx`) become sub-groups of datasets named '0', '1', ...

pandas >= 1.4 defect (NLB_SPEC.md, "Known defects"): rows out of time order where a behaviour
series does not span the session; `import nlb_sorted_index` fixes that at run time by sorting
the index `NWBDataset.load` returns, as pandas 1.3 did. Nothing else in nlb_tools is changed.
"""

from __future__ import annotations

import logging
import sys

import h5py
import nlb_sorted_index  # noqa: F401  (sorts NWBDataset.load's index; see its doc)
import numpy as np
from nlb_tools import make_tensors as mt
from nlb_tools.nwb_interface import NWBDataset

logging.disable(logging.WARNING)

def load(path: str, bin_ms: int) -> NWBDataset:
    dataset = NWBDataset(path)
    dataset.resample(bin_ms)
    return dataset


def train_groups(path: str, name: str, bin_ms: int) -> dict[str, dict]:
    ds = load(path, bin_ms)
    common = dict(save_file=False, include_behavior=True, include_forward_pred=True)
    groups = {
        "train": mt.make_train_input_tensors(ds, name, trial_split="train", **common),
        "trainval": mt.make_train_input_tensors(ds, name, trial_split=["train", "val"], **common),
        "val": mt.make_eval_input_tensors(ds, name, trial_split="val", save_file=False),
    }
    target = mt.make_eval_target_tensors(
        ds, name, train_trial_split="train", eval_trial_split="val", include_psth=True, save_file=False
    )
    groups["val_target"] = target[name if bin_ms == 5 else f"{name}_{bin_ms}"]
    return groups


def test_group(path: str, name: str, bin_ms: int) -> dict[str, dict]:
    ds = load(path, bin_ms)
    return {"test": mt.make_eval_input_tensors(ds, name, trial_split="test", save_file=False)}


def write(group: h5py.Group, arrays: dict) -> None:
    for key, value in arrays.items():
        value = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if value.dtype == object:
            sub = group.create_group(key)
            for i, item in enumerate(value):
                sub.create_dataset(str(i), data=np.asarray(item).astype(np.int64))
        elif value.dtype == np.float16:
            group.create_dataset(key, data=value.astype(np.float32))
        else:
            group.create_dataset(key, data=value)


def main(argv: list[str]) -> None:
    out, specs = argv[0], argv[1:]
    if len(specs) % 4:
        raise SystemExit("usage: make_tensors_ref.py OUT.h5 (DATASET BIN_MS TRAIN_NWB TEST_NWB)+")
    with h5py.File(out, "w") as f:
        for i in range(0, len(specs), 4):
            name, bin_ms, train_path, test_path = specs[i : i + 4]
            bin_ms = int(bin_ms)
            groups: dict[str, dict] = {}
            top = f.create_group(f"{name}_{bin_ms}")
            # a file nlb_tools cannot process is recorded, not fatal: the other datasets still count
            for which, path, build in (("train", train_path, train_groups), ("test", test_path, test_group)):
                if path == "-":
                    continue
                try:
                    groups.update(build(path, name, bin_ms))
                except Exception as exc:  # noqa: BLE001 - any nlb_tools failure is reported as such
                    top.attrs[f"error_{which}_file"] = f"{type(exc).__name__}: {exc}"
            for group_name, arrays in groups.items():
                write(top.create_group(group_name), arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
