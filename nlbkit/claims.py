"""Claims: one writer at a time for a shared output (a run directory, a tensor file, a sweep, a
submission file), also when two commands start at the same moment.

A writer claims its output before it checks whether the output exists, and holds the claim until
it has written the last file. The claim is a small JSON file beside the output,
`.<name>.claim`, naming the host, the process id and its start time, the command and the time it
was taken. It appears by one atomic step (a hard link of a complete file, `O_EXCL` where links are
not supported), so of two writers racing for it exactly one gets it; the other gets one line naming
the output and the process that holds it. The holder removes the file when it ends, also on an
error or Ctrl-C.

A killed holder (SIGKILL, a lost machine, a Ray worker shut down) leaves its claim behind. On the
same host it is stale once that process is gone: its id is no longer running, or now belongs to a
process started at another time (a reused id), or the machine has rebooted since. The next writer
takes a stale claim over; breaking it is serialised per folder (`flock`), so of several writers
that find the same stale claim one takes it. A claim of another host is never judged from here:
it holds until that process removes it, or a user deletes the file (the message names it).

Readers (`RunDir.info`, hence `evaluate`, `report`, `leaderboard`, `predict`, `ensemble`, `submit`) call
`check_not_being_written`: a run claimed by another live process is refused, not read half-written.

Claims are per process and re-entrant: a process holding a claim may claim it again (an ensemble
trained in one command writes its members and then the ensemble into the directory it holds).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from nlbkit.errors import NlbkitError

CLAIM_SUFFIX = ".claim"
_POLL_S = 0.2
_HELD: dict[str, int] = {}  # claim file -> the pid holding it (a forked child holds nothing)


class ClaimHeld(NlbkitError):
    """Another process is writing the output."""


@dataclass(frozen=True)
class Holder:
    """What a claim file says about the process that holds it."""

    host: str
    pid: int
    started: str = ""  # the process's start time (clock ticks since boot, /proc/PID/stat), '' unknown
    boot: str = ""  # the kernel's boot id, '' unknown
    command: str = ""
    since: str = ""  # when the claim was taken (ISO 8601, UTC)

    def describe(self) -> str:
        since = f", since {self.since[:19].replace('T', ' ')} UTC" if self.since else ""
        command = f", `{self.command}`" if self.command else ""
        return f"process {self.pid} on {self.host}{command}{since}"

    def stale(self) -> bool:
        """True when this claim's process is known to be gone (same host only)."""
        if self.host != socket.gethostname():
            return False
        if self.boot and _boot_id() and self.boot != _boot_id():
            return True
        if self.pid == os.getpid():
            return True  # this process, which does not hold it (else it would not be asking)
        if not _running(self.pid):
            return True
        now = _start_time(self.pid)
        return bool(self.started and now and now != self.started)


def claim_path(target: str | os.PathLike) -> Path:
    """The claim file of `target`: `.<name>.claim` beside it (it survives the target's removal)."""
    target = Path(os.path.abspath(target))  # '.', 'runs/x/..' name the folder they stand for
    return target.parent / f".{target.name}{CLAIM_SUFFIX}"


@contextlib.contextmanager
def claim(target: str | os.PathLike, what: str = "run directory", wait_s: float = 0.0,
          take_foreign: bool = False) -> Iterator[Path]:
    """Hold the claim on `target` for the block; ClaimHeld (one line) if another process holds it.

    With `wait_s`, a live holder is waited for that many seconds before giving up (a restarted Ray
    trial whose predecessor is still exiting). With `take_foreign`, a claim of another host still
    there after the wait is taken over: only for a caller that knows nobody else writes `target`
    (a sweep trial, inside the sweep directory its driver holds). Yields the claim file's path.
    """
    path = claim_path(target)
    key = _key(path)
    if _HELD.get(key) == os.getpid():  # this process holds it already: the outer block releases it
        yield path
        return
    mine = _acquire(Path(target), path, what, wait_s, take_foreign)
    _HELD[key] = os.getpid()
    try:
        yield path
    finally:
        _release(path, key, mine)


