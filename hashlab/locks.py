"""Exclusive locks between processes, which may run on several nodes of a cluster sharing one file system.

The lock is flock on a file: the kernel drops it when its holder exits or is killed, so a dead process's lock
never needs clearing. Some shared file systems have no flock (NFS mounted without lockd, some FUSE file systems:
ENOLCK, ENOSYS, EOPNOTSUPP). There the lock is a marker file created with O_EXCL (atomic on NFSv3 and later)
that names its holder; a marker whose holder is a dead process of this host is cleared, one of another host
cannot be checked from here and is left to the user, whom the error names it to.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from hashlab.errors import HashlabError

NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}
WAIT_POLL_S = 2.0
STALE_EMPTY_S = 60.0  # a marker or guard this old with no holder line: its writer was killed


class LockHeld(HashlabError):
    """Another live process holds the lock. ``holder``: what it wrote (pid, host, since when); ``remedy``: what to
    do if that process is gone (nothing for a flock, which dies with its holder)."""

    def __init__(self, message: str, holder: str, remedy: str = ""):
        super().__init__(message + (f"; {remedy}" if remedy else ""))
        self.holder, self.remedy = holder, remedy


def holder_line() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}"


@contextmanager
def exclusive(path: str | Path, wait: bool):
    """Hold an exclusive lock on ``path`` (created if missing) for the block, writing this process's holder line
    into it. ``wait``: block until it is free; else raise LockHeld at once when another process holds it."""
    import fcntl
    path = Path(path)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise LockHeld(f"{path} is held by another process ({holder})", holder) from None
    except OSError as error:
        handle.close()
        if error.errno not in NO_FLOCK:
            raise
        handle = None
    if handle is None:
        with _marker(path, wait):
            yield
        return
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(holder_line() + "\n")
        handle.flush()
        yield
    finally:
        handle.close()


@contextmanager
def _marker(path: Path, wait: bool):
    """The lock where the file system has no flock: ``<path>.held``, created with O_EXCL, removed on release."""
    marker = path.with_name(path.name + ".held")
    remedy = (f"this file system has no flock, so the lock is the file {marker}: if that process is gone (killed "
              "on another node), delete the file")
    since, said = time.monotonic(), False
    while True:
        try:
            descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            holder = _read(marker)
            if _dead_here(holder) or (not holder and file_age(marker) > STALE_EMPTY_S):  # killed, or while writing it
                _clear(marker, holder)
                continue
            if not wait:
                raise LockHeld(f"{path} is held by another process ({holder or 'unknown'})", holder or "unknown",
                               remedy) from None
            if not said and time.monotonic() - since > STALE_EMPTY_S:
                print(f"waiting for {path}, held by {holder or 'unknown'}; {remedy}", file=sys.stderr, flush=True)
                said = True
            time.sleep(WAIT_POLL_S)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(holder_line() + "\n")
        yield
    finally:
        marker.unlink(missing_ok=True)


def _clear(marker: Path, holder: str) -> None:
    """Remove a stale marker, unless it changed since it was read: two processes that both found it stale must not
    remove it twice (the second would remove the first one's new marker). A guard file, itself O_EXCL, serialises
    them; a guard left by a process killed in these few lines is old, and goes."""
    guard = marker.with_name(marker.name + ".clearing")
    try:
        descriptor = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if file_age(guard) > STALE_EMPTY_S:
            guard.unlink(missing_ok=True)
        return
    try:
        if _read(marker) == holder:
            marker.unlink(missing_ok=True)
    finally:
        os.close(descriptor)
        guard.unlink(missing_ok=True)


def file_age(path: Path) -> float:
    """Seconds since the file was last written (0 when it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _read(marker: Path) -> str:
    try:
        return marker.read_text().strip()
    except FileNotFoundError:
        return ""


def _dead_here(holder: str) -> bool:
    """Whether the holder line names a process of this host that no longer runs (an empty line: a marker being
    written right now, alive)."""
    words = holder.split()
    if len(words) < 4 or words[0] != "pid" or words[2] != "on" or words[3] != socket.gethostname():
        return False
    try:
        os.kill(int(words[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


__all__ = ["exclusive", "LockHeld", "holder_line", "file_age"]
