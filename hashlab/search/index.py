"""A searchable index: the read-only view of one build of an index (storage.py has the layout on disk).

Ranking: Hamming distance, ties broken by catalog id, which is what the evaluation engine does with
database order; ``hamming_search``, and so ``query``, returns exactly that ranking for a flat index.

Ids and rows: a catalog id names an image from build to build (build.py keeps it, and never gives a dropped
one again); a row is its position in this build's codes.npy, features.npy and FAISS index, which hold the
images in id order. FAISS answers rows; everything that leaves this class is an id.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from pathlib import Path

import faiss
import numpy as np

from hashlab.search.encoders import load_encoder, open_image
from hashlab.search.query import SHORTLIST, Candidates, answer_queries, encode_images
from hashlab.search.storage import current_build, read_only


class SearchIndex:
    """A read-only view of one build of an index."""

    def __init__(self, folder: Path, device: str = "cpu"):
        self.folder = folder
        self.db = sqlite3.connect(read_only(folder / "catalog.sqlite"), uri=True, check_same_thread=False)
        self.meta = {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        self.index = faiss.read_index_binary(str(folder / "codes.faiss"))
        self.packed = np.load(folder / "codes.npy")
        self.features = np.load(folder / "features.npy", mmap_mode="r")
        self.bits = int(self.meta["bits"])
        self.device = device
        self._encoder = None
        rows = self.db.execute("SELECT id, path, label FROM images ORDER BY id").fetchall()
        # a shard split before ids were kept stores rows from 0 and its first id in id_offset
        self.ids = np.array([r[0] for r in rows], np.int64) + int(self.meta.get("id_offset", 0))
        self.paths = [r[1] for r in rows]
        self.labels = [r[2] for r in rows]

    @classmethod
    def open(cls, out: str | Path, device: str = "cpu") -> SearchIndex:
        return cls(current_build(out), device)

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
        """(distances, rows), each (queries, k): nearest by Hamming distance, ties by row, that is by id (stable);
        a row of -1 is an empty slot of an approximate index."""
        k = min(k, len(self))
        distances, ids = self.index.search(packed, k)
        if self.meta["index_type"] == "ivf":
            distances, ids = self._fill_from_more_lists(packed, k, distances, ids)
        if self.meta["index_type"] != "flat":  # an id of -1 (nothing found) sorts last, at FAISS's largest distance
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

    def _fill_from_more_lists(self, packed, k, distances, ids):
        """An IVF search sees only the codes of the lists it probes, and pads with id -1 where those hold fewer
        than k (a small collection, or a shard): search such queries again with twice the lists, up to all of
        them (exhaustive), per call, so that concurrent searches of a server never share a setting."""
        nprobe, lists = self.index.nprobe, self.index.nlist
        while (short := np.flatnonzero((ids < 0).any(axis=1))).size and nprobe < lists:
            nprobe = min(lists, 2 * nprobe)
            more_d, more_i = self.index.search(packed[short], k, params=faiss.SearchParametersIVF(nprobe=nprobe))
            distances[short], ids[short] = more_d, more_i
        return distances, ids

    def _row(self, image_id: int) -> int | None:
        row = int(np.searchsorted(self.ids, int(image_id)))  # ids are sorted: rows are in id order
        return row if row < len(self.ids) and self.ids[row] == int(image_id) else None

    def holds(self, image_id: int) -> bool:
        return self._row(image_id) is not None

    def local(self, image_id: int) -> int:
        """A catalog id -> its row here."""
        row = self._row(image_id)
        if row is None:
            raise KeyError(f"no indexed image with id {image_id} (never indexed, or dropped from the collection "
                           f"by an update; this index holds {len(self)} images, ids {self.ids[0]} to {self.ids[-1]})")
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
        shortlists = []
        for q in range(len(packed)):
            real = found[q] >= 0  # an approximate index can leave a slot empty (-1): never an image
            rows, dist = found[q][real], distances[q][real]
            shortlists.append(Candidates(self.ids[rows], dist, [self.paths[i] for i in rows],
                                         [self.labels[i] for i in rows],
                                         np.asarray(self.features[rows], np.float32) if with_features else None))
        return shortlists

    def query(self, images=None, k: int = 10, rerank: str = "none", shortlist: int = SHORTLIST,
              ids: list[int] | None = None) -> list[dict]:
        """Top k for each query image (PIL images) or indexed id: one dict per query with its results
        (id, path, label, Hamming distance, re-ranked score) and timings in ms."""
        return answer_queries(self, images, k, rerank, shortlist, ids)
