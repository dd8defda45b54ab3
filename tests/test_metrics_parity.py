"""Every metric of nlbkit equals nlb_tools' `evaluate` to 1e-9, on the same files.

Random rates are scored against eval targets in the exact layout of all 7 datasets at 5 and 20 ms
(tests/eval_layouts.py). The submission file is the one nlbkit's `write_submission` writes, so the
same run also proves that nlb_tools accepts and scores nlbkit's files. One reference subprocess
scores every group at once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_layouts import all_groups, random_rates, random_target

from nlbkit.datasets import get_spec
from nlbkit.evaluation import read_h5_groups, write_h5_groups
from nlbkit.metrics import evaluate
from nlbkit.submission import write_submission

pytestmark = pytest.mark.parity


def assert_results_equal(ours: list, ref: list, tol: float = 1e-9) -> None:
    """Same splits in the same order, same metric names, values within `tol`."""
    assert [list(entry) for entry in ours] == [list(entry) for entry in ref]
    for mine, theirs in zip(ours, ref, strict=True):
        for split, metrics in theirs.items():
            assert list(mine[split]) == list(metrics), split
            for name, value in metrics.items():
                got = mine[split][name]
                assert math.isclose(got, value, rel_tol=0, abs_tol=tol), (split, name, got, value)


@pytest.fixture(scope="session", params=[0, 1], ids=["seed0", "seed1"])
def random_layout(request, tmp_path_factory, run_reference):
    """(targets file, submission file, nlb_tools' result) for every group on random data."""
    rng = np.random.default_rng(request.param)
    root = tmp_path_factory.mktemp(f"layout{request.param}")
    targets, rates = {}, {}
    for dataset, bin_ms in all_groups():
        group = get_spec(dataset).group_name(bin_ms)
        targets[group] = random_target(dataset, bin_ms, rng)
        rates[group] = random_rates(dataset, bin_ms, rng)
    target_file = write_h5_groups(root / "targets.h5", targets)
    submission_file = write_submission(rates, root / "submission.h5", "val")
    reference = run_reference("evaluate_ref.py", target_file, submission_file)
    return target_file, submission_file, reference


def test_reference_scores_every_group(random_layout):
    _, _, reference = random_layout
    splits = {split: metrics for entry in reference for split, metrics in entry.items()}
    for dataset, bin_ms in all_groups():
        spec = get_spec(dataset)
        if spec.scale_prefix:
            split = "mc_maze_scaling_split" if bin_ms == 5 else "mc_maze_scaling_20_split"
            assert f"{spec.scale_prefix} co-bps" in splits[split]
        else:
            assert "co-bps" in splits[f"{spec.group_name(bin_ms)}_split"]


def test_every_metric_equals_nlb_tools(random_layout):
    target_file, submission_file, reference = random_layout
    ours = evaluate(read_h5_groups(target_file), read_h5_groups(submission_file))
    assert_results_equal(ours, reference)

