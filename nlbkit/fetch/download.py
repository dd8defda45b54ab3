"""Resumable, verified downloads of single files.

Bytes arrive in `<file>.dandidownload/file` (the layout of the `dandi` client, whose
`DownloadDirectory` manages it: a lock, the expected digest, and resumption only when that digest
is unchanged). The digest is computed while streaming; the file is renamed to its final name only
once its size and digest match what the server announced. A cut connection resumes with an HTTP
`Range` request; a partial download left by a killed process resumes on the next run; a partial
that turns out wrong is discarded and fetched again from the start.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import requests
from dandi.consts import DOWNLOAD_SUFFIX, RETRY_STATUSES
from dandi.download import DownloadDirectory
from dandischema.digests.dandietag import DandiETag
from tqdm import tqdm

from nlbkit.errors import NlbkitError

DANDI_ETAG = "dandi-etag"
SHA256 = "sha256"
HASH_BLOCK = 1 << 20
#: Bytes per read while streaming. A cut connection loses the chunk being read, so smaller than
#: the dandi client's 8 MiB default; also keeps progress bars moving.
CHUNK_BYTES = 1 << 20

#: `open_from(offset)` yields the file's bytes from `offset` on (an HTTP Range request).
Opener = Callable[[int], Iterator[bytes]]


@dataclass(frozen=True)
class Expected:
    """What a complete file must be: its size (bytes) and digest (`dandi-etag` or `sha256`)."""

    size: int
    algorithm: str
    digest: str


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing transfer is retried, and how long to wait in between (seconds)."""

    attempts: int = 5  # consecutive failures without progress before giving up
    backoff_s: float = 2.0
    max_backoff_s: float = 30.0
    timeout_s: float = 60.0  # per HTTP request without an answer

    def delay(self, failures: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))


class LocalState(StrEnum):
    MISSING = "missing"
    VERIFIED = "verified"
    DIFFERS = "differs"


@dataclass(frozen=True)
class LocalCheck:
    state: LocalState
    detail: str = ""  # why a present file differs
    partial_bytes: int = 0  # bytes of an unfinished download waiting to be resumed


@dataclass(frozen=True)
class Transfer:
    """What one download did: bytes received now, bytes already there from an earlier try."""

    received: int
    resumed_from: int
    seconds: float
    restarted: bool  # a stale or wrong partial download was discarded


class Unreachable(NlbkitError):
    """The server cannot be reached at all (no network, DNS failure, refused or silent)."""


class _Mismatch(Exception):
    """The bytes received do not make the expected file."""


def partial_dir(final: Path) -> Path:
    return final.with_name(final.name + DOWNLOAD_SUFFIX)


def partial_bytes(final: Path) -> int:
    part = partial_dir(final) / "file"
    return part.stat().st_size if part.exists() else 0


class StreamingETag:
    """The dandi-etag of a file whose bytes arrive in blocks of any size.

    An MD5 per part (part boundaries from dandischema's `DandiETag`), then the MD5 of the part
    digests and `-<number of parts>`. dandischema's own `ETagHashlike` re-copies its part buffer
    on every block, which caps it near 16 MB/s with 1 MiB blocks; this one hashes at MD5 speed.
    """

    def __init__(self, size: int) -> None:
        self._sizes = [part.size for part in DandiETag(size).get_parts()]
        self._digests: list[bytes] = []
        self._md5 = hashlib.md5()
        self._left = self._sizes[0] if self._sizes else 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            if len(self._digests) == len(self._sizes):
                raise ValueError("more bytes than the file size")
            take = min(self._left, len(view))
            self._md5.update(view[:take])
            view = view[take:]
            self._left -= take
            if self._left == 0:
                self._digests.append(self._md5.digest())
                self._md5 = hashlib.md5()
                if len(self._digests) < len(self._sizes):
                    self._left = self._sizes[len(self._digests)]

    def hexdigest(self) -> str:
        if len(self._digests) != len(self._sizes):
            return f"incomplete-{len(self._digests)}-of-{len(self._sizes)}-parts"
        return f"{hashlib.md5(b''.join(self._digests)).hexdigest()}-{len(self._digests)}"


