"""NLB NWB files from the DANDI archive, through the `dandi` client's Python API.

The dandiset id, the pinned version and the asset globs come from the dataset registry
(`nlbkit.nlb.datasets`). Assets are found by listing the dandiset version by glob; their size and
dandi-etag come from the archive's metadata. Files land in `<data_dir>/<dataset>/<asset basename>`
through `nlbkit.fetch.download.download_verified` (resumable, verified, atomic).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from nlbkit.errors import NlbkitError
from nlbkit.fetch import download
from nlbkit.fetch.download import (
    DANDI_ETAG,
    Expected,
    LocalCheck,
    LocalState,
    Opener,
    RetryPolicy,
    Transfer,
    Unreachable,
    check_free_space,
    check_local,
    describe_request_error,
    download_verified,
    partial_bytes,
    probe,
)
from nlbkit.fetch.record import FetchRecord, RecordedFile, read_record, write_record
from nlbkit.nlb.datasets import DATASET_NAMES, DatasetSpec, get_spec
from nlbkit.nlb.marker import forget_generated, is_generated_file
from nlbkit.paths import data_dir as resolve_data_dir
from nlbkit.paths import dataset_dir

DEFAULT_INSTANCE = "https://api.dandiarchive.org/api"
INSTANCE_ENV = "NLBKIT_DANDI_INSTANCE"
ROLES = ("train", "test")


@dataclass(frozen=True)
class RemoteFile:
    """One NLB asset as the archive describes it."""

    dataset: str
    role: str  # 'train' or 'test'
    asset_path: str  # path inside the dandiset
    size: int  # bytes
    etag: str  # dandi-etag digest
    version: str  # dandiset version it was listed in
    opener: Opener = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.asset_path.rsplit("/", 1)[-1]

    @property
    def expected(self) -> Expected:
        return Expected(self.size, DANDI_ETAG, self.etag)

    def local_path(self, data_dir: str | os.PathLike | None) -> Path:
        return dataset_dir(self.dataset, data_dir) / self.name


@dataclass(frozen=True)
class FileOutcome:
    """What `fetch` did with one file: 'skipped' (already verified), 'downloaded', 'replaced'."""

    remote: RemoteFile
    path: Path
    action: str
    transfer: Transfer | None = None
    detail: str = ""


@dataclass(frozen=True)
class FileStatus:
    """A row of `fetch --list`: the archive's file and the state of the local copy."""

    remote: RemoteFile
    path: Path
    local: LocalCheck


def dataset_names(names: Iterable[str]) -> list[str]:
    """Expand 'all', check every name against the registry, keep order, drop repeats."""
    out: list[str] = []
    for name in names:
        for expanded in DATASET_NAMES if name == "all" else (get_spec(name).name,):
            if expanded not in out:
                out.append(expanded)
    return out


def instance_url(explicit: str | None = None) -> str:
    """`--dandi-instance` if given, else `$NLBKIT_DANDI_INSTANCE`, else the public DANDI archive."""
    return (explicit or os.environ.get(INSTANCE_ENV) or DEFAULT_INSTANCE).rstrip("/")


@contextlib.contextmanager
def quiet_dandi(enabled: bool = True) -> Iterator[None]:
    """Keep the dandi client's own log lines (retries, tracebacks) off the terminal."""
    logger = logging.getLogger("dandi")
    before = logger.level
    if enabled:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextlib.contextmanager
