"""Writing files so that no reader ever sees half of one: write beside the target, then rename over it (a rename
within a folder is atomic), and on a storage error (a full disk) remove the half-written file and say what is
kept. Every record, codes file, split file and feature cache of the project is written through here. The file's
data reach the disk before the rename, and the rename before the block returns, so after a power cut a path holds
the old file or the whole new one, never a renamed empty one (ext4 and xfs may otherwise reorder the two)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, kept: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) to write to; renamed over ``path`` when the block ends
    without an error. ``kept``: what a failed write leaves (default: the previous file, or none)."""
    from hashlab.errors import storage_error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        flush_to_disk(tmp)
        tmp.replace(path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, error, kept or (f"the previous {path.name}" if path.exists() else "no file")) \
            from error
    finally:
        tmp.unlink(missing_ok=True)
    flush_to_disk(path.parent)  # after the write is done: a folder that cannot be synced fails nothing


def flush_to_disk(path: Path) -> None:
    """fsync a file or a folder (a folder's entry list holds its renames). A file system that cannot sync a folder
    (some network mounts refuse) keeps the rename in its own time: nothing more can be done there."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not path.is_dir():
            raise


def write_json_atomic(path: str | Path, payload: dict) -> Path:
    """The payload as indented JSON."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False, default=str)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def copy_atomic(source: str | Path, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)
