"""The public test-phase targets of NLB'21: `eval_data_test.h5` of the nlb_tools repository.

The file is stored there with Git LFS. Its pointer at the pinned commit gives its SHA-256 and size
(`oid sha256:f2f434d3...`, `size 105927616`); the download is checked against them, resumes with
HTTP Range requests and only appears under its final name once verified.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from nlbkit.errors import NlbkitError
from nlbkit.fetch import download
from nlbkit.fetch.download import (
    SHA256,
    Expected,
    LocalState,
    Opener,
    RetryPolicy,
    Transfer,
    check_local,
    describe_request_error,
    download_verified,
    probe,
)
from nlbkit.paths import data_dir as resolve_data_dir

TARGETS_FILE = "eval_data_test.h5"
TARGETS_URL_ENV = "NLBKIT_TARGETS_URL"
TARGETS_SHA256_ENV = "NLBKIT_TARGETS_SHA256"
NLB_TOOLS_COMMIT = "42f8410b88e12db136910fa2f888b025ea0aa2ae"
DEFAULT_TARGETS_URL = (
    f"https://media.githubusercontent.com/media/neurallatents/nlb_tools/{NLB_TOOLS_COMMIT}/data/{TARGETS_FILE}"
)
# From the Git LFS pointer of data/eval_data_test.h5 at NLB_TOOLS_COMMIT.
DEFAULT_TARGETS_SHA256 = "f2f434d30193251b58e6a693381fdd185c8fbc0e47d38f8810e65295bc42c865"
DEFAULT_TARGETS_SIZE = 105_927_616


@dataclass(frozen=True)
class TargetsSource:
    """Where the targets file comes from and what it must be (size in bytes, SHA-256 hex)."""

    url: str = DEFAULT_TARGETS_URL
    sha256: str = DEFAULT_TARGETS_SHA256
    size: int | None = DEFAULT_TARGETS_SIZE  # None: take the server's Content-Length


def targets_path(root: str | os.PathLike | None = None) -> Path:
    """`<data_dir>/eval_data_test.h5`."""
    return resolve_data_dir(root) / TARGETS_FILE


def source_from_env(url: str | None = None, sha256: str | None = None) -> TargetsSource:
    """The options, else `$NLBKIT_TARGETS_URL` / `$NLBKIT_TARGETS_SHA256`, else the pinned file.

    A digest other than the pinned one makes the size come from the server.
    """
    url = url or os.environ.get(TARGETS_URL_ENV) or DEFAULT_TARGETS_URL
    sha256 = (sha256 or os.environ.get(TARGETS_SHA256_ENV) or DEFAULT_TARGETS_SHA256).lower()
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NlbkitError(f"'{sha256}' is not a SHA-256 digest (64 hex digits)")
    size = DEFAULT_TARGETS_SIZE if sha256 == DEFAULT_TARGETS_SHA256 else None
    return TargetsSource(url, sha256, size)


def http_opener(session: requests.Session, url: str, size: int, timeout_s: float) -> Opener:
    """Stream `url` from an offset with a Range request (skipping bytes if the server ignores it)."""

    def open_from(offset: int) -> Iterator[bytes]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with session.get(url, headers=headers, stream=True, timeout=timeout_s) as resp:
            resp.raise_for_status()
            skip = offset if resp.status_code == 200 else 0
            announced = resp.headers.get("Content-Length")
            if announced is not None and int(announced) != size - offset + skip:
                raise NlbkitError(
                    f"{url} announces {int(announced) + offset - skip} B, expected {size} B: "
                    "not the targets file (wrong URL?)"
                )
            for chunk in resp.iter_content(download.CHUNK_BYTES):
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                yield chunk

    return open_from


def _remote_size(session: requests.Session, url: str, timeout_s: float) -> int:
    try:
        resp = session.head(url, allow_redirects=True, timeout=timeout_s)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise NlbkitError(f"targets file: {describe_request_error(exc)}") from exc
    if "Content-Length" not in resp.headers:
        raise NlbkitError(f"targets file: {url} does not say its size (no Content-Length)")
    return int(resp.headers["Content-Length"])


@dataclass(frozen=True)
class TargetsOutcome:
    path: Path
    action: str  # 'skipped' (already verified), 'downloaded' or 'replaced'
    transfer: Transfer | None = None
    detail: str = ""  # why a local copy was replaced


def fetch_targets(
    root: str | os.PathLike | None = None,
    source: TargetsSource | None = None,
    *,
    progress: bool = True,
    policy: RetryPolicy | None = None,
) -> TargetsOutcome:
    """Download the targets file into `<data_dir>/eval_data_test.h5` unless already verified."""
    source = source or source_from_env()
    policy = policy or RetryPolicy()
    path = targets_path(root)
    with requests.Session() as session:
        size = source.size
        if size is None:
            probe(source.url, "the targets file's server", policy.timeout_s)
            size = _remote_size(session, source.url, policy.timeout_s)
        expected = Expected(size, SHA256, source.sha256)
        local = check_local(path, expected)
        if local.state is LocalState.VERIFIED:  # needs no network with the pinned digest
            return TargetsOutcome(path, "skipped")
        if source.size is not None:
            probe(source.url, "the targets file's server", policy.timeout_s)
        action = "downloaded"
        if local.state is LocalState.DIFFERS:
            path.unlink()
            action = "replaced"
        opener = http_opener(session, source.url, size, policy.timeout_s)
        transfer = download_verified(path, expected, opener, policy=policy, progress=progress,
                                     label=TARGETS_FILE)
    return TargetsOutcome(path, action, transfer, local.detail)
