"""Training checkpoints (`checkpoints/{last,best}.pt`): saved atomically, read with `weights_only=True`
so that loading never runs code, with one-line errors naming the file.

A checkpoint is a dict with at least 'model' (a state dict); `Trainer.state()` lists the rest. It holds
only tensors and plain values (dicts, lists, numbers, strings, None): the random states that are not
tensors already (numpy's, Python's) are stored in such types by `rng_state` and put back by
`set_rng_state`, so a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlbkit.errors import NlbkitError
from nlbkit.paths import atomic_path

UNREADABLE = (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `state` (tensors and plain values only) to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: Any = "cpu", needs: tuple[str, ...] = ("model",)) -> dict:
    """The checkpoint at `path`, read with `weights_only=True`.

    A file carrying pickled objects (a callable, a class instance: code that would run on loading) is
    refused without running it; a missing, truncated or foreign file, or one lacking a key of `needs`,
    is an NlbkitError naming it.
    """
    path = Path(path)
    if not path.exists():
        raise NlbkitError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except UNREADABLE as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise NlbkitError(
                f"{path}: refusing to load a checkpoint that holds more than tensors and plain values "
                f"({found.group(1)}); loading it could run code"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        reason = detail.group(1).strip() if detail else _first_line(exc)
        raise NlbkitError(f"{path}: not a readable checkpoint, truncated or damaged ({reason})") from None
    if not isinstance(state, dict):
        raise NlbkitError(f"{path}: not an nlbkit checkpoint (a {type(state).__name__}, not a dict)")
    missing = [key for key in needs if key not in state]
    if missing:
        raise NlbkitError(f"{path}: not an nlbkit checkpoint (no {', '.join(repr(k) for k in missing)})")
    return state


def load_weights(net: torch.nn.Module, state: dict, path: str | Path) -> torch.nn.Module:
    """`net` with the checkpoint's weights; weights of another shape or model name the file."""
    try:
        net.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise NlbkitError(f"{path}: its weights do not fit this run's model ({_first_line(exc)})") from None
    return net


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    """Every random state a training run draws from, as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "shuffle": shuffle.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    """Put back the random states of `rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    npy = state["numpy"]
    keys = npy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    shuffle.set_state(state["shuffle"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
