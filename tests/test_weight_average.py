"""`train.ema_epochs`: an exponential moving average of the weights is what validation scores,
what `best.pt` keeps and what is predicted; the raw weights keep training and resuming is exact."""

import pytest
import torch

from nlbkit.errors import NlbkitError
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared


@pytest.fixture
def tensors(tmp_path):
    return write_prepared(tmp_path / "tensors_5ms.h5")


# Batches of 2 trials: about 7 optimiser steps an epoch, so an average over 0.3 epochs has a
# decay near 0.5, below the cap of a sixth of the run for runs of 2 epochs or more.
EMA = ("train.batch_size=2", "train.ema_epochs=0.3")


def _train(tensors, root, *overrides, resume=False):
    cfg = tiny_config(*overrides)
    return train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=root,
            resume=resume,
            progress=False,
        ),
    )


def test_best_checkpoint_holds_the_averaged_weights(tensors, tmp_path):
    run = _train(tensors, tmp_path / "runs", "train.epochs=4", *EMA).run
    last = torch.load(run.last_ckpt, weights_only=True)
    best = torch.load(run.best_ckpt, weights_only=True)
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert averaged.keys() == last["model"].keys()
    # The average trails the raw weights: they differ after 4 epochs of training.
    assert any(not torch.equal(averaged[k], last["model"][k]) for k in averaged)
    if best["epoch"] == last["epoch"]:
        assert all(torch.equal(best["model"][k], averaged[k]) for k in averaged)
    else:  # an earlier epoch was best: its weights are an average too, not last.pt's raw ones
        assert any(not torch.equal(best["model"][k], last["model"][k]) for k in averaged)


def test_validation_scores_differ_with_the_average(tensors, tmp_path):
    plain = _train(
        tensors, tmp_path / "a", "train.epochs=3", "train.batch_size=2", "train.ema_epochs=0"
    ).run.metrics()
    averaged = _train(tensors, tmp_path / "b", "train.epochs=3", *EMA).run.metrics()
    # The same raw training (the loss of epoch 1 is bit-identical), scored with other weights.
    assert plain[0]["loss"] == averaged[0]["loss"]
    assert [r["val_co_bps"] for r in plain] != [r["val_co_bps"] for r in averaged]


def test_resume_restores_the_average(tensors, tmp_path):
    root = tmp_path / "runs"
    _train(tensors, root, "train.epochs=2", *EMA)
    resumed = _train(tensors, root, "train.epochs=4", *EMA, resume=True)
    straight = _train(tensors, tmp_path / "other", "train.epochs=4", *EMA)
    scored = [[r["val_co_bps"] for r in out.run.metrics()] for out in (resumed, straight)]
    assert scored[0] == scored[1]
    assert resumed.scores == straight.scores


def test_resume_with_the_average_needs_a_checkpoint_that_has_it(tensors, tmp_path):
    root = tmp_path / "runs"
    _train(tensors, root, "train.epochs=2", "train.batch_size=2", "train.ema_epochs=0")
    with pytest.raises(NlbkitError, match=r"last.pt: saved without train.ema_epochs"):
        _train(tensors, root, "train.epochs=4", *EMA, resume=True)


def test_the_horizon_is_counted_in_epochs_and_capped_by_the_run_length():
    from nlbkit.train.loop import ema_decay

    cfg = tiny_config("train.ema_epochs=50", "train.epochs=300", "train.batch_size=16")
    assert ema_decay(cfg.train, 51) == pytest.approx(1 - 1 / (50 * 4))  # 51 trials: 4 steps an epoch
    assert ema_decay(cfg.train, 160) == pytest.approx(1 - 1 / (50 * 10))
    short = tiny_config("train.ema_epochs=50", "train.epochs=30", "train.batch_size=16")
    assert ema_decay(short.train, 51) == pytest.approx(1 - 1 / (5 * 4))  # a sixth of 30 epochs


def test_a_resumed_run_keeps_the_decay_it_started_with(tensors, tmp_path):
    root = tmp_path / "runs"
    first = _train(tensors, root, "train.epochs=2", "train.batch_size=2", "train.ema_epochs=50").run
    started = torch.load(first.last_ckpt, weights_only=True)["ema_decay"]
    _train(tensors, root, "train.epochs=4", "train.batch_size=2", "train.ema_epochs=50", resume=True)
    assert torch.load(first.last_ckpt, weights_only=True)["ema_decay"] == started
    # A run of 4 epochs from the start would average over twice as many steps (a sixth of 4 epochs).
    fresh = _train(
        tensors, tmp_path / "other", "train.epochs=4", "train.batch_size=2", "train.ema_epochs=50"
    ).run
    assert torch.load(fresh.last_ckpt, weights_only=True)["ema_decay"] > started
