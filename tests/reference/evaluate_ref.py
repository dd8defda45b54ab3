"""Score a submission with nlb_tools' own `evaluate` (reference environment); print the result as JSON.

Usage: evaluate_ref.py TARGET.h5 SUBMISSION.h5
TARGET.h5 has nlb_tools' eval-target layout (one group per dataset and bin, as EvalAI's
annotation file); SUBMISSION.h5 the EvalAI submission layout. No NWB is loaded, so the pandas
index-order defect of nlb_tools does not arise here.
"""

import json
import sys

from nlb_tools.evaluation import evaluate


def main() -> None:
    target_path, submission_path = sys.argv[1:3]
    result = evaluate(target_path, submission_path)
    as_floats = [{split: {k: float(v) for k, v in d.items()} for split, d in r.items()} for r in result]
    print(json.dumps(as_floats))


if __name__ == "__main__":
    main()
