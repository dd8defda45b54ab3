"""NWB files to the NLB tensors of one dataset and bin size, exactly as nlb_tools makes them.

Groups (nlb_tools call in brackets; `ds` is the train NWB resampled to `bin_ms`, `test_ds` the test NWB):
- `train`: `make_train_input_tensors(ds, name, 'train', include_behavior=True, include_forward_pred=True)`
- `trainval`: the same over `['train', 'val']` (what a test-phase model trains on)
- `val`: `make_eval_input_tensors(ds, name, 'val')`
- `test`: `make_eval_input_tensors(test_ds, name, 'test')`
- `val_target`: `make_eval_target_tensors(ds, name, 'train', 'val', include_psth=True)[group name]`

Arrays are built from the spike times of each trial window, never through a 1 ms frame of the
session; see `nlbkit.prepare.binning` for the binning rules.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from nlbkit.claims import claim
from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import BehaviorSource, DatasetSpec, check_bin, get_spec
from nlbkit.nlb.h5io import Groups
from nlbkit.paths import atomic_path, dataset_dir, tensors_path
from nlbkit.prepare.eval_targets import val_target
from nlbkit.prepare.inputs import Context, eval_input, train_input
from nlbkit.prepare.nwb import read_session

GROUPS: tuple[str, ...] = ("train", "trainval", "val", "test", "val_target")


def _find_asset(folder: Path, exact: str, glob: str, what: str) -> Path:
    if (folder / exact).exists():
        return folder / exact
    matches = sorted(folder.glob(Path(glob).name)) if folder.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = [m.name for m in matches]
        raise NlbkitError(f"{folder}: several {what} NWB files match {Path(glob).name}: {names}")
    raise NlbkitError(f"{folder / exact}: {what} NWB file not found (run `nlbkit fetch` or `nlbkit synth`)")


def nwb_paths(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(train, test) NWB paths of a dataset under the data directory."""
    folder = dataset_dir(spec.name, data_dir)
    return (
        _find_asset(folder, spec.train_asset_name, spec.train_asset_glob, "train"),
        _find_asset(folder, spec.test_asset_name, spec.test_asset_glob, "test"),
    )


_TRAIN_FILE_GROUPS = (
    ("train", lambda c: train_input(c, c.split_mask("train"))),
    ("trainval", lambda c: train_input(c, c.split_mask("train", "val"))),
    ("val", lambda c: eval_input(c, c.split_mask("val"))),
    ("val_target", val_target),
)


