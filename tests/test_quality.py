"""Quality in CI: a short LangevinFlow run beats the smoothing baseline, and what is submitted
(rates.h5) comes from the best checkpoint, not the last."""

import shutil

import h5py
import numpy as np
import torch

from nlbkit.train.loop import Trainer
from nlbkit.train.run import TrainRequest, predict_file, train_run
from tests.training_fixtures import tiny_config, write_prepared

# Measured when this test was written: LangevinFlow 0.304 co-bps, smoothing 0.175 (its better
# kernel of 20 and 60 ms), so a margin of 0.05 leaves room for platform differences.
MARGIN = 0.05


def test_short_training_beats_smoothing_by_a_margin(tmp_path):
    tensors = write_prepared(tmp_path / "t.h5", n_train=40, n_val=20)
    cfg = tiny_config(
        "train.epochs=15",
        "model.hidden=16",
        "model.dropout=0.0",
        "train.kl_ramp_epochs=5",
        "train.val_every=5",
        "train.lr=1e-2",
        "train.threads=1",
    )
    langevin = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=tmp_path / "r",
            progress=False,
        ),
    )
    smoothing = max(
        train_run(
            TrainRequest(
                "mc_maze_small",
                tiny_config(f"smoothing.kern_sd_ms={width}"),
                model="smoothing",
                from_tensors=tensors,
                run_root=tmp_path / "r",
                tag=str(width),
                progress=False,
            ),
        ).scores["co-bps"]
        for width in (20, 60)
    )
    assert langevin.scores["co-bps"] > smoothing + MARGIN, (langevin.scores, smoothing)


def _eval_rates(path):
    with h5py.File(path) as h5:
        return h5["mc_maze_small/eval_rates_heldout"][()]


def test_submitted_rates_come_from_the_best_checkpoint(tmp_path, monkeypatch):
    tensors = write_prepared(tmp_path / "t.h5")
    scores = iter([0.5, 0.9, 0.1, 0.2])  # validation co-bps by epoch: the best is epoch 2 of 4
    monkeypatch.setattr(Trainer, "_validate", lambda self, kl_weight: (1.0, next(scores)))
    cfg = tiny_config("train.epochs=4", "train.kl_ramp_epochs=1", "train.patience=10")
    run = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=tmp_path / "r",
            progress=False,
        ),
    ).run

    assert torch.load(run.best_ckpt, weights_only=False)["epoch"] == 2
    assert torch.load(run.last_ckpt, weights_only=False)["epoch"] == 4
    # predicting again from best.pt (same seed, same order of trials) gives rates.h5 to the bit
    submitted = _eval_rates(run.rates_h5)
    again = _eval_rates(predict_file(run.path, tensors, tmp_path / "best.h5"))
    np.testing.assert_array_equal(again, submitted)
    # and last.pt's weights give other rates
    shutil.copy(run.last_ckpt, run.best_ckpt)
    from_last = _eval_rates(predict_file(run.path, tensors, tmp_path / "last.h5"))
    assert not np.allclose(from_last, submitted)
