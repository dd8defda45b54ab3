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

import hashlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.h5io import load_val_target, open_h5
from nlbkit.paths import atomic_path


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


def fold_split(n_trials: int, n_folds: int, fold: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) trial indices, sorted: fold `fold` of `n_folds` near-equal disjoint folds of
    a permutation seeded by `seed`; together the folds hold every trial once."""
    if not (2 <= n_folds <= n_trials and 0 <= fold < n_folds):
        raise NlbkitError(f"cannot take fold {fold} of {n_folds} folds of {n_trials} trials")
    parts = np.array_split(np.random.default_rng(seed).permutation(n_trials), n_folds)
    held = np.sort(parts[fold])
    return np.sort(np.concatenate([p for k, p in enumerate(parts) if k != fold])), held


def explicit_split(n_trials: int, eval_index, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) trial indices, sorted, for the given held-out indices."""
    held = np.unique(np.asarray(eval_index, dtype=np.int64))
    if held.size == 0 or held.size != len(eval_index) or held[0] < 0 or held[-1] >= n_trials:
        raise NlbkitError(f"{path}: eval trial indices must be distinct, in 0..{n_trials - 1}, not empty")
    if held.size >= n_trials:
        raise NlbkitError(f"{path}: holding out all {n_trials} trials leaves none to fit")
    return np.setdiff1d(np.arange(n_trials), held), held


def rebin_sum(array: np.ndarray, factor: int) -> np.ndarray:
    """(trials, bins, channels) -> (trials, bins // factor, channels): each run of `factor`
    consecutive bins summed (spike counts at a `factor` times wider bin, e.g. 5 ms -> 20 ms with 4).
    A NaN in a run makes its sum NaN (an unobserved bin leaves the wide bin unobserved).
    `bins` must be a multiple of `factor`."""
    return _rebin(array, factor).sum(axis=2)


def rebin_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """As `rebin_sum`, but the mean over each run of bins: a continuous signal (hand velocity)
    at the wider bin, as its average over the bin; NaN propagates likewise."""
    return _rebin(array, factor).mean(axis=2)