def holder_of(target: str | os.PathLike) -> Holder | None:
    """The live process (or the process of another host) writing `target`; None when nobody else is."""
    path = claim_path(target)
    if _HELD.get(_key(path)) == os.getpid():
        return None
    found = _read(path)
    holder = found[1] if found is not None else None  # an unreadable claim names nobody: writers stop at it
    return None if holder is None or holder.stale() else holder


def check_not_being_written(target: str | os.PathLike) -> None:
    """Refuse to read `target` while another process writes it (one line naming both)."""
    holder = holder_of(target)
    if holder is not None:
        raise NlbkitError(
            f"{target}: still being written by {holder.describe()}; read it once that has finished"
        )


# --- the claim file ---------------------------------------------------------------------------
def _acquire(target: Path, path: Path, what: str, wait_s: float, take_foreign: bool) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps(asdict(_this_process())) + "\n"
    mine = record.encode()
    deadline = time.monotonic() + wait_s
    while True:
        if _create(path, mine):
            return mine
        found = _read(path)
        if found is None:
            continue  # removed between our attempt and the read: try again
        raw, holder = found
        if holder is not None and holder.stale():
            _break(path, raw)
            continue
        if time.monotonic() < deadline:
            time.sleep(_POLL_S)
            continue
        if take_foreign and holder is not None and holder.host != socket.gethostname():
            _break(path, raw)
            continue
        raise ClaimHeld(_held_message(target, path, what, holder))


def _held_message(target: Path, path: Path, what: str, holder: Holder | None) -> str:
    if holder is None:
        return (f"{target}: {what} claimed by another command (unreadable {path}); delete that file "
                "if no nlbkit command is writing here")
    message = f"{target}: {what} is being written by {holder.describe()}; wait for it to finish"
    if holder.host != socket.gethostname():
        message += f" (if that process is gone, delete {path})"
    return message


def _create(path: Path, data: bytes) -> bool:
    """Make `path` hold `data` in one atomic step; False if it exists already."""
    tmp = path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if `path` exists (also over NFS)
            return True
        except FileExistsError:
            # Over NFS a retransmitted link can report EEXIST although it was made: the temporary
            # file then has two links.
            return os.stat(tmp).st_nlink == 2
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        try:  # no hard links on this file system: an exclusive create instead
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> tuple[bytes, Holder | None] | None:
    """(the file's bytes, its holder, None if unreadable); None when there is no claim file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(raw)
        texts = {k: str(meta.get(k, "")) for k in ("started", "boot", "command", "since")}
        return raw, Holder(host=str(meta["host"]), pid=int(meta["pid"]), **texts)
    except (ValueError, TypeError, KeyError, AttributeError):
        return raw, None


def _break(path: Path, stale: bytes) -> None:
    """Remove the stale claim `path` if it still holds `stale`; one breaker at a time per folder."""
    with _folder_lock(path.parent):
        try:
            if path.read_bytes() == stale:
                path.unlink()
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on `folder` where the file system has one (a no-op elsewhere)."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _release(path: Path, key: str, mine: bytes) -> None:
    _HELD.pop(key, None)
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == mine:  # never another process's claim
            path.unlink()


# --- this process and others ------------------------------------------------------------------
def _this_process() -> Holder:
    return Holder(host=socket.gethostname(), pid=os.getpid(), started=_start_time(os.getpid()),
                  boot=_boot_id(), command=_command_line(), since=datetime.now(UTC).isoformat())


def _command_line() -> str:
    argv = list(sys.argv) or ["python"]
    program = Path(argv[0]).name
    if program in ("__main__.py", "nlbkit") or program.startswith("nlbkit"):
        program = "nlbkit"
    text = " ".join([program, *argv[1:]])
    return text if len(text) <= 100 else text[:97] + "..."


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); '' where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Whether `pid` runs: it exists and is not a zombie (killed, not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _key(path: Path) -> str:
    return os.path.join(os.path.realpath(path.parent), path.name)