def archive_errors(instance: str, doing: str) -> Iterator[None]:
    """Turn what the dandi client raises into one NlbkitError line naming the server and the step."""
    from dandi.exceptions import CliVersionError, NotFoundError

    try:
        yield
    except NlbkitError:
        raise
    except NotFoundError as exc:
        raise NlbkitError(f"{doing}: {str(exc).split('. ')[0]} on {instance}") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise Unreachable(f"{doing}: {describe_request_error(exc)}") from exc
    except requests.RequestException as exc:
        raise NlbkitError(f"{doing}: {describe_request_error(exc)}") from exc
    except CliVersionError as exc:
        raise NlbkitError(f"{doing}: {exc}") from exc
    except RuntimeError as exc:
        if "server info" in str(exc):
            raise NlbkitError(f"{instance} does not answer as a DANDI API server (no /server-info)") from exc
        raise


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """Give every request of the client's session a timeout (its API calls have none)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().send(request, **kwargs)


def connect(instance: str, policy: RetryPolicy | None = None):
    """A `dandi.dandiapi.DandiAPIClient` for `instance` (an API URL, the web URL, or a known name)."""
    policy = policy or RetryPolicy()
    # The client's online version check contacts another service and warns when offline.
    os.environ.setdefault("DANDI_NO_ET", "1")
    from dandi.dandiapi import DandiAPIClient
    from dandi.utils import get_instance

    if instance.lower().startswith(("http://", "https://")):
        probe(instance, "the DANDI instance", policy.timeout_s)
    with archive_errors(instance, "looking up the DANDI instance"):
        try:
            dandi_instance = get_instance(instance)
        except KeyError:
            raise NlbkitError(f"unknown DANDI instance '{instance}': give its API URL") from None
        client = DandiAPIClient(dandi_instance=dandi_instance)
    adapter = _TimeoutAdapter(policy.timeout_s)
    client.session.mount("http://", adapter)
    client.session.mount("https://", adapter)
    return client


def remote_files(client, spec: DatasetSpec, version: str | None = None) -> list[RemoteFile]:
    """The train and test assets of `spec` in `version` (default: the registry's pinned version)."""
    version = version or spec.dandiset_version
    instance = client.api_url
    shown = version or "latest published"
    with archive_errors(instance, f"{spec.name}: dandiset {spec.dandiset_id} version {shown}"):
        dandiset = client.get_dandiset(spec.dandiset_id, version, lazy=False)
        files = [
            _one_asset(dandiset, spec, role, getattr(spec, f"{role}_asset_glob"),
                       getattr(spec, f"{role}_asset_name"))
            for role in ROLES
        ]
    return files


def _one_asset(dandiset, spec: DatasetSpec, role: str, glob: str, usual_name: str) -> RemoteFile:
    matches = list(dandiset.get_assets_by_glob(glob))
    where = f"dandiset {spec.dandiset_id} version {dandiset.version_id}"
    if not matches:
        raise NlbkitError(f"{spec.name}: no {role} asset matches '{glob}' in {where}")
    if len(matches) > 1:
        exact = [a for a in matches if a.path.endswith("/" + usual_name)]
        if len(exact) != 1:
            paths = ", ".join(a.path for a in matches)
            raise NlbkitError(f"{spec.name}: several {role} assets match '{glob}' in {where}: {paths}")
        matches = exact
    asset = matches[0]
    return RemoteFile(
        dataset=spec.name,
        role=role,
        asset_path=asset.path,
        size=asset.size,
        etag=asset.get_raw_digest("dandi:dandi-etag"),
        version=dandiset.version_id,
        opener=asset.get_download_file_iter(chunk_size=download.CHUNK_BYTES),
    )


def fetch(
    datasets: Iterable[str],
    data_dir: str | os.PathLike | None = None,
    *,
    instance: str | None = None,
    version: str | None = None,
    progress: bool = True,
    policy: RetryPolicy | None = None,
    echo: Callable[[str], None] = lambda line: None,
    verbose: bool = False,
) -> list[FileOutcome]:
    """Put the train and test NWB files of each dataset into `<data_dir>/<dataset>/`.

    Verified files are skipped; a local file that differs from the archive is reported (via
    `echo`) and fetched again. Raises NlbkitError with one line on the first failure.
    """
    names = dataset_names(datasets)
    instance = instance_url(instance)
    with quiet_dandi(not verbose):
        try:
            client = connect(instance, policy)
            remotes = [remote for name in names for remote in remote_files(client, get_spec(name), version)]
        except Unreachable as exc:
            return verify_offline(names, data_dir, version, exc, echo)
        _check_total_space(remotes, data_dir)
        outcomes = []
        for name in names:
            mine = [remote for remote in remotes if remote.dataset == name]
            outcomes += [fetch_file(remote, data_dir, instance, progress, policy, echo) for remote in mine]
            write_record(_record_of(name, instance, mine), data_dir)
        return outcomes


def _record_of(name: str, instance: str, remotes: list[RemoteFile]) -> FetchRecord:
    files = tuple(RecordedFile(r.role, r.asset_path, r.size, r.etag) for r in remotes)
    return FetchRecord(name, instance, get_spec(name).dandiset_id, remotes[0].version, files)


def verify_offline(names: list[str], data_dir: str | os.PathLike | None, version: str | None,
                   unreachable: Unreachable, echo: Callable[[str], None]) -> list[FileOutcome]:
    """Without the archive: accept local files that match what it said at their last fetch.

    Anything missing, damaged, never fetched, or fetched at another version raises `unreachable`
    (with the reason), since only the archive could fix it.
    """
    outcomes = []
    for name in names:
        record = read_record(name, data_dir)
        wanted = version or get_spec(name).dandiset_version
        if record is None or (wanted is not None and record.version != wanted):
            raise Unreachable(f"{unreachable} (and {name} has no earlier fetch of that version to check)")
        for f in record.files:
            remote = RemoteFile(name, f.role, f.asset_path, f.size, f.etag, record.version, _no_opener)
            path = remote.local_path(data_dir)
            local = check_local(path, remote.expected)
            if local.state is not LocalState.VERIFIED:
                why = "is missing" if local.state is LocalState.MISSING else f"differs ({local.detail})"
                raise Unreachable(f"{unreachable} (and {path} {why})")
            outcomes.append(FileOutcome(remote, path, "skipped", detail="checked offline"))
    echo(f"archive unreachable; {len(outcomes)} local file(s) match the sizes and checksums the archive "
         "gave at their last fetch")
    return outcomes


def _no_opener(offset: int):
    raise NlbkitError("no archive to download from")


def _check_total_space(remotes: list[RemoteFile], data_dir: str | os.PathLike | None) -> None:
    """Before the first byte: is there room for every file not yet complete? (One file system.)"""
    needed = 0
    for remote in remotes:
        path = remote.local_path(data_dir)
        if not (path.exists() and path.stat().st_size == remote.size):
            needed += remote.size - min(partial_bytes(path), remote.size)
    if needed:
        check_free_space(resolve_data_dir(data_dir), needed, f"{len(remotes)} file(s)")


def fetch_file(
    remote: RemoteFile,
    data_dir: str | os.PathLike | None,
    instance: str,
    progress: bool = True,
    policy: RetryPolicy | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> FileOutcome:
    path = remote.local_path(data_dir)
    local = check_local(path, remote.expected)
    label = f"{remote.dataset}/{remote.name}"
    if local.state is LocalState.VERIFIED:
        echo(f"{label}: present and verified, skipped")
        return FileOutcome(remote, path, "skipped")
    action = "downloaded"
    if local.state is LocalState.DIFFERS:
        echo(f"{label}: local file does not match the archive ({local.detail}); fetching it again")
        # A known-bad file must not stay under the name other commands read.
        path.unlink()
        action = "replaced"
    with archive_errors(instance, f"downloading {label}"):
        transfer = download_verified(path, remote.expected, remote.opener, policy=policy,
                                     progress=progress, label=label)
    forget_generated(path.parent, path.name)  # real data now, whatever synth wrote there before
    return FileOutcome(remote, path, action, transfer, local.detail)


def list_status(
    datasets: Iterable[str],
    data_dir: str | os.PathLike | None = None,
    *,
    instance: str | None = None,
    version: str | None = None,
    policy: RetryPolicy | None = None,
    verbose: bool = False,
) -> list[FileStatus]:
    """Each dataset's files with their size in the archive and the state of the local copy."""
    names = dataset_names(datasets)
    instance = instance_url(instance)
    rows: list[FileStatus] = []
    with quiet_dandi(not verbose):
        client = connect(instance, policy)
        for name in names:
            for remote in remote_files(client, get_spec(name), version):
                path = remote.local_path(data_dir)
                rows.append(FileStatus(remote, path, check_local(path, remote.expected)))
    return rows


@dataclass(frozen=True)
class LocalRow:
    """A row of `fetch --list` without the archive: a local file and what can be said of it."""

    dataset: str
    version: str  # of the last fetch; '?' without a record
    name: str
    size: int | None  # bytes the last fetch recorded, else the local file's, else None
    state: str


def list_local(datasets: Iterable[str], data_dir: str | os.PathLike | None = None) -> list[LocalRow]:
    """Each dataset's files as far as the disk knows them: checked against the record of their last
    fetch (size and dandi-etag) where there is one, else only present or missing."""
    rows: list[LocalRow] = []
    for name in dataset_names(datasets):
        record = read_record(name, data_dir)
        if record is not None:
            for f in record.files:
                remote = RemoteFile(name, f.role, f.asset_path, f.size, f.etag, record.version, _no_opener)
                local = check_local(remote.local_path(data_dir), remote.expected)
                state = local.state.value + (f" ({local.detail})" if local.detail else "")
                rows.append(LocalRow(name, record.version, remote.name, f.size, f"{state} (last fetch)"))
            continue
        spec = get_spec(name)
        for asset in (spec.train_asset_name, spec.test_asset_name):
            path = dataset_dir(name, data_dir) / asset
            present = path.exists()
            if is_generated_file(path):
                state = "generated (nlbkit synth), not the archive's file"
            else:
                state = "present, unverified (no record of a fetch)" if present else "missing"
            rows.append(LocalRow(name, "?", asset, path.stat().st_size if present else None, state))
    return rows
