"""Make NLB eval targets with nlb_tools itself (reference environment), in EvalAI's file layout.

Usage: eval_target_ref.py OUT32.h5 OUT64.h5 DATASET BIN_MS TRAIN_NWB [DATASET BIN_MS TRAIN_NWB ...]

For each (dataset, bin), `make_eval_target_tensors(train -> val, include_psth=True)`; all groups go
into OUT32.h5 through nlb_tools' own `save_to_h5` (float32/int32, variable-length index lists: the
layout of EvalAI's annotation file and of `eval_data_test.h5`), and unrounded (dlen=None) into
OUT64.h5.

pandas >= 1.4 defect (NLB_SPEC.md, "Known defects"): rows out of time order where a behaviour
series does not span the session; `import nlb_sorted_index` fixes that at run time by sorting
the index `NWBDataset.load` returns, as pandas 1.3 did. Nothing else in nlb_tools is changed.
"""

import os

# One BLAS thread: the reference's small ridge fits ran 5x slower with threads on a busy machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging
import sys

import nlb_sorted_index  # noqa: F401  (sorts NWBDataset.load's index; see its doc)
from nlb_tools import make_tensors as mt
from nlb_tools.nwb_interface import NWBDataset

logging.disable(logging.WARNING)

def main() -> None:
    out32, out64, *rest = sys.argv[1:]
    targets = {}
    for i in range(0, len(rest), 3):
        name, bin_ms, path = rest[i], int(rest[i + 1]), rest[i + 2]
        dataset = NWBDataset(path)
        dataset.resample(bin_ms)
        targets.update(mt.make_eval_target_tensors(
            dataset, name, train_trial_split="train", eval_trial_split="val", include_psth=True,
            save_file=False,
        ))
    mt.save_to_h5(targets, out32, overwrite=True)
    mt.save_to_h5(targets, out64, overwrite=True, dlen=None)


if __name__ == "__main__":
    main()