def _rebin(array: np.ndarray, factor: int) -> np.ndarray:
    if factor < 1:
        raise NlbkitError(f"a rebinning factor must be a positive integer, got {factor}")
    trials, bins, channels = array.shape
    if bins % factor:
        raise NlbkitError(f"{bins} bins cannot be grouped by {factor}: not a multiple")
    return array.reshape(trials, bins // factor, factor, channels)


def rebin_trials(trials: TrialSet, factor: int) -> TrialSet:
    """`trials` at a `factor` times wider bin: spikes summed (`rebin_sum`), behaviour averaged
    (`rebin_mean`). nlb_tools resamples 1 ms behaviour with its own filter instead, so 20 ms vel R2
    from a rebinned 5 ms file is close to, not identical with, nlb_tools' 20 ms tensors."""

    def spikes(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else rebin_sum(a, factor)

    return TrialSet(
        heldin=rebin_sum(trials.heldin, factor),
        heldout=spikes(trials.heldout),
        heldin_forward=spikes(trials.heldin_forward),
        heldout_forward=spikes(trials.heldout_forward),
        behavior=None if trials.behavior is None else rebin_mean(trials.behavior, factor),
    )


def write_train_trials(path: str | Path, trials: TrialSet, attrs: dict | None = None) -> Path:
    """`trials` as a file of train trials only (nlb_tools' train key names at the root), atomically."""
    keys = {
        "train_spikes_heldin": trials.heldin,
        "train_spikes_heldout": trials.heldout,
        "train_spikes_heldin_forward": trials.heldin_forward,
        "train_spikes_heldout_forward": trials.heldout_forward,
        "train_behavior": trials.behavior,
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(attrs or {})
        for key, array in keys.items():
            if array is not None:
                h5[key] = array
    return Path(path)


def read_train_trials(path: str | Path) -> TrialSet:
    """Every trial of a file of train trials only (see module doc)."""
    path = Path(path)
    with open_h5(path, "tensor file") as h5:
        if "train_spikes_heldin" not in h5:
            raise NlbkitError(f"{path}: not a file of train trials (no 'train_spikes_heldin' at its root)")
        return train_trials(h5, path)


def trials_fingerprint(path: str | Path) -> str:
    """A SHA-256 of every array in a tensor file (name, dtype, shape and values), attributes left out:
    two files with the same fingerprint hold the same trials, wherever they lie and whatever
    provenance their attributes record (`nlbkit cv` writes a rebinned copy per output folder)."""
    digest = hashlib.sha256()
    with open_h5(Path(path), "tensor file") as h5:
        names: list[str] = []
        h5.visit(names.append)  # every group and dataset below the root
        for name in sorted(names):
            node = h5[name]
            if isinstance(node, h5py.Dataset):
                digest.update(f"{name}\0{node.dtype.str}\0{node.shape}\0".encode())
                for block in _blocks(node):
                    _add_values(digest, block)
    return digest.hexdigest()


def _blocks(node: h5py.Dataset, limit: int = 64 << 20):
    """The dataset's values in slices along its first axis of about `limit` bytes (all at once if scalar)."""
    if not node.shape or node.shape[0] == 0:
        yield np.asarray(node[()])
        return
    row_bytes = max(1, node.dtype.itemsize * int(np.prod(node.shape[1:], dtype=np.int64)))
    rows = max(1, limit // row_bytes)
    for start in range(0, node.shape[0], rows):
        yield node[start : start + rows]


def _add_values(digest, block: np.ndarray) -> None:
    if block.dtype.kind == "O":  # variable-length entries (index lists, strings): their values, not pointers
        for item in block.reshape(-1):
            data = item if isinstance(item, bytes) else np.ascontiguousarray(item).tobytes()
            digest.update(len(data).to_bytes(8, "little") + data)
    else:
        digest.update(np.ascontiguousarray(block).tobytes())


def is_train_only(path: str | Path) -> bool:
    """True for a file of train trials only (nlb_tools' train key names at its root), the kind
    `load_phase_data` holds a share of out as the scored trials."""
    with open_h5(Path(path), "tensor file") as h5:
        return not _is_prepared(h5) and "train_spikes_heldin" in h5


def _is_prepared(h5: h5py.File) -> bool:
    return "train" in h5 and isinstance(h5["train"], h5py.Group)


def load_phase_data(
    path: str | Path,
    phase: str,
    eval_fraction: float = 0.2,
    seed: int = 0,
    eval_index: np.ndarray | None = None,
) -> PhaseData:
    """The fit and eval trials of `phase` ('val' | 'test') from a tensor file (see module doc).

    For a file of train trials only, `eval_index` (trial indices) names the eval trials instead of a
    seeded `eval_fraction` of them (cross-validation folds); it is an error for a prepared file.
    """
    path = Path(path)
    hint = " (run `nlbkit prepare` first, or pass --from-tensors)"
    with open_h5(path, "tensor file", hint=hint) as h5:
        if _is_prepared(h5):
            if eval_index is not None:
                raise NlbkitError(f"{path}: eval trials can be chosen only in a file of train trials")
            return _prepared(h5, path, phase)
        if "train_spikes_heldin" in h5:
            if phase != "val":
                raise NlbkitError(f"{path}: holds train trials only, so only phase 'val' can be run on it")
            return _holdout(h5, path, eval_fraction, seed, eval_index)
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


def _holdout(
    h5: h5py.File, path: Path, eval_fraction: float, seed: int, eval_index: np.ndarray | None
) -> PhaseData:
    every = train_trials(h5, path)
    if eval_index is None:
        kept, held = holdout_split(len(every), eval_fraction, seed)
    else:
        kept, held = explicit_split(len(every), eval_index, path)
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
