"""Score a submission with nlb_tools' own `evaluate` (reference environment); print the result as JSON.

Usage: evaluate_ref.py TARGET.h5 SUBMISSION.h5 [TARGET.h5 SUBMISSION.h5 ...]
One pair prints its result list; several pairs print a list of result lists, in order.
TARGET.h5 has nlb_tools' eval-target layout (one group per dataset and bin, as EvalAI's
annotation file); SUBMISSION.h5 the EvalAI submission layout. No NWB is loaded, so the pandas
index-order defect of nlb_tools does not arise here.
"""

import os

# One BLAS thread: the reference's small ridge fits ran 5x slower with threads on a busy machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import sys

from nlb_tools.evaluation import evaluate


def score(target_path: str, submission_path: str) -> list:
    result = evaluate(target_path, submission_path)
    return [{split: {k: float(v) for k, v in d.items()} for split, d in r.items()} for r in result]


def main() -> None:
    args = sys.argv[1:]
    results = [score(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    print(json.dumps(results[0] if len(results) == 1 else results))


if __name__ == "__main__":
    main()
