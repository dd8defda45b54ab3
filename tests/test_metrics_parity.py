"""Every metric of nlbkit equals nlb_tools' `evaluate` to 1e-9, on the same files.

Random rates are scored against eval targets in the exact layout of all 7 datasets at 5 and 20 ms
(tests/eval_layouts.py). The submission file is the one nlbkit's `write_submission` writes, so the
same run also proves that nlb_tools accepts and scores nlbkit's files. One reference subprocess
scores every group at once.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from eval_layouts import all_groups, random_rates, random_target

from nlbkit.nlb.datasets import get_spec
from nlbkit.nlb.h5io import read_h5_groups, write_h5_groups
from nlbkit.nlb.keys import rate_shapes
from nlbkit.scoring.metrics import evaluate
from nlbkit.submit.evalai import write_submission

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



def _rates_for_targets(targets: dict, rng: np.random.Generator) -> dict:
    """Random positive rates shaped as the targets of each group imply."""
    out = {}
    for group, target in targets.items():
        n_eval, bins, n_out = target["eval_spikes_heldout"].shape
        fwd, n_in = target["eval_spikes_heldin_forward"].shape[1:]
        n_train = target["train_behavior"].shape[0]
        shapes = rate_shapes(n_train, bins, n_in, n_out, n_eval, bins, fwd)
        out[group] = {k: rng.gamma(2.0, 0.05, size=s).astype(np.float32) for k, s in shapes.items()}
    return out


def _val_target(groups) -> dict:
    """The `val_target` group from nlbkit's group iterator (the test file is not needed for it)."""
    return next(arrays for name, arrays in groups if name == "val_target")


def _merge_small_tp_conditions(groups: dict) -> dict:
    """Small generated dmfc_rsg splits leave (is_eye, theta, is_short) conditions with one val
    trial, where nlb_tools' tp corr raises. Both scorers read targets in which the conditions
    differ by is_eye alone (theta and is_short set to 0), so that tp corr can be compared."""
    for name in ("dmfc_rsg", "dmfc_rsg_20"):
        behavior = groups[name]["eval_behavior"]
        behavior[:, 1:3] = np.where(np.isnan(behavior[:, 1:3]), np.nan, 0.0)
    return groups


@pytest.fixture(scope="session")
def synth_targets(tmp_path_factory, run_reference):
    """Val targets of generated data of every dataset at 5 and 20 ms, made by nlb_tools and by
    nlbkit's `build_tensors`, and random rates for them.

    Returns (nlb_tools' targets as EvalAI stores them (float32), nlb_tools' unrounded targets,
    nlbkit's `val_target` groups, nlbkit submission file).
    """
    from nlbkit.nlb.datasets import DATASET_NAMES
    from nlbkit.prepare.tensors import iter_groups
    from nlbkit.synth.generate import write_dataset

    root = tmp_path_factory.mktemp("synth_targets")
    args, ours = [], {}
    for dataset in DATASET_NAMES:
        train_nwb, _ = write_dataset(dataset, root / "data", seed=0, scale="small")
        args += [arg for bin_ms in (5, 20) for arg in (dataset, str(bin_ms), train_nwb)]
    t32, t64 = root / "targets32.h5", root / "targets64.h5"
    # nlb_tools runs in its own process while nlbkit builds its targets here.
    with ThreadPoolExecutor(1) as pool:
        reference = pool.submit(run_reference, "eval_target_ref.py", t32, t64, *args)
        for dataset in DATASET_NAMES:
            for bin_ms in (5, 20):
                group = get_spec(dataset).group_name(bin_ms)
                ours[group] = _val_target(iter_groups(dataset, bin_ms, root / "data", progress=False))
        reference.result()
    for path in (t32, t64):
        write_h5_groups(path, _merge_small_tp_conditions(read_h5_groups(path)))
    rates = _rates_for_targets(read_h5_groups(t32), np.random.default_rng(3))
    return t32, t64, _merge_small_tp_conditions(ours), write_submission(rates, root / "sub.h5", "val")


@pytest.mark.slow
def test_metrics_equal_nlb_tools_on_generated_data_of_every_layout(synth_targets, run_reference):
    t32, t64, nlbkit_targets, submission = synth_targets
    reference = run_reference("evaluate_ref.py", t32, submission, t64, submission)
    # Every group was scored: 4 datasets x 2 bins, and the scaled sets' two shared splits.
    assert len(reference[0]) == 10
    n_metrics = sum(len(metrics) for entry in reference[0] for metrics in entry.values())
    assert n_metrics == 2 * (4 + 3 + 4 + 4 + 3 * 4)  # mc_maze, mc_rtt, area2_bump, dmfc_rsg, scaled
    for target_file, ref in zip((t32, t64), reference, strict=True):
        ours = evaluate(read_h5_groups(target_file), read_h5_groups(submission))
        assert_results_equal(ours, ref)
    # The whole local path: nlbkit's own val targets give nlb_tools' scores.
    assert_results_equal(evaluate(nlbkit_targets, read_h5_groups(submission)), reference[1])
