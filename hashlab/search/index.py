"""A searchable index of a folder of images: FAISS binary index + SQLite catalog + float16 features.

INDEX/ holds build folders and a ``current`` symlink to the live one. A build writes a new folder
beside the live one and swaps the link atomically, so an interrupted build leaves the previous index
intact and a running server picks up the new one on its next request. Building again into the same
INDEX encodes only new or changed files (by content hash) and drops deleted ones.

Ranking: Hamming distance, ties broken by catalog id, which is what the evaluation engine does with
database order; ``search`` returns exactly that ranking for a flat index.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from hashlab.search.encoders import load_encoder, open_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
INDEX_TYPES = ("flat", "hnsw", "ivf")
BATCH = 64
SHORTLIST = 100  # the Hamming shortlist that re-ranking reorders (hashlab search --shortlist; the server's)



def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _label_of(relative: Path) -> str | None:
    """The folder layout's label: the image's parent folder, when it is not the collection root."""
    return relative.parent.name if relative.parent != Path(".") else None


def binary_index(kind: str, bits: int, codes: np.ndarray):
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


def pack(codes: np.ndarray) -> np.ndarray:
    """+-1 codes -> bytes, first bit most significant (FAISS and the evaluation engine agree on this)."""
    return np.packbits(np.asarray(codes) > 0, axis=1)


@dataclass
class BuildReport:
    index: Path
    images: int
    encoded: int
    reused: int
    dropped: int
    skipped: list[tuple[str, str]]
    seconds: float


def build_index(images: str | Path, out: str | Path, encoder=None, index_type: str = "flat",
                refit: bool = False, progress: bool = True) -> BuildReport:
    """Index (or update the index of) every image under ``images``. ``encoder``: an encoder for a new
    index; for an existing one, None reuses its encoder (``refit``: fit PCA/ITQ again on the collection)."""
    start = time.perf_counter()
    root, out = Path(images).resolve(), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {images}: not a folder")
    previous = SearchIndex.open(out) if (out / "current").exists() else None
    if previous is not None and "shard" in previous.meta:
        raise ValueError(f"{out} is shard {previous.meta['shard']} of {previous.meta['shards']}, split from "
                         f"{previous.meta['split_from']}: build that index again and split it again")
    if encoder is None:
        if previous is None:
            raise ValueError(f"{out} holds no index yet: name how to encode (--features crow --bits 64, or --run R)")
        encoder = previous.encoder
    elif previous is not None and previous.meta.get("encoder_key") != _encoder_key(encoder):
        previous = None  # another encoder: nothing can be reused
    elif previous is not None and not refit:
        encoder = previous.encoder  # the same encoder, with the PCA/ITQ already fitted on the collection
    files = walk_images(root)
    known = previous.catalog_by_path() if previous is not None else {}
    rows, to_encode, skipped = [], [], []
    for path in files:
        relative = path.relative_to(root)
        stat = path.stat()
        old = known.get(str(relative))
        # same size and mtime: trust the stored hash; otherwise read the file again
        digest = old["sha256"] if old and old["size"] == stat.st_size and old["mtime"] == stat.st_mtime \
            else file_digest(path)
        row = {"path": str(relative), "sha256": digest, "size": stat.st_size, "mtime": stat.st_mtime,
               "label": _label_of(relative)}
        if old is not None and old["sha256"] == digest:
            row["previous_id"] = old["id"]
        else:
            to_encode.append(len(rows))
        rows.append(row)
    fitted = previous is not None and not refit
    raw = _encode(encoder, root, rows, to_encode if fitted else range(len(rows)), skipped, progress)
    encoded = sorted(raw)
    if not fitted and encoded:
        encoder.fit(np.stack([raw[i] for i in encoded]))
    kept = [i for i, row in enumerate(rows) if i in raw or (fitted and "previous_id" in row)]
    if not kept:
        raise ValueError(f"no decodable image under {root}")
    if encoded:  # one batched projection for every newly encoded image
        new_features, new_codes = encoder.finish(np.stack([raw[i] for i in encoded]))
        new_packed, position = pack(new_codes), {i: j for j, i in enumerate(encoded)}
    rows_out = [rows[i] for i in kept]
    features = np.stack([new_features[position[i]] if i in raw else previous.features[rows[i]["previous_id"]]
                         for i in kept]).astype(np.float32)
    packed = np.stack([new_packed[position[i]] if i in raw else previous.packed[rows[i]["previous_id"]]
                       for i in kept])
    dropped = len(set(known) - {row["path"] for row in rows})  # files gone from the folder
    with new_build(out) as folder:
        _write(folder, root, rows_out, features, packed, encoder, index_type, skipped)
    return BuildReport(out, len(rows_out), len(raw), len(rows_out) - len(raw), dropped, skipped,
                       time.perf_counter() - start)


def _encoder_key(encoder) -> str:
    meta = {"precision": "float32", **encoder.metadata()}  # an index from before the choice: float32
    return json.dumps({k: meta.get(k) for k in ("encoder", "features", "quantizer", "bits", "backbone",
                                                 "image_size", "precision", "run")}, sort_keys=True)


class _Decoded(torch.utils.data.Dataset):
    """Images of the collection decoded and transformed in DataLoader workers, beside the encoder's
    forward pass; an unreadable file comes back as its error, to be named and skipped."""

    def __init__(self, encoder, root: Path, rows: list[dict], which: list[int]):
        self.transform, self.root, self.rows, self.which = encoder.transform, root, rows, which

    def __len__(self):
        return len(self.which)

    def __getitem__(self, j):
        i = self.which[j]
        try:
            return i, self.transform(open_image(self.root / self.rows[i]["path"])), ""
        except Exception as error:  # noqa: BLE001 - an unreadable image is named and skipped
            return i, None, f"{type(error).__name__}: {error}"


def _batch(items):
    return items  # tensors stacked by the caller, after the unreadable ones are set aside


def _encode(encoder, root: Path, rows: list[dict], which, skipped: list, progress: bool,
            workers: int = 2) -> dict[int, np.ndarray]:
    which = list(which)
    out: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(which), desc="encoding images", unit="img", disable=not progress)
    loader = torch.utils.data.DataLoader(_Decoded(encoder, root, rows, which), batch_size=BATCH, collate_fn=_batch,
                                         num_workers=workers if len(which) > BATCH else 0)
    for items in loader:
        batch = [i for i, tensor, _ in items if tensor is not None]
        skipped.extend((rows[i]["path"], error) for i, tensor, error in items if tensor is None)
        if batch:
            tensors = torch.stack([tensor for _, tensor, _ in items if tensor is not None])
            for i, descriptor in zip(batch, encoder.describe(tensors), strict=True):
                out[i] = descriptor
        bar.update(len(items))
    bar.close()
    return out


def _write(folder: Path, root: Path, rows, features, packed, encoder, index_type, skipped) -> None:
    faiss.write_index_binary(binary_index(index_type, encoder.bits, packed), str(folder / "codes.faiss"))
    np.save(folder / "codes.npy", packed)
    np.save(folder / "features.npy", features.astype(np.float16))
    encoder.save(folder)
    import hashlab
    meta = {**encoder.metadata(), "encoder_key": _encoder_key(encoder), "index_type": index_type,
            "images_root": str(root), "count": len(rows), "skipped_unreadable": len(skipped),
            "hashlab_version": getattr(hashlab, "__version__", "unknown"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_catalog(folder, [(i, r["path"], r["sha256"], r["size"], r["mtime"], r["label"]) for i, r in enumerate(rows)],
                  meta, skipped)


def write_catalog(folder: Path, rows: list[tuple], meta: dict, skipped: list[tuple[str, str]] = ()) -> None:
    """catalog.sqlite: rows are (row, path, sha256, size, mtime, label), row = the position in codes.npy."""
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, sha256 TEXT NOT NULL, "
                   "size INTEGER, mtime REAL, label TEXT)")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE skipped (path TEXT, error TEXT)")
        db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        db.executemany("INSERT INTO skipped VALUES (?, ?)", list(skipped))
    db.close()


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


class SearchIndex:
    """A read-only view of one build of an index."""

    def __init__(self, folder: Path, device: str = "cpu"):
        self.folder = folder
        self.db = sqlite3.connect(f"file:{folder / 'catalog.sqlite'}?mode=ro", uri=True, check_same_thread=False)
        self.meta = {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        self.index = faiss.read_index_binary(str(folder / "codes.faiss"))
        self.packed = np.load(folder / "codes.npy")
        self.features = np.load(folder / "features.npy", mmap_mode="r")
        self.bits = int(self.meta["bits"])
        self.id_offset = int(self.meta.get("id_offset", 0))  # a shard's first catalog id (hashlab index split)
        self.device = device
        self._encoder = None
        rows = self.db.execute("SELECT id, path, label FROM images ORDER BY id").fetchall()
        self.paths = [r[1] for r in rows]
        self.labels = [r[2] for r in rows]

    @classmethod
    def open(cls, out: str | Path, device: str = "cpu") -> SearchIndex:
        out = Path(out)
        current = out / "current"
        if not current.exists():
            raise FileNotFoundError(f"{out}: no index here (build one with `hashlab index build --images DIR --out {out}`)")
        return cls(out / os.readlink(current), device)

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = load_encoder(self.folder, self.meta, self.device)
        return self._encoder

    @functools.cached_property
    def encoder_sha256(self) -> str:
        """The fitted encoder's fingerprint: shards of one split share it (a router checks)."""
        return hashlib.sha256((self.folder / "encoder.npz").read_bytes()).hexdigest()

    def __len__(self) -> int:
        return len(self.paths)

    def catalog_by_path(self) -> dict[str, dict]:
        rows = self.db.execute("SELECT id, path, sha256, size, mtime FROM images").fetchall()
        return {r[1]: {"id": r[0], "sha256": r[2], "size": r[3], "mtime": r[4]} for r in rows}

    def skipped(self) -> list[tuple[str, str]]:
        return self.db.execute("SELECT path, error FROM skipped").fetchall()

    def encode(self, images, timing: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """PIL images -> (features, packed codes); ``timing`` gets transform_ms (resize, crop, to tensor) and
        encode_ms (the network and the projection)."""
        return encode_images(self.encoder, images, timing)

    def hamming_search(self, packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids), each (queries, k): nearest by Hamming distance, ties by id (stable)."""
        k = min(k, len(self))
        distances, ids = self.index.search(packed, k)
        if self.meta["index_type"] != "flat":
            order = np.lexsort((ids, distances), axis=1)
            return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)
        out_d, out_i = np.empty_like(distances), np.empty_like(ids)
        for q in range(len(packed)):
            # FAISS keeps an arbitrary subset of the items tied at the k-th distance: take all of them
            radius = int(distances[q, -1]) + 1
            _, found_d, found_i = self.index.range_search(packed[q:q + 1], radius)
            order = np.lexsort((found_i, found_d))[:k]
            out_d[q], out_i[q] = found_d[order], found_i[order]
        return out_d, out_i

    def local(self, image_id: int) -> int:
        """A catalog id (global: a shard's ids start at its ``id_offset``) -> its row here."""
        row = int(image_id) - self.id_offset
        if not 0 <= row < len(self):
            raise KeyError(f"no indexed image with id {image_id} (ids are {self.id_offset}.."
                           f"{self.id_offset + len(self) - 1})")
        return row

    def image_jpeg(self, image_id: int, thumb: bool = False) -> bytes:
        """An indexed image by catalog id only (the catalog names the file, never a request), as JPEG."""
        import io
        picture = open_image(Path(self.meta["images_root"]) / self.paths[self.local(image_id)])
        if thumb:
            picture.thumbnail((160, 160))
        out = io.BytesIO()
        picture.save(out, format="JPEG", quality=85)
        return out.getvalue()

    def vectors(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Indexed images' (features, packed codes), by catalog id."""
        rows = [self.local(i) for i in ids]
        return np.asarray(self.features[rows], np.float32), self.packed[rows]

    def candidates(self, packed: np.ndarray, depth: int, with_features: bool) -> list[Candidates]:
        """Each query's shortlist: the nearest ``depth`` by Hamming distance, ties by id."""
        distances, found = self.hamming_search(packed, depth)
        return [Candidates(found[q] + self.id_offset, distances[q], [self.paths[i] for i in found[q]],
                           [self.labels[i] for i in found[q]],
                           np.asarray(self.features[found[q]], np.float32) if with_features else None)
                for q in range(len(packed))]

    def query(self, images=None, k: int = 10, rerank: str = "none", shortlist: int = SHORTLIST,
              ids: list[int] | None = None) -> list[dict]:
        """Top k for each query image (PIL images) or indexed id: one dict per query with its results
        (id, path, label, Hamming distance, re-ranked score) and timings in ms."""
        return answer_queries(self, images, k, rerank, shortlist, ids)


def encode_images(encoder, images, timing: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    start = time.perf_counter()
    batch = torch.stack([encoder.transform(image) for image in images])
    transformed = time.perf_counter()
    features, codes = encoder.finish(encoder.describe(batch))
    if timing is not None:
        timing["transform_ms"] = 1000 * (transformed - start)
        timing["encode_ms"] = 1000 * (time.perf_counter() - transformed)
    return features, pack(codes)


@dataclass
class Candidates:
    """One query's shortlist, in Hamming order (distance, then id)."""
    ids: np.ndarray
    distances: np.ndarray
    paths: list[str]
    labels: list[str | None]
    features: np.ndarray | None  # float32 rows, for re-ranking


def merge_candidates(parts: list[Candidates], depth: int) -> Candidates:
    """Shortlists of disjoint shards -> the one shortlist a single index of them all would give: Hamming
    distance does not depend on the shard, and ties go by global id, as in one index."""
    ids = np.concatenate([p.ids for p in parts])
    distances = np.concatenate([p.distances for p in parts])
    order = np.lexsort((ids, distances))[:depth]
    paths = [path for p in parts for path in p.paths]
    labels = [label for p in parts for label in p.labels]
    features = None if parts[0].features is None else np.concatenate([p.features for p in parts])[order]
    return Candidates(ids[order], distances[order], [paths[i] for i in order], [labels[i] for i in order], features)


def answer_queries(index, images, k: int, rerank: str, shortlist: int, ids) -> list[dict]:
    """The query path of one index or of shards behind a router: encode (or look up) the queries,
    shortlist by Hamming distance, re-rank the shortlist."""
    from hashlab.search.rerank import rerank as rerank_scores
    start = time.perf_counter()
    timing = {"transform_ms": 0.0}
    if ids is not None:
        features, packed = index.vectors(ids)
        timing["encode_ms"] = 1000 * (time.perf_counter() - start)
    else:
        features, packed = index.encode(images, timing)
    encoded = time.perf_counter()
    depth = max(k, shortlist) if rerank != "none" else k
    shortlists = index.candidates(packed, depth, with_features=rerank != "none")
    searched = time.perf_counter()
    out = []
    for q, found in enumerate(shortlists):
        order, scores = np.arange(len(found.ids)), None
        if rerank != "none":
            scores = rerank_scores(rerank, features[q], found.features)
            order = np.argsort(-scores, kind="stable")  # ties keep the Hamming order
        results = [{"id": int(found.ids[j]), "path": found.paths[j], "label": found.labels[j],
                    "distance": int(found.distances[j]),
                    "score": None if scores is None else round(float(scores[j]), 6)} for j in order[:k]]
        out.append({"results": results})
    done = time.perf_counter()
    # what the batch cost, each query's share (a batch of 8 shares one forward pass)
    timing.update(search_ms=1000 * (searched - encoded), rerank_ms=1000 * (done - searched))
    for item in out:
        item["timing_ms"] = {name: round(value / len(out), 3) for name, value in timing.items()}
    return out
