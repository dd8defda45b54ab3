"""HDF5 in and out for NLB files: {group: {key: array}}, read with one-line errors naming the file.

Val-phase targets are the `val_target` group of `data/<dataset>/tensors_<bin>ms.h5`; test-phase
targets a file in the layout of nlb_tools' `eval_data_test.h5` (one group per dataset and bin).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.paths import atomic_path

Groups = dict[str, dict[str, np.ndarray]]


def open_h5(path: str | os.PathLike, what: str = "file", kind: str = "HDF5", hint: str = "") -> h5py.File:
    """Open for reading. A missing file, a folder, or one that is not HDF5 (truncated, another
    format) is an error of one line naming it: '<path>: <what> not found<hint>'."""
    path = Path(path)
    if not path.exists():
        raise NlbkitError(f"{path}: {what} not found{hint}")
    if path.is_dir():
        raise NlbkitError(f"{path}: is a directory, not an {kind} file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = "truncated or another format"
        raise NlbkitError(f"{path}: not a readable {kind} file ({reason}: {exc})") from None


def _read_member(obj: h5py.Dataset | h5py.Group) -> np.ndarray | None:
    """An array; index lists (eval_cond_idx) may be stored as a variable-length dataset or as a
    sub-group of datasets named '0', '1', ...: both come back as an object array of arrays."""
    if isinstance(obj, h5py.Dataset):
        value = obj[()]
        return value if isinstance(value, np.ndarray) else np.asarray(value)
    names = list(obj.keys())
    if not names or not all(n.isdigit() for n in names):
        return None
    out = np.empty(len(names), dtype=object)
    for i, name in enumerate(sorted(names, key=int)):
        out[i] = obj[name][()]
    return out


def read_h5_groups(path: str | os.PathLike, groups: Iterable[str] | None = None) -> Groups:
    """The top-level groups of an HDF5 file as {group: {key: array}}; all groups if None."""
    with open_h5(path) as h5:
        names = list(h5.keys()) if groups is None else list(groups)
        out: Groups = {}
        for name in names:
            if name not in h5:
                raise NlbkitError(f"{path}: group '{name}' not found (has: {', '.join(h5.keys())})")
            obj = h5[name]
            if isinstance(obj, h5py.Group):
                members = {k: _read_member(v) for k, v in obj.items()}
                out[name] = {k: v for k, v in members.items() if v is not None}
        return out


def write_h5_groups(
    path: str | os.PathLike,
    groups: Mapping[str, Mapping[str, np.ndarray]],
    attrs: Mapping[str, Mapping[str, object]] | None = None,
    root_attrs: Mapping[str, object] | None = None,
) -> Path:
    """Write {group: {key: array}} atomically; object arrays of 1-D arrays become variable-length."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for key, value in (root_attrs or {}).items():
            h5.attrs[key] = value
        for name, arrays in groups.items():
            grp = h5.create_group(name)
            for key, value in (attrs or {}).get(name, {}).items():
                grp.attrs[key] = value
            for key, array in arrays.items():
                array = np.asarray(array)
                if array.dtype == object:
                    sub = np.asarray(array[0]).dtype if len(array) else np.dtype("int64")
                    dset = grp.create_dataset(key, (len(array),), dtype=h5py.vlen_dtype(sub))
                    for i, item in enumerate(array):
                        dset[i] = np.asarray(item, dtype=sub)
                else:
                    grp.create_dataset(key, data=array)
    return path


def load_val_target(tensors_file: str | os.PathLike) -> dict[str, np.ndarray]:
    """The `val_target` group of a tensor file from `nlbkit prepare`."""
    with open_h5(tensors_file) as h5:
        if "val_target" not in h5:
            raise NlbkitError(f"{tensors_file}: no 'val_target' group (run `nlbkit prepare` again)")
    return read_h5_groups(tensors_file, ["val_target"])["val_target"]


def load_test_target(targets_file: str | os.PathLike, group: str) -> dict[str, np.ndarray]:
    """One group of a test-phase target file (the layout of nlb_tools' `eval_data_test.h5`)."""
    with open_h5(targets_file) as h5:
        if group not in h5 or "eval_spikes_heldout" not in h5[group]:
            raise NlbkitError(f"{targets_file}: no eval targets for '{group}'")
    return read_h5_groups(targets_file, [group])[group]
