"""Which data is generated: the `.nlbkit-generated` file `synth` leaves in a dataset folder.

Torch-free and cheap (one small JSON read; h5py only to check a file's stamp), so every command can ask
whether the dataset it prints came from `nlbkit synth` and say so, and `synth` can refuse to replace a
file it did not write.

A file counts as generated when the marker lists it *and* the file carries the stamp `synth` writes
into it (NWB: `session_description` starting with GENERATED_STAMP; HDF5: a root attribute
`nlbkit_generated`). Real data copied over a generated file thus counts as real again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from nlbkit.errors import NlbkitError

MARKER_NAME = ".nlbkit-generated"
GENERATED_STAMP = "nlbkit generated data"
H5_ATTR = "nlbkit_generated"
GENERATED_LABEL = "generated data"


def marker_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / MARKER_NAME


def generated_files(folder: str | os.PathLike) -> set[str]:
    """Names of the files the folder's marker lists; empty without a (readable) marker."""
    try:
        data = json.loads(marker_path(folder).read_text())
        return {str(name) for name in data.get("files", [])}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()


def is_generated(folder: str | os.PathLike | None) -> bool:
    """True when `folder` holds data written by `nlbkit synth` (its marker file is there)."""
    return folder is not None and marker_path(folder).is_file()


def label(dataset: str, folder: str | os.PathLike | None) -> str:
    """`dataset`, followed by ' (generated data)' when `folder` was written by `nlbkit synth`."""
    return f"{dataset} ({GENERATED_LABEL})" if is_generated(folder) else dataset


def tensors_label(dataset: str, tensors: str | os.PathLike | None) -> str:
    """`label` for a dataset read from a tensors file (its folder decides)."""
    return label(dataset, Path(tensors).parent if tensors is not None else None)


def has_stamp(path: str | os.PathLike) -> bool:
    """Whether an NWB/HDF5 file carries the stamp `synth` writes into its files."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if H5_ATTR in f.attrs:
                return True
            if "session_description" in f:
                value = f["session_description"][()]
                text = value.decode() if isinstance(value, bytes) else str(value)
                return text.startswith(GENERATED_STAMP)
    except (OSError, ValueError):
        return False
    return False


def is_generated_file(path: str | os.PathLike) -> bool:
    """Whether `path` was written by `synth`: its folder's marker lists it and it carries the stamp."""
    path = Path(path)
    return path.exists() and path.name in generated_files(path.parent) and has_stamp(path)


def check_replaceable(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Refuse (one line naming the file) to replace a file of `folder` that `synth` did not write."""
    for name in names:
        path = Path(folder) / name
        if path.exists() and not is_generated_file(path):
            raise NlbkitError(
                f"{path}: not written by nlbkit synth (real data?); not replacing it "
                "(use --force to replace it, or another --data-dir)"
            )


def write_marker(folder: str | os.PathLike, names: Iterable[str], **details: object) -> Path:
    """Record (atomically) that `synth` wrote `names` into `folder`, keeping names listed before."""
    from nlbkit.paths import atomic_path

    files = sorted(generated_files(folder) | set(names))
    path = marker_path(folder)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"generator": "nlbkit synth", "files": files, **details}, indent=2) + "\n")
    return path


def forget_generated(folder: str | os.PathLike, name: str) -> None:
    """Real data now sits under `name` (a fetch): drop it from the marker, and the marker itself once
    no generated NWB file is left (a folder of real NWB files is not generated data)."""
    listed = generated_files(folder)
    if name not in listed:
        return
    rest = sorted(listed - {name})
    if not any(n.endswith(".nwb") for n in rest):
        marker_path(folder).unlink(missing_ok=True)
        return
    from nlbkit.paths import atomic_path

    data = json.loads(marker_path(folder).read_text())
    with atomic_path(marker_path(folder)) as tmp:
        tmp.write_text(json.dumps({**data, "files": rest}, indent=2) + "\n")
