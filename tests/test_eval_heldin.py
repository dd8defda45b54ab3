"""train.fit_eval_heldin: the eval trials' held-in spikes train the model, their scored spikes cannot."""

import csv
import shutil

import h5py
import numpy as np
import torch

from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared

SCORED = (
    "val_target/eval_spikes_heldout",
    "val_target/eval_spikes_heldin_forward",
    "val_target/eval_spikes_heldout_forward",
    "val/eval_spikes_heldout",
)


def _train(path, root, phase="val", *overrides):
    cfg = tiny_config("train.fit_eval_heldin=true", "train.epochs=3", *overrides)
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            phase=phase,
            from_tensors=path,
            run_root=root,
            progress=False,
        ),
    )
    weights = torch.load(out.run.last_ckpt, weights_only=False)["model"]
    with open(out.run.metrics_csv, newline="") as handle:
        log = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    with h5py.File(out.run.rates_h5) as h5:
        rates = {k: v[()] for k, v in h5["mc_maze_small"].items()}
    return weights, log, rates


def _altered(src, dst, keys, seed=1):
    """A copy of `src` with the arrays at `keys` replaced by other spike counts of the same shape."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    rng = np.random.default_rng(seed)
    with h5py.File(dst, "r+") as h5:
        for key in keys:
            old = h5[key][()]
            new = rng.poisson(3.0, old.shape).astype(old.dtype)
            assert not np.array_equal(new, old)
            h5[key][...] = new
    return dst


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_eval_targets_cannot_reach_training(tmp_path):
    original = write_prepared(tmp_path / "a" / "tensors_5ms.h5")
    changed = _altered(original, tmp_path / "b" / "tensors_5ms.h5", SCORED)
    weights_a, log_a, rates_a = _train(original, tmp_path / "runs_a")
    weights_b, log_b, rates_b = _train(changed, tmp_path / "runs_b")
    assert _same(weights_a, weights_b)  # bit-identical weights after 3 epochs
    assert log_a == log_b and len(log_a) == 3  # every loss and validation figure, to the last digit
    for key in rates_a:
        np.testing.assert_array_equal(rates_a[key], rates_b[key])


def test_eval_heldin_spikes_do_train_the_model(tmp_path):
    """The switch reads the eval trials' held-in spikes: changing them changes the weights,
    in phase val and phase test; without the switch they train nothing."""
    original = write_prepared(tmp_path / "a" / "tensors_5ms.h5")
    for phase, key in (("val", "val/eval_spikes_heldin"), ("test", "test/eval_spikes_heldin")):
        changed = _altered(original, tmp_path / phase / "tensors_5ms.h5", [key])
        on_a = _train(original, tmp_path / f"{phase}_on_a", phase)[0]
        on_b = _train(changed, tmp_path / f"{phase}_on_b", phase)[0]
        assert not _same(on_a, on_b), phase
        off_a = _train(original, tmp_path / f"{phase}_off_a", phase, "train.fit_eval_heldin=false")[0]
        off_b = _train(changed, tmp_path / f"{phase}_off_b", phase, "train.fit_eval_heldin=false")[0]
        assert _same(off_a, off_b), phase
