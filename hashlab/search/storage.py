"""An index on disk: INDEX/ holds build folders and a ``current`` symlink to the live one. A build folder
holds codes.faiss (the FAISS binary index), codes.npy (the packed codes), features.npy (float16, for
re-ranking), the encoder's file and catalog.sqlite (images, metadata, skipped files). A build writes a new
folder beside the live one and swaps the link atomically, so an interrupted build leaves the previous index
intact and a running server picks up the new one on its next request.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

INDEX_TYPES = ("flat", "hnsw", "ivf")


def pack(codes: np.ndarray) -> np.ndarray:
    """+-1 codes -> bytes, first bit most significant (FAISS and the evaluation engine agree on this)."""
    return np.packbits(np.asarray(codes) > 0, axis=1)


def binary_index(kind: str, bits: int, codes: np.ndarray):
    """A FAISS binary index of ``kind`` (one of INDEX_TYPES) holding the packed ``codes``."""
    # FAISS takes whole bytes; packbits pads a code to them with zeros, the same in every code, so the padded
    # Hamming distance is the code's (12 bits: 16 in the index)
    bits = 8 * -(-bits // 8)
    if kind == "flat":
        index = faiss.IndexBinaryFlat(bits)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(bits, 16)
        index.hnsw.efSearch = 128  # recall over speed: the default (16) misses most neighbours of 64-bit codes
    elif kind == "ivf":
        lists = max(1, min(4096, int(np.sqrt(max(1, len(codes))))))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, lists)
        index.train(codes)
        index.nprobe = max(1, lists // 8)
    else:
        raise ValueError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_TYPES)}")
    if len(codes):
        index.add(codes)
    return index


def write_catalog(folder: Path, rows: list[tuple], meta: dict, skipped: list[tuple[str, str]] = ()) -> None:
    """catalog.sqlite: rows are (id, path, sha256, size, mtime, label), in id order, which is their order in
    codes.npy and features.npy (an id is kept from build to build; a row is a position in one build)."""
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, sha256 TEXT NOT NULL, "
                   "size INTEGER, mtime REAL, label TEXT)")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE skipped (path TEXT, error TEXT)")
        db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        db.executemany("INSERT INTO skipped VALUES (?, ?)", list(skipped))
    db.close()


def current_build(out: str | Path) -> Path:
    """INDEX's live build folder, or a FileNotFoundError that says what OUT is instead."""
    out = Path(out)
    if not (out / "current").exists():
        if (out / "catalog.sqlite").exists():  # one build of an index: the index is the folder above it
            raise FileNotFoundError(f"{out} is one build of the index {out.parent}: pass --index {out.parent}")
        raise FileNotFoundError(f"{out}: no index here (build one with `hashlab index build --images DIR --out {out}`)")
    return out / os.readlink(out / "current")


def _read_catalog(folder: Path):
    return contextlib.closing(sqlite3.connect(read_only(folder / "catalog.sqlite"), uri=True))


def read_only(database: Path) -> str:
    """SQLite's URI for opening ``database`` read-only; the path percent-encoded, so that a folder named with
    '#', '?' or '%' still opens (in a bare f"file:{path}" SQLite would read them as the URI's own parts)."""
    return Path(database).resolve().as_uri() + "?mode=ro"


def _meta(db) -> dict:
    return {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}


def catalog_meta(out: str | Path) -> dict:
    """The live build's meta alone (its encoder, bits, image size, ...): no code is loaded."""
    with _read_catalog(current_build(out)) as db:
        return _meta(db)


def catalog_summary(out: str | Path) -> dict:
    """What an index holds, from its catalog alone (no code is loaded, whatever the index's size): the build's
    meta, its image count and id range, images by label and the files it skipped."""
    folder = current_build(out)
    with _read_catalog(folder) as db:
        meta = _meta(db)
        count, first, last = db.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM images").fetchone()
        labels = dict(db.execute("SELECT COALESCE(label, ''), COUNT(*) FROM images GROUP BY label "
                                 "ORDER BY COUNT(*) DESC, label").fetchall())
        skipped = db.execute("SELECT path, error FROM skipped ORDER BY path").fetchall()
    offset = int(meta.get("id_offset", 0))  # a shard split before ids were kept: rows from 0
    return {"index": str(out), "build": folder.name, "meta": meta, "count": count,
            "ids": [first + offset, last + offset], "labels": labels, "skipped": [list(row) for row in skipped]}


@contextmanager
def new_build(out: Path):
    """A new build folder beside OUT's live one; once the block has written it, OUT/current is swapped to
    it and the old builds go. A failure leaves the live build as it was (a full disk named as such)."""
    out.mkdir(parents=True, exist_ok=True)
    # unique even for two builds in one second from one process (the name never repeats a live build's)
    folder = Path(tempfile.mkdtemp(prefix=f"build-{time.strftime('%Y%m%d-%H%M%S')}-", dir=out))
    folder.chmod(0o755)  # mkdtemp's 0700 would hide the index from a server running as another user
    try:
        yield folder
        _swap(out, folder)
    except (OSError, sqlite3.OperationalError, RuntimeError) as error:  # FAISS and SQLite report a full disk so
        shutil.rmtree(folder, ignore_errors=True)
        from hashlab.errors import storage_error
        raise storage_error(folder, error, f"the index at {out} (its current build)") from error
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _remove_old_builds(out)


def _swap(out: Path, folder: Path) -> None:
    link = out / f".current-{os.getpid()}"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(folder.name)
    os.replace(link, out / "current")  # atomic: a reader sees the old build or the new one


def _remove_old_builds(out: Path) -> None:
    live = os.readlink(out / "current")
    for folder in out.glob("build-*"):
        if folder.name != live:
            shutil.rmtree(folder, ignore_errors=True)  # open files of a reader stay readable (POSIX)