def new_hasher(expected: Expected):
    if expected.algorithm == DANDI_ETAG:
        return StreamingETag(expected.size)
    if expected.algorithm == SHA256:
        return hashlib.sha256()
    raise NlbkitError(f"unsupported digest '{expected.algorithm}' (use {DANDI_ETAG} or {SHA256})")


def file_digest(path: Path, algorithm: str) -> str:
    """The digest of a local file, cached by the `dandi` client (keyed on size, mtime, ctime, inode)."""
    from dandi.support.digests import get_digest

    return get_digest(path, algorithm)


def check_local(final: Path, expected: Expected) -> LocalCheck:
    """Is `final` there, and does it match `expected` (size first, then the digest)?"""
    waiting = partial_bytes(final)
    if not final.exists():
        return LocalCheck(LocalState.MISSING, partial_bytes=waiting)
    size = final.stat().st_size
    if size != expected.size:
        return LocalCheck(LocalState.DIFFERS, f"size {size} B, the archive says {expected.size} B", waiting)
    digest = file_digest(final, expected.algorithm)
    if digest != expected.digest:
        return LocalCheck(
            LocalState.DIFFERS, f"{expected.algorithm} {digest}, the archive says {expected.digest}", waiting
        )
    return LocalCheck(LocalState.VERIFIED, partial_bytes=waiting)


