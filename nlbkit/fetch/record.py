"""What the archive said at the last successful fetch, kept beside the files.

`data/<dataset>/.fetch.json` holds the instance, dandiset version, asset paths, sizes and
dandi-etags. When the archive cannot be reached, a re-run checks the local files against it, so
that a pipeline whose data is already here does not fail for want of a network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nlbkit.paths import atomic_path, dataset_dir

RECORD_NAME = ".fetch.json"


@dataclass(frozen=True)
class RecordedFile:
    role: str
    asset_path: str
    size: int  # bytes
    etag: str  # dandi-etag


@dataclass(frozen=True)
class FetchRecord:
    dataset: str
    instance: str
    dandiset: str
    version: str
    files: tuple[RecordedFile, ...]


def record_path(dataset: str, data_dir: str | os.PathLike | None) -> Path:
    return dataset_dir(dataset, data_dir) / RECORD_NAME


def write_record(record: FetchRecord, data_dir: str | os.PathLike | None) -> Path:
    path = record_path(record.dataset, data_dir)
    payload = {
        "dataset": record.dataset,
        "instance": record.instance,
        "dandiset": record.dandiset,
        "version": record.version,
        "files": [
            {"role": f.role, "asset_path": f.asset_path, "size": f.size, "dandi-etag": f.etag}
            for f in record.files
        ],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))
    return path


def read_record(dataset: str, data_dir: str | os.PathLike | None) -> FetchRecord | None:
    """The record of the last fetch of `dataset`, or None if there is none or it is unreadable."""
    path = record_path(dataset, data_dir)
    try:
        raw = json.loads(path.read_text())
        files = tuple(
            RecordedFile(f["role"], f["asset_path"], int(f["size"]), f["dandi-etag"]) for f in raw["files"]
        )
        return FetchRecord(raw["dataset"], raw["instance"], raw["dandiset"], raw["version"], files)
    except (OSError, ValueError, KeyError, TypeError):
        return None