def iter_groups(
    dataset: str, bin_ms: int, data_dir: str | os.PathLike | None = None, progress: bool = True
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield `(group, arrays)` in `GROUPS` order, one at a time (for writing with a small footprint)."""
    spec = get_spec(dataset)
    check_bin(bin_ms)
    train_path, test_path = nwb_paths(spec, data_dir)
    bar = _progress_bar(progress, total=len(GROUPS) + 2, desc=f"{dataset} {bin_ms} ms")
    bar.set_postfix_str("reading train NWB")
    ctx = Context(read_session(train_path), spec, bin_ms)
    if spec.behavior_source is BehaviorSource.CONTINUOUS:
        ctx.behavior()  # the session-long behaviour column is filtered before any tensor exists
    bar.update()
    for name, build in _TRAIN_FILE_GROUPS:
        bar.set_postfix_str(name)
        arrays = build(ctx)
        bar.update()
        yield name, arrays
        del arrays
    del ctx
    gc.collect()
    bar.set_postfix_str("test")
    arrays = build_eval_input(test_path, dataset, bin_ms)
    bar.update(2)
    bar.close()
    yield "test", arrays


class _NoBar:
    """Stands in for a tqdm bar when no progress is shown (tqdm is then not even imported)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(progress: bool, total: int, desc: str):
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal, so logs and error output stay clean
    return tqdm(total=total, desc=desc, unit="step", disable=None)


def build_eval_input(test_nwb: str | os.PathLike, dataset: str, bin_ms: int) -> dict[str, np.ndarray]:
    """The `test` group alone: `eval_spikes_heldin` of the test trials of a test NWB file."""
    ctx = Context(read_session(Path(test_nwb)), get_spec(dataset), check_bin(bin_ms))
    mask = ctx.split_mask("test")
    if not mask.any():
        raise NlbkitError(f"{test_nwb}: no trials with split 'test'")
    return eval_input(ctx, mask)


def build_tensors(dataset: str, bin_ms: int, data_dir: str | os.PathLike | None = None) -> Groups:
    """All five groups in memory: `{group: {key: array}}` with nlb_tools' key names."""
    out = dict(iter_groups(dataset, bin_ms, data_dir, progress=False))
    return {name: out[name] for name in GROUPS}


def _write_group(group: h5py.Group, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    for key, value in arrays.items():
        if value.dtype == object:  # per-condition trial indices of unequal lengths
            ds = group.create_dataset(key, (len(value),), dtype=h5py.vlen_dtype(np.int64))
            for i, item in enumerate(value):
                ds[i] = np.asarray(item, dtype=np.int64)
        elif compress and value.ndim >= 2 and value.size > 0:
            group.create_dataset(key, data=value, compression="lzf", shuffle=True)
        else:
            group.create_dataset(key, data=value)


def prepare(
    dataset: str,
    bin_ms: int = 5,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    compress: bool = False,
) -> Path:
    """Write `<data_dir>/<dataset>/tensors_<bin>ms.h5` atomically; returns its path.

    Arrays are stored uncompressed unless `compress` (LZF with shuffle: about 3x smaller files,
    and about as long to write as all the rest of the work). On any error nothing is left behind
    and an existing tensors file stays as it was. The file is claimed while it is written
    (`nlbkit.claims`): a second `prepare` of it at the same time is refused.
    """
    final = tensors_path(dataset, check_bin(bin_ms), data_dir)
    nwb_paths(get_spec(dataset), data_dir)  # fail before anything is created
    # One `prepare` per file: a second one at the same time is refused, not left to redo the work.
    with claim(final, "tensor file"), atomic_path(final) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["dataset"] = dataset
        f.attrs["bin_ms"] = bin_ms
        for name, arrays in iter_groups(dataset, bin_ms, data_dir, progress=progress):
            _write_group(f.create_group(name), arrays, compress)
            del arrays
    return final


def load_tensors(path: str | os.PathLike) -> Groups:
    """Read a tensors file back: `{group: {key: array}}` (index lists as object arrays)."""
    path = Path(path)
    if not path.exists():
        raise NlbkitError(f"{path}: tensors file not found (run `nlbkit prepare`)")
    try:
        with h5py.File(path, "r") as f:
            out: Groups = {}
            for name, group in f.items():
                arrays = {}
                for key, ds in group.items():
                    if h5py.check_vlen_dtype(ds.dtype) is not None:
                        values = np.empty(len(ds), dtype=object)
                        for i in range(len(ds)):
                            values[i] = ds[i]
                        arrays[key] = values
                    else:
                        arrays[key] = ds[()]
                out[name] = arrays
            return out
    except OSError as exc:
        raise NlbkitError(f"{path}: not a readable tensors file: {exc}") from None


def describe_file(path: str | os.PathLike) -> list[str]:
    """One line per array of a tensors file, `group/key: shape dtype`, without reading the data."""
    lines = []
    with h5py.File(path, "r") as f:
        for name, group in f.items():
            for key, ds in group.items():
                if h5py.check_vlen_dtype(ds.dtype) is not None:
                    lines.append(f"{name}/{key}: {len(ds)} index lists")
                else:
                    lines.append(f"{name}/{key}: {' x '.join(map(str, ds.shape))} {ds.dtype}")
    return lines
