"""Writing files so that a crash, a kill or a full disk leaves the old file or none, never half.

Every file ssd3d replaces as a whole (exports, the report, the shortened log, checkpoint
files) goes through here: written next to its final name, flushed to disk (``fsync``),
renamed over it (atomic on one filesystem), and the rename itself synced (the folder's
``fsync``), so that after a power cut the name points at complete data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ssd3d.errors import SSD3DError

# errno values that mean "the disk (or the user's quota) is full".
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_no_space(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _NO_SPACE


def disk_error(e: OSError, what: str) -> SSD3DError:
    """The one-line error for an ``OSError`` while writing ``what``."""
    if is_no_space(e):
        return SSD3DError(f"no space left on device while writing {what}")
    return SSD3DError(f"cannot write {what}: {e.strerror or e}")


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (replacing it) and flush it to the disk before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file that another writer (ffmpeg, imageio) wrote to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the renames and creations in folder ``path`` durable."""
    if os.name == "nt":  # Windows cannot open a folder as a file; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> Path:
    """A new empty file next to ``path``, keeping its suffix, with the mode any other new
    file gets (0666 less the umask). ``tempfile.mkstemp`` would make it 0600, and the
    rename would carry that onto the final file."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the body succeeds.

    The temporary name keeps the final suffix (``.mp4``, ``.png``) because writers such as
    imageio and ffmpeg choose the container from it. It lives in the same directory so that
    ``os.replace`` is a rename on one filesystem, which is atomic. A full disk (or any other
    ``OSError`` of the filesystem) is an ``SSD3DError`` naming ``path``; the old file stays.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(path)
    except OSError as e:
        raise disk_error(e, str(path)) from None
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        if is_no_space(e):
            raise disk_error(e, str(path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        write_synced(tmp, data)
    return Path(path)


__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "disk_error",
    "fsync_dir",
    "is_no_space",
    "write_synced",
]
