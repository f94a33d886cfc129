"""Past one machine: an index split by id into shards, each served by its own `hashlab serve`, and a router
(`hashlab serve --shards URL ...`) that encodes a query once, asks every shard for its shortlist and merges
them. Every shard keeps the encoder of the index it was split from (one PCA whitening, one ITQ rotation),
so a code means the same on every shard, and Hamming distance does not depend on the shard: the merged
shortlist, ordered by (distance, global id), is exactly the one a single index gives, and so is any
re-ranking of it (the shards send the shortlisted items' features). docs/scale.md says when to shard.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hashlab.search.index import SearchIndex
from hashlab.search.query import SHORTLIST, Candidates, answer_queries, encode_images, merge_candidates
from hashlab.search.storage import binary_index, new_build, write_catalog


class ShardUnavailable(RuntimeError):
    """A shard did not answer: the router says which one (HTTP 502), rather than half an answer. ``public``
    names it by its number, for the client; the message also has its URL and reply, for the server's log
    (a client is not told the addresses behind the router)."""

    def __init__(self, message: str, public: str):
        super().__init__(message)
        self.public = public


def split_fingerprint(meta: dict) -> str:
    """Which split a shard comes from, without saying where the index lies (split_from is a path)."""
    return hashlib.sha256(str(meta["split_from"]).encode()).hexdigest()[:16]


def split_index(index_dir: str | Path, out: str | Path, shards: int) -> list[Path]:
    """Split the current build of an index into ``shards`` indexes of contiguous id ranges under
    OUT/shard-K, each a complete index (same encoder, same index type) whose catalog ids keep their
    global values (its meta's first_id: where its range starts). Returns the shard folders."""
    source = SearchIndex.open(index_dir)
    if "shard" in source.meta:
        raise ValueError(f"{index_dir} is itself shard {source.meta['shard']} of {source.meta['shards']}: "
                         "split the whole index")
    if not 1 <= shards <= len(source):
        raise ValueError(f"--shards {shards}: choose 1 to {len(source)} (the index holds {len(source)} images)")
    out = Path(out)
    bounds = np.linspace(0, len(source), shards + 1).astype(int).tolist()
    catalog = source.db.execute("SELECT id, path, sha256, size, mtime, label FROM images ORDER BY id").fetchall()
    folders = []
    for shard, (low, high) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        root = out / f"shard-{shard}"
        with new_build(root) as folder:
            packed = source.packed[low:high]
            import faiss
            faiss.write_index_binary(binary_index(source.meta["index_type"], source.bits, packed),
                                     str(folder / "codes.faiss"))
            np.save(folder / "codes.npy", packed)
            np.save(folder / "features.npy", np.asarray(source.features[low:high]))
            shutil.copyfile(source.folder / "encoder.npz", folder / "encoder.npz")
            meta = {**source.meta, "count": high - low, "first_id": int(source.ids[low]), "shard": shard,
                    "shards": shards, "total": len(source), "split_from": str(source.folder.resolve()),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_catalog(folder, catalog[low:high], meta)
        folders.append(root)
    return folders


def encode_array(array: np.ndarray) -> dict:
    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")}


def decode_array(payload: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(payload["data"]), dtype=payload["dtype"]).reshape(payload["shape"])


def candidates_payload(shortlists: list[Candidates]) -> dict:
    """A shard's answer to the router: each query's shortlist, features as float16 (as stored)."""
    return {"candidates": [{"ids": c.ids.tolist(), "distances": c.distances.tolist(), "paths": c.paths,
                            "labels": c.labels,
                            "features": None if c.features is None else encode_array(c.features.astype(np.float16))}
                           for c in shortlists]}


class ShardedIndex:
    """The router's view of shards served by `hashlab serve`: the same query interface as SearchIndex."""

    def __init__(self, urls: list[str], device: str = "cpu", timeout: float = 30.0):
        import httpx
        self.urls = [url.rstrip("/") for url in urls]
        self.clients = [httpx.Client(base_url=url, timeout=timeout) for url in self.urls]  # kept-alive connections
        self.pool = ThreadPoolExecutor(max_workers=len(self.urls), thread_name_prefix="hashlab-shard")
        metas = [self._get(i, "/api/meta").json() for i in range(len(self.urls))]
        self._check(metas)
        # where each shard's id range starts (id_offset: a shard split before ids were kept from build to build)
        firsts = [meta["first_id"] if "first_id" in meta else meta["id_offset"] for meta in metas]
        order = sorted(range(len(metas)), key=lambda i: firsts[i])  # shard 0 first
        self.urls, self.clients = [self.urls[i] for i in order], [self.clients[i] for i in order]
        metas = [metas[i] for i in order]
        self.firsts = np.array([firsts[i] for i in order])
        self.meta = {k: v for k, v in metas[0].items() if k not in ("first_id", "id_offset", "shard", "count", "url",
                                                                    "server_peak_rss_mb")}
        self.meta.update(count=metas[0]["total"], shards=len(self.urls))  # how many, not where they are
        self.bits = int(self.meta["bits"])
        self.device = device
        # the shards' encoder, loaded now from a folder that goes with this block (load_encoder reads a folder)
        from hashlab.search.encoders import load_encoder
        with tempfile.TemporaryDirectory(prefix="hashlab-router-") as folder:
            (Path(folder) / "encoder.npz").write_bytes(self._get(0, "/api/encoder").content)
            self.encoder = load_encoder(Path(folder), self.meta, device)

    def _request(self, shard: int, method: str, path: str, answers: tuple[int, ...] = (200,), **options):
        """``answers``: the statuses that are an answer (the caller reads them); any other is the shard failing."""
        import httpx
        which = f"shard {shard} of {len(self.urls)}"  # after __init__ sorts them, shard K is the split's shard K
        try:
            response = self.clients[shard].request(method, path, **options)
        except httpx.HTTPError as error:
            raise ShardUnavailable(f"{which} ({self.urls[shard]}) did not answer {path}: {type(error).__name__}: "
                                   f"{error}", f"{which} did not answer ({type(error).__name__})") from error
        if response.status_code not in answers:
            raise ShardUnavailable(f"{which} ({self.urls[shard]}) answered {path} with {response.status_code}: "
                                   f"{response.text[:300]}", f"{which} answered {response.status_code}")
        return response

    def _get(self, shard: int, path: str, **params):
        return self._request(shard, "GET", path, params=params)

    def _check(self, metas: list[dict]) -> None:
        for url, meta in zip(self.urls, metas, strict=True):
            meta["url"] = url
            if "shard" not in meta:
                raise ValueError(f"{url} serves a whole index, not a shard: split it with `hashlab index split`")
        if {m["encoder_sha256"] for m in metas} != {metas[0]["encoder_sha256"]} or \
                {m["split"] for m in metas} != {metas[0]["split"]}:
            raise ValueError("the shards come from different splits or encoders: "
                             + ", ".join(f"{m['url']} (shard {m['shard']} of split {m['split']})" for m in metas))
        found = sorted(m["shard"] for m in metas)
        if found != list(range(metas[0]["shards"])):
            raise ValueError(f"the index was split into {metas[0]['shards']} shards; the URLs serve shards {found}")

    def __len__(self) -> int:
        return int(self.meta["count"])

    def no_image(self, image_id: int) -> str:
        """The router's words for an id no shard holds (a shard's own would give its part's count and range)."""
        return (f"no indexed image with id {image_id} (never indexed, or dropped from the collection by an update; "
                f"this index holds {len(self)} images in {len(self.urls)} shards)")

    def shard_of(self, image_id: int) -> int:
        """The shard whose id range holds ``image_id`` (which answers 404 for an id in its range it does not hold)."""
        if image_id < self.firsts[0]:
            raise KeyError(self.no_image(image_id))
        return int(np.searchsorted(self.firsts, image_id, side="right") - 1)

    def encode(self, images, timing: dict | None = None):
        return encode_images(self.encoder, images, timing)

    def vectors(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        features, codes = [], []
        for image_id in ids:
            response = self._request(self.shard_of(int(image_id)), "GET", "/api/vectors", answers=(200, 404),
                                     params={"ids": str(int(image_id))})
            if response.status_code == 404:  # an id in the shard's range that it does not hold: no such image
                raise KeyError(self.no_image(image_id))
            answer = response.json()
            features.append(decode_array(answer["features"]).astype(np.float32))
            codes.append(decode_array(answer["codes"]))
        return np.concatenate(features), np.concatenate(codes)

    def candidates(self, packed: np.ndarray, depth: int, with_features: bool) -> list[Candidates]:
        request = {"codes": encode_array(packed), "depth": depth, "features": with_features}

        def ask(shard: int) -> list[Candidates]:
            response = self._request(shard, "POST", "/api/candidates", json=request)
            return [Candidates(np.asarray(c["ids"], np.int64), np.asarray(c["distances"], np.int32), c["paths"],
                               c["labels"], None if c["features"] is None else
                               decode_array(c["features"]).astype(np.float32))
                    for c in response.json()["candidates"]]

        per_shard = list(self.pool.map(ask, range(len(self.clients))))
        return [merge_candidates([shard[q] for shard in per_shard], depth) for q in range(len(packed))]

    def query(self, images=None, k: int = 10, rerank: str = "none", shortlist: int = SHORTLIST,
              ids: list[int] | None = None) -> list[dict]:
        return answer_queries(self, images, k, rerank, shortlist, ids)

    def image_jpeg(self, image_id: int, thumb: bool = False) -> bytes:
        # the shard's "no such id" (404) and "file gone" (410) are answers about the image, not a failing shard
        response = self._request(self.shard_of(image_id), "GET", f"/api/image/{image_id}", answers=(200, 404, 410),
                                 params={"thumb": int(thumb)})
        if response.status_code == 404:
            raise KeyError(self.no_image(image_id))
        if response.status_code == 410:
            raise FileNotFoundError(response.json().get("error", f"indexed image {image_id} can no longer be read"))
        return response.content
