"""Reading a training checkpoint (`checkpoints/{last,best}.pt`), with one-line errors naming it.

A checkpoint is a dict with at least 'model' (a state dict); `Trainer.state()` lists the rest.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from nlbkit.errors import NlbkitError

UNREADABLE = (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_checkpoint(path: str | Path, map_location: Any = "cpu", needs: tuple[str, ...] = ("model",)) -> dict:
    """The checkpoint at `path`; a missing, truncated or foreign file, or one lacking a key of
    `needs`, is an NlbkitError naming it."""
    path = Path(path)
    if not path.exists():
        raise NlbkitError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except UNREADABLE as exc:
        raise NlbkitError(
            f"{path}: not a readable checkpoint, truncated or damaged ({_first_line(exc)})"
        ) from None
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
