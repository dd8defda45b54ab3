"""Tiny tensor files in the layout of `nlbkit prepare` and of nlb_tools' train tensors, and tiny configs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from nlbkit.config import RunConfig, build_config

N_IN, N_OUT, T, F = 6, 3, 140, 40  # mc_maze_small at 5 ms: 700 ms trials, 200 ms forward


def _spikes(rng: np.random.Generator, trials: int, bins: int, neurons: int, rate: np.ndarray) -> np.ndarray:
    return rng.poisson(np.broadcast_to(rate[:neurons], (trials, bins, neurons))).astype(np.float32)


def _trials(rng: np.random.Generator, trials: int) -> dict[str, np.ndarray]:
    """Spikes whose rates follow a shared slow signal, so held-in neurons predict held-out ones."""
    phase = rng.uniform(0, 2 * np.pi, size=(trials, 1, 1))
    time = np.arange(T + F)[None, :, None]
    gains = np.linspace(0.5, 1.5, N_IN + N_OUT)[None, None, :]
    rates = 0.4 * np.exp(np.sin(time / 3.0 + phase) * gains)
    counts = rng.poisson(rates).astype(np.float32)
    behavior = np.concatenate([np.sin(time / 3.0 + phase), np.cos(time / 3.0 + phase)], axis=2)[:, :T]
    return {
        "heldin": counts[:, :T, :N_IN],
        "heldout": counts[:, :T, N_IN:],
        "heldin_forward": counts[:, T:, :N_IN],
        "heldout_forward": counts[:, T:, N_IN:],
        "behavior": behavior.astype(np.float32),
    }


def _train_group(group: h5py.Group, d: dict[str, np.ndarray]) -> None:
    group["train_spikes_heldin"] = d["heldin"]
    group["train_spikes_heldout"] = d["heldout"]
    group["train_spikes_heldin_forward"] = d["heldin_forward"]
    group["train_spikes_heldout_forward"] = d["heldout_forward"]
    group["train_behavior"] = d["behavior"]


def write_prepared(path: Path, seed: int = 0, n_train: int = 16, n_val: int = 6, n_test: int = 5) -> Path:
    """A `tensors_5ms.h5` with groups train, trainval, val, test, val_target."""
    rng = np.random.default_rng(seed)
    train, val, test = _trials(rng, n_train), _trials(rng, n_val), _trials(rng, n_test)
    trainval = {k: np.concatenate([train[k], val[k]]) for k in train}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.attrs.update({"dataset": "mc_maze_small", "bin_ms": 5})
        _train_group(h5.create_group("train"), train)
        _train_group(h5.create_group("trainval"), trainval)
        h5.create_group("val")["eval_spikes_heldin"] = val["heldin"]
        h5["val/eval_spikes_heldout"] = val["heldout"]
        h5.create_group("test")["eval_spikes_heldin"] = test["heldin"]
        target = h5.create_group("val_target")
        target["eval_spikes_heldout"] = val["heldout"]
        target["eval_spikes_heldin_forward"] = val["heldin_forward"]
        target["eval_spikes_heldout_forward"] = val["heldout_forward"]
        target["train_behavior"] = train["behavior"]
        target["eval_behavior"] = val["behavior"]
    return path


def write_train_only(path: Path, seed: int = 0, trials: int = 20) -> Path:
    """nlb_tools' train tensors at the file's root (as `make_train_input_tensors` saves them)."""
    with h5py.File(path, "w") as h5:
        _train_group(h5, _trials(np.random.default_rng(seed), trials))
    return path


def tiny_config(*overrides: str) -> RunConfig:
    """A LangevinFlow small enough to train a few epochs in about a second."""
    base = [
        "model.hidden=8",
        "model.ff_dim=16",
        "model.prediction_samples=2",
        "train.batch_size=8",
        "train.epochs=3",
        "train.val_every=1",
        "train.val_samples=2",
        "train.kl_ramp_epochs=2",
        # The loop's mechanics with validation trials (checkpoint choice, early stopping);
        # mc_maze_small's own default trains on every trial.
        "train.val_fraction=0.15",
        "train.device=cpu",
        "train.compare_smoothing=false",
        "smoothing.max_iter=50",
    ]
    return build_config("mc_maze_small", overrides=[*base, *overrides])
