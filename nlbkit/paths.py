"""Where things live on disk, and writing files so that no half-written file is ever visible."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nlbkit.errors import NlbkitError

DATA_ENV = "NLBKIT_DATA"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """`--data-dir` if given, else `$NLBKIT_DATA`, else `data/`."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(DATA_ENV, "data"))


def dataset_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    return data_dir(root) / dataset


def tensors_path(dataset: str, bin_ms: int, root: str | os.PathLike | None = None) -> Path:
    return dataset_dir(dataset, root) / f"tensors_{bin_ms}ms.h5"


def check_plain_name(value: str, option: str) -> str:
    """A name that becomes one path component (a run tag, a sweep name): letters, digits, '._+-',
    not starting with a dot; so it cannot climb out of its root ('../x') or leave it ('/abs')."""
    if not _PLAIN_NAME.fullmatch(value):
        raise NlbkitError(
            f"{option} '{value}': not a plain name (letters, digits and . _ + - only, not starting "
            "with a dot); it would put the directory outside its root"
        )
    return value


def check_inside_workdir(value: str | os.PathLike, option: str) -> Path:
    """A relative output path must stay inside the working directory ('../x' is refused); an
    absolute one is taken as the explicit choice it is."""
    path = Path(value)
    if not path.is_absolute() and os.path.normpath(path).split(os.sep)[0] == "..":
        raise NlbkitError(
            f"{option} {value}: leaves the working directory; give an absolute path to write outside it"
        )
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and put back at once
    os.umask(mask)
    return mask


def plain_file_mode() -> int:
    """The mode a plain `open(path, "w")` gives a new file: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def plain_dir_mode() -> int:
    """The mode `mkdir` gives a new directory: 0o777 less the umask."""
    return 0o777 & ~current_umask()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename into it) to disk; a no-op where directories can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    On any error the temporary file is removed and whatever was at `final` stays untouched; a full
    disk becomes one NlbkitError naming `final`. The file gets the mode a plain `open()` would give it
    (0o666 less the umask, not mkstemp's 0o600); it is flushed to disk before the rename and the
    directory after it, so a crash leaves the old file or the new one, never an empty one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(final)
    prefix = f"{_part_prefix(final)}{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, plain_file_mode())
        _fsync_file(tmp_path)
        os.replace(tmp_path, final)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if disk_full(exc):
            kept = "the previous file is unchanged" if final.exists() else "nothing was written"
            raise NlbkitError(f"{final}: no space left on the device; {kept}") from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def _part_prefix(final: Path) -> str:
    """Temporary files of `final` are `.<name>.<host>-<pid>-<random>.part`: a later writer on the same
    host can tell those of a killed process (SIGKILL, power loss) from those of a running one."""
    return f".{final.name}.{socket.gethostname()}-"


def remove_stale_parts(final: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that processes of this host, no longer running, left beside
    `final`; returns them."""
    final = Path(final)
    prefix = _part_prefix(final)
    removed = []
    for part in final.parent.glob(f"{glob.escape(prefix)}*.part"):
        pid_text = part.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _running(int(pid_text)):
            continue
        part.unlink(missing_ok=True)
        removed.append(part)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def disk_full(exc: OSError) -> bool:
    """ENOSPC, also as HDF5 reports it (an OSError whose text holds the errno)."""
    text = str(exc)
    return exc.errno == errno.ENOSPC or "No space left on device" in text or "errno = 28" in text


def write_json(path: str | os.PathLike, data: object) -> Path:
    """`data` as indented JSON, written atomically."""
    import json

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)
