"""The fast training path on a CPU: bfloat16 autocast (train.cpu_amp) and the torch thread rule.

The fast path changes the precision of the encoder's and decoder's matrix products, not the
random draws, so a fast run follows the float32 run: measured on the tiny model below (8 epochs of
3 batches, 140 + 40 bins), its epoch losses differ from float32's by at most 1.7e-4 relative and
its rates by at most 2.9e-3 relative. The tolerances below are about six and three times those.
"""

import os

import h5py
import numpy as np
import pytest
import torch

from nlbkit.config import build_config
from nlbkit.nlb.datasets import DATASET_NAMES
from nlbkit.train.loop import (
    TORCH_DEFAULT_THREADS,
    autocast_dtype,
    cpu_has_native_bf16,
    training_threads,
)
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared

needs_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bfloat16")
# benchmarks/gpu_check.sh adds cuda (NLBKIT_TEST_DEVICES=cpu,cuda); CI has no GPU.
DEVICES = os.environ.get("NLBKIT_TEST_DEVICES", "cpu").split(",")
LOSS_RTOL = 1e-3
RATE_RTOL = 1e-2


@pytest.fixture
def tensors(tmp_path):
    return write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")


def test_threads_follow_the_size_of_a_step():
    small, released = build_config("mc_maze_small").train, build_config("mc_maze").train
    assert training_threads(small, 64, cores=2) == 1  # 16 x 64: small ops, two threads mostly wait
    assert training_threads(released, 280, cores=2) == TORCH_DEFAULT_THREADS  # 256 x 280
    assert training_threads(small, 64, cores=8) == TORCH_DEFAULT_THREADS
    small.threads = 3
    assert training_threads(small, 64, cores=2) == 3  # set by hand: taken as given


def test_cpu_autocast_only_where_asked_and_native(monkeypatch):
    cfg = build_config("mc_maze").train
    cpu = torch.device("cpu")
    cfg.cpu_amp = False
    assert autocast_dtype(cfg, cpu) is None
    cfg.cpu_amp = True
    monkeypatch.setattr("nlbkit.train.loop.cpu_has_native_bf16", lambda: True)
    assert autocast_dtype(cfg, cpu) == torch.bfloat16
    monkeypatch.setattr("nlbkit.train.loop.cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(cfg, cpu) is None  # emulated bfloat16 would be slower: float32
    cfg.amp = False
    assert autocast_dtype(cfg, torch.device("cuda")) is None


@pytest.mark.parametrize("dataset", [d for d in DATASET_NAMES if d != "mc_maze_small"])
def test_released_size_defaults_take_the_fast_path(dataset):
    assert build_config(dataset).model.hidden == 280 and build_config(dataset).train.cpu_amp is True


def test_the_small_model_stays_in_float32():
    assert build_config("mc_maze_small").train.cpu_amp is False  # no gain at its size


def _run(tensors, root, *overrides, resume=False, device="cpu"):
    cfg = tiny_config("train.epochs=8", "train.threads=1", f"train.device={device}", *overrides)
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=root,
            progress=False,
            resume=resume,
        ),
    )
    with h5py.File(out.run.rates_h5) as h5:
        rates = h5["mc_maze_small/eval_rates_heldout"][()]
    return np.array([[float(r[k]) for k in ("loss", "nll")] for r in out.run.metrics()]), rates


@pytest.mark.parametrize("device", DEVICES)
def test_fast_path_follows_the_float32_run(tensors, tmp_path, device):
    if device == "cpu" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16")
    off, on = ("train.cpu_amp=false", "train.amp=false"), ("train.cpu_amp=true", "train.amp=true")
    losses32, rates32 = _run(tensors, tmp_path / "fp32", *off, device=device)
    losses16, rates16 = _run(tensors, tmp_path / "bf16", *on, device=device)
    assert losses32[-1, 1] < losses32[0, 1]  # it trains: the NLL falls
    assert not np.array_equal(losses16, losses32)  # the fast path did run in reduced precision
    np.testing.assert_allclose(losses16, losses32, rtol=LOSS_RTOL)
    np.testing.assert_allclose(rates16, rates32, rtol=RATE_RTOL)


@needs_bf16
@pytest.mark.slow
def test_fast_path_resumes_exactly(tensors, tmp_path):
    # No weight average: its decay is fixed by the epochs a run starts with (3 here, 8 straight).
    fast = ("train.cpu_amp=true", "train.ema_epochs=0")
    straight, rates_straight = _run(tensors, tmp_path / "straight", *fast)
    _run(tensors, tmp_path / "parts", *fast, "train.epochs=3")
    resumed, rates_resumed = _run(tensors, tmp_path / "parts", *fast, resume=True)
    np.testing.assert_array_equal(resumed, straight)
    np.testing.assert_array_equal(rates_resumed, rates_straight)


def test_cpu_amp_without_native_bfloat16_says_it_trains_in_float32(tensors, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("nlbkit.train.loop.cpu_has_native_bf16", lambda: False)
    cfg = tiny_config("train.cpu_amp=true", "train.epochs=1")
    train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=True,
        ),
    )
    note = "train.cpu_amp: this CPU has no native bfloat16, so training runs in float32"
    assert note in capsys.readouterr().err
