"""The trials a run fits and the trials it is scored on, read from an NLB tensor file.

Two kinds of file are read:
- `nlbkit prepare`'s `tensors_<bin>ms.h5`, with groups `train`, `trainval`, `val`, `test`,
  `val_target` (nlb_tools' key names). Phase `val` fits `train` and is scored on `val`
  against `val_target`; phase `test` fits `trainval` and predicts `test` (no targets).
- a file of train trials only, with nlb_tools' train key names at its root (`train_spikes_heldin`,
  `train_spikes_heldout`, their `_forward` bins, `train_behavior`): a seeded share of its trials
  becomes the scored eval set (phase `val`).

All arrays are (trials, bins, neurons), spike counts per bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.h5io import load_val_target, open_h5


@dataclass
class TrialSet:
    """Spikes of a set of trials: held-in and held-out neurons, observed and forward bins."""

    heldin: np.ndarray  # (trials, T, Nin)
    heldout: np.ndarray | None = None  # (trials, T, Nout)
    heldin_forward: np.ndarray | None = None  # (trials, F, Nin)
    heldout_forward: np.ndarray | None = None  # (trials, F, Nout)
    behavior: np.ndarray | None = None  # (trials, T, dims)

    def __len__(self) -> int:
        return self.heldin.shape[0]

    def subset(self, index: np.ndarray) -> TrialSet:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return TrialSet(
            *(
                pick(getattr(self, k))
                for k in ("heldin", "heldout", "heldin_forward", "heldout_forward", "behavior")
            )
        )

    def has_targets(self) -> bool:
        return (
            self.heldout is not None and self.heldin_forward is not None and self.heldout_forward is not None
        )

    def target(self) -> np.ndarray:
        """(trials, T+F, Nin+Nout): what the model learns to predict; NaN (unobserved) stays NaN
        and is left out of the loss (reading it as 0 spikes would teach the model silence there)."""
        if not self.has_targets():
            raise NlbkitError("these trials have no held-out or forward spikes to train on")
        observed = np.concatenate([self.heldin, self.heldout], axis=2)
        forward = np.concatenate([self.heldin_forward, self.heldout_forward], axis=2)
        return np.concatenate([observed, forward], axis=1).astype(np.float32)


@dataclass
class PhaseData:
    """What one run needs: trials to fit (all of them get train rates) and trials to score/predict."""

    fit: TrialSet
    eval: TrialSet  # targets present when scored locally (phase val, or held-out train trials)
    phase: str
    source: str  # 'val' | 'test' | 'holdout': where the eval trials come from
    eval_index: np.ndarray | None = None  # for 'holdout': indices of the eval trials in the file
    targets: dict | None = None  # nlb_tools' eval target dict (key -> array), when scored locally

    @property
    def n_heldin(self) -> int:
        return self.fit.heldin.shape[2]

    @property
    def n_heldout(self) -> int:
        return self.fit.heldout.shape[2]

    @property
    def n_forward(self) -> int:
        return self.fit.heldin_forward.shape[1]


def _read(group: h5py.Group, key: str, path: Path, required: bool = True) -> np.ndarray | None:
    if key not in group:
        if required:
            where = group.name if group.name != "/" else "root"
            raise NlbkitError(f"{path}: '{key}' missing (in {where})")
        return None
    return np.asarray(group[key][()])


def train_trials(group: h5py.Group, path: Path) -> TrialSet:
    """The trials under nlb_tools' train key names in `group` (a file's root or a `train` group)."""
    return TrialSet(
        heldin=_read(group, "train_spikes_heldin", path),
        heldout=_read(group, "train_spikes_heldout", path),
        heldin_forward=_read(group, "train_spikes_heldin_forward", path),
        heldout_forward=_read(group, "train_spikes_heldout_forward", path),
        behavior=_read(group, "train_behavior", path, required=False),
    )


def holdout_split(n_trials: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) trial indices, sorted; `round(fraction * n)` trials held out, at least one."""
    if not 0 < fraction < 1:
        raise NlbkitError(f"a held-out fraction must lie in (0, 1), got {fraction}")
    n_out = min(max(1, round(fraction * n_trials)), n_trials - 1)
    order = np.random.default_rng(seed).permutation(n_trials)
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def load_phase_data(path: str | Path, phase: str, eval_fraction: float = 0.2, seed: int = 0) -> PhaseData:
    """The fit and eval trials of `phase` ('val' | 'test') from a tensor file (see module doc)."""
    path = Path(path)
    hint = " (run `nlbkit prepare` first, or pass --from-tensors)"
    with open_h5(path, "tensor file", hint=hint) as h5:
        if "train" in h5 and isinstance(h5["train"], h5py.Group):
            return _prepared(h5, path, phase)
        if "train_spikes_heldin" in h5:
            if phase != "val":
                raise NlbkitError(f"{path}: holds train trials only, so only phase 'val' can be run on it")
            return _holdout(h5, path, eval_fraction, seed)
    raise NlbkitError(
        f"{path}: neither a `nlbkit prepare` tensor file nor train tensors (no 'train' group or "
        "'train_spikes_heldin')"
    )


def _prepared(h5: h5py.File, path: Path, phase: str) -> PhaseData:
    if phase == "val":
        for name in ("train", "val", "val_target"):
            if name not in h5:
                raise NlbkitError(f"{path}: group '{name}' missing")
        target = h5["val_target"]
        eval_set = TrialSet(
            heldin=_read(h5["val"], "eval_spikes_heldin", path),
            heldout=_read(target, "eval_spikes_heldout", path),
            heldin_forward=_read(target, "eval_spikes_heldin_forward", path),
            heldout_forward=_read(target, "eval_spikes_heldout_forward", path),
            behavior=_read(target, "eval_behavior", path, required=False),
        )
        fit = train_trials(h5["train"], path)
        return PhaseData(fit=fit, eval=eval_set, phase=phase, source="val", targets=load_val_target(path))
    if phase == "test":
        for name in ("trainval", "test"):
            if name not in h5:
                raise NlbkitError(f"{path}: group '{name}' missing")
        fit = train_trials(h5["trainval"], path)
        eval_set = TrialSet(heldin=_read(h5["test"], "eval_spikes_heldin", path))
        return PhaseData(fit=fit, eval=eval_set, phase=phase, source="test")
    raise NlbkitError(f"unknown phase '{phase}': use val or test")


def _holdout(h5: h5py.File, path: Path, eval_fraction: float, seed: int) -> PhaseData:
    every = train_trials(h5, path)
    kept, held = holdout_split(len(every), eval_fraction, seed)
    fit, eval_set = every.subset(kept), every.subset(held)
    targets = holdout_targets(fit, eval_set)
    return PhaseData(fit=fit, eval=eval_set, phase="val", source="holdout", eval_index=held, targets=targets)


def holdout_targets(fit: TrialSet, eval_set: TrialSet) -> dict[str, np.ndarray]:
    """nlb_tools' eval-target dict for train trials held out as `eval_set`: their held-out and
    forward spikes, and behaviour with the kept trials' (`fit`) as the decoder's training set."""
    targets = {
        "eval_spikes_heldout": eval_set.heldout,
        "eval_spikes_heldin_forward": eval_set.heldin_forward,
        "eval_spikes_heldout_forward": eval_set.heldout_forward,
    }
    if fit.behavior is not None:
        targets["train_behavior"], targets["eval_behavior"] = fit.behavior, eval_set.behavior
    return targets
