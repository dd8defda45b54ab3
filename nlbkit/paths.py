"""Where things live on disk, and writing files so that no half-written file is ever visible."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

DATA_ENV = "NLBKIT_DATA"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """`--data-dir` if given, else `$NLBKIT_DATA`, else `data/`."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(DATA_ENV, "data"))


def dataset_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    return data_dir(root) / dataset


def tensors_path(dataset: str, bin_ms: int, root: str | os.PathLike | None = None) -> Path:
    return dataset_dir(dataset, root) / f"tensors_{bin_ms}ms.h5"


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    On any error the temporary file is removed and whatever was at `final` stays untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: object) -> Path:
    """`data` as indented JSON, written atomically."""
    import json

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)