def describe_request_error(exc: BaseException) -> str:
    """One line for a failed HTTP exchange: the status, or why no answer came."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        resp = exc.response
        return f"HTTP {resp.status_code} {resp.reason or ''} from {resp.url}".replace("  ", " ")
    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return f"no answer in time ({_first_url(exc)})"
    if "NameResolutionError" in text or "Name or service not known" in text or "getaddrinfo" in text:
        return f"cannot resolve the host of {_first_url(exc)} (no network, or DNS failure)"
    if "Connection refused" in text:
        return f"connection refused by {_first_url(exc)}"
    if text.startswith("transfer ended"):
        return f"{text} (the server stopped sending)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
        return "the connection was cut during the transfer"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect to {_first_url(exc)} ({text.splitlines()[0][:160]})"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _first_url(exc: BaseException) -> str:
    request = getattr(exc, "request", None)
    return getattr(request, "url", None) or "the server"


def probe(url: str, what: str, timeout_s: float = 10.0) -> None:
    """Fail fast, in one line, when the host of `url` cannot be resolved or reached.

    Retrying with back-off (as the dandi client does for about a minute) only delays that answer
    when there is no network.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NlbkitError(f"{what} '{url}' is not an http(s) URL")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise Unreachable(
            f"cannot resolve host '{host}' of {what} {url}: no network, or DNS failure"
        ) from exc
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout_s)
            sock.connect(address)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise Unreachable(f"cannot connect to {what} {url} ({reason})") from exc


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code in RETRY_STATUSES
    return isinstance(exc, requests.RequestException)


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Fail before downloading when the file system of `directory` cannot hold `needed` more bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise NlbkitError(
            f"not enough disk space in {directory} for {what}: {human_bytes(needed)} to download, "
            f"{human_bytes(free)} free"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def download_verified(
    final: Path,
    expected: Expected,
    open_from: Opener,
    *,
    policy: RetryPolicy | None = None,
    progress: bool = True,
    label: str | None = None,
) -> Transfer:
    """Download into `final`, resuming a partial download, verifying size and digest on the way.

    Raises NlbkitError (one line) on failure; `final` is then untouched and a resumable partial
    download stays in `<final>.dandidownload/`.
    """
    policy = policy or RetryPolicy()
    label = label or final.name
    check_free_space(final.parent, expected.size - min(partial_bytes(final), expected.size), final.name)
    started = time.monotonic()
    try:
        return _download_once(final, expected, open_from, policy, progress, label, started)
    except NlbkitError:
        if partial_bytes(final) == 0:  # nothing worth resuming
            shutil.rmtree(partial_dir(final), ignore_errors=True)
        raise
    except _Mismatch as first:
        # A partial download from an earlier run (or a server that ignored the Range header)
        # made a wrong file: discard it and start over once before giving up.
        shutil.rmtree(partial_dir(final), ignore_errors=True)
        try:
            result = _download_once(final, expected, open_from, policy, progress, label, started)
        except _Mismatch as second:
            shutil.rmtree(partial_dir(final), ignore_errors=True)
            raise NlbkitError(f"{label}: the downloaded bytes do not match the archive ({second})") from first
        return Transfer(result.received, 0, result.seconds, restarted=True)


def _download_once(
    final: Path, expected: Expected, open_from: Opener, policy: RetryPolicy, progress: bool, label: str,
    started: float,
) -> Transfer:
    try:
        with DownloadDirectory(final, {expected.algorithm: expected.digest}) as dldir:
            offset = dldir.offset or 0
            if offset > expected.size:
                raise _Mismatch(f"partial download longer than {expected.size} B")
            hasher = new_hasher(expected)
            _hash_prefix(dldir.writefile, offset, hasher)
            # disable=None: no bar where stderr is not a terminal (a log would get one huge line)
            with tqdm(
                total=expected.size, initial=offset, desc=label, unit="B", unit_scale=True,
                unit_divisor=1000, disable=None if progress else True, leave=True, miniters=1,
            ) as bar:
                received = _receive(dldir, hasher, offset, expected, open_from, policy, bar, label)
            dldir.fp.flush()
            digest = hasher.hexdigest()
            if digest != expected.digest:
                raise _Mismatch(f"{expected.algorithm} {digest}, expected {expected.digest}")
        # Leaving the block without error renamed the verified file onto `final`.
        return Transfer(received, offset, time.monotonic() - started, restarted=False)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NlbkitError(
                f"no space left on the device while writing {final.name} (partial download kept in "
                f"{partial_dir(final)}; free some space and run again to resume)"
            ) from exc
        raise
    except RuntimeError as exc:
        if "download lock" in str(exc):
            raise NlbkitError(f"{final} is being downloaded by another process right now") from exc
        raise


def _hash_prefix(path: Path, nbytes: int, hasher) -> None:
    """Feed the first `nbytes` of an existing partial download to `hasher`."""
    if nbytes == 0:
        return
    with open(path, "rb") as fh:
        remaining = nbytes
        while remaining:
            block = fh.read(min(HASH_BLOCK, remaining))
            if not block:
                raise _Mismatch("partial download shorter than recorded")
            hasher.update(block)
            remaining -= len(block)


def _receive(dldir, hasher, offset: int, expected: Expected, open_from: Opener, policy: RetryPolicy,
             bar: tqdm, label: str) -> int:
    """Stream the rest of the file into the partial download; retry cut or failed transfers."""
    received, failures = 0, 0
    while offset < expected.size:
        before = offset
        try:
            for block in open_from(offset):
                if offset + len(block) > expected.size:
                    raise _Mismatch(f"the server sent more than the {expected.size} B announced")
                hasher.update(block)
                dldir.append(block)
                offset += len(block)
                received += len(block)
                bar.update(len(block))
            if offset < expected.size:
                raise requests.exceptions.ChunkedEncodingError(
                    f"transfer ended at {offset} of {expected.size} B"
                )
        except requests.RequestException as exc:
            failures = 1 if offset > before else failures + 1
            if not is_retryable(exc) or failures >= policy.attempts:
                raise NlbkitError(
                    f"{label}: download failed ({describe_request_error(exc)}); "
                    + (f"{offset} B kept in {partial_dir(Path(dldir.filepath))}, run again to resume"
                       if offset else "nothing was kept")
                ) from exc
            time.sleep(policy.delay(failures))
    return received
