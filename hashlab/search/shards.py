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
import logging
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hashlab.errors import ConfigError
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


log = logging.getLogger("hashlab.serve")
SPLIT_HEADER = "X-Hashlab-Split"  # on a shard's answers to a router: the split that answered


class ShardsChanged(RuntimeError):
    """The shards behind a router no longer form one split (HTTP 503). ``public`` is for the client; the
    message, with the shards' addresses, for the router's log."""

    def __init__(self, message: str, public: str):
        super().__init__(message)
        self.public = public


class StaleView(RuntimeError):
    """A shard answered from another split than the router's view of them: the router looks again."""


class MixedSplits(ConfigError):
    """The shard URLs serve shards of different splits: for a moment while an index is split again (the shards'
    servers move to the new split one by one), for good when the URLs are another split's."""


def split_fingerprint(meta: dict) -> str:
    """Which split a shard comes from, without saying where the index lies (split_from is a path). Each run of
    `hashlab index split` has an id of its own: splitting again into the same folder is another split."""
    return hashlib.sha256(f"{meta['split_from']} {meta.get('split_id', '')}".encode()).hexdigest()[:16]


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
    if source.meta.get("encoder") == "supervised":
        raise ValueError(f"{index_dir} encodes with a trained run ({source.meta.get('method')} codes): a router and "
                         "its shards share one fitted encoder file, which a run-built index does not have; serve it "
                         "whole (`hashlab serve --index ...`), or split an index built with --features crow or pwa")
    out = Path(out)
    split_id = uuid.uuid4().hex
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
                    "split_id": split_id,
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
    """The router's index: shards served by `hashlab serve`, behind the same query interface as SearchIndex.
    It answers each request from one ShardView (one look at the shards: their order, id ranges and encoder).
    A shard says which split answered; when that is not the view's (the shards were split again while the
    router ran), the router looks at the shards again and asks once more."""

    def __init__(self, urls: list[str], device: str = "cpu", timeout: float = 30.0):
        import httpx
        self.device = device
        self.clients = {url.rstrip("/"): httpx.Client(base_url=url.rstrip("/"), timeout=timeout)  # kept alive
                        for url in urls}
        self.pool = ThreadPoolExecutor(max_workers=len(self.clients), thread_name_prefix="hashlab-shard")
        self._looking = threading.Lock()
        self.view = self._first_look()

    def _first_look(self, looks: int = 10, pause: float = 0.5) -> ShardView:
        """The look at start-up. A shard that does not answer, or URLs that are not one split's shards, is the
        user's to fix: one line (ConfigError), no traceback. Shards of two splits, or an encoder that changed
        while it was read, can be a split being written: looked at again for up to ``looks * pause`` seconds."""
        for look in range(1, looks + 1):
            try:
                return self._look()
            except ShardUnavailable as error:
                self.close()
                raise ConfigError(f"{error}. Start each shard's server first (`hashlab serve --index OUT/shard-K`, "
                                  "one per folder `hashlab index split` wrote) and check the --shards URLs") \
                    from error
            except (MixedSplits, StaleView) as error:
                if look == looks:
                    self.close()
                    raise ConfigError(f"{error}, after {looks * pause:.0f} s of looking: give --shards the URLs of "
                                      "one split's shards (if the index is being split again, start the router when "
                                      "it is written)") from error
                log.info("%s: looking at the shards again in %.1f s", error, pause)
                time.sleep(pause)
        raise AssertionError("a look returns or raises")

    def close(self) -> None:
        """Close the connections to the shards and their thread pool."""
        for client in self.clients.values():
            client.close()
        self.pool.shutdown(wait=False)

    def _look(self) -> ShardView:
        urls = list(self.clients)
        # named by their place on the router's command line: the client is not told the addresses
        metas = [ShardView.request(self.clients[url], f"shard URL {i + 1} of {len(urls)}", url, "GET",
                                   "/api/meta").json() for i, url in enumerate(urls)]
        check_shards(urls, metas)
        # where each shard's id range starts (id_offset: a shard split before ids were kept from build to build)
        firsts = [meta["first_id"] if "first_id" in meta else meta["id_offset"] for meta in metas]
        order = sorted(range(len(metas)), key=lambda i: firsts[i])  # shard 0 first
        urls, metas, firsts = [urls[i] for i in order], [metas[i] for i in order], [firsts[i] for i in order]
        encoder_file = ShardView.request(self.clients[urls[0]], "shard 0", urls[0], "GET", "/api/encoder").content
        if hashlib.sha256(encoder_file).hexdigest() != metas[0]["encoder_sha256"]:
            raise StaleView(f"{urls[0]} changed its encoder while the router read it")
        meta = {k: v for k, v in metas[0].items() if k not in ("first_id", "id_offset", "shard", "count", "url",
                                                               "server_peak_rss_mb")}
        meta.update(count=metas[0]["total"], shards=len(urls))  # how many, not where they are
        # the shards' encoder, loaded now from a folder that goes with this block (load_encoder reads a folder)
        from hashlab.search.encoders import load_encoder
        with tempfile.TemporaryDirectory(prefix="hashlab-router-") as folder:
            (Path(folder) / "encoder.npz").write_bytes(encoder_file)
            encoder = load_encoder(Path(folder), meta, self.device)
        return ShardView([self.clients[url] for url in urls], urls, np.array(firsts), meta, encoder, self.pool)

    def _answer(self, task):
        """task(view), from the current view; once more from a new look when a shard answered from another split."""
        view = self.view
        try:
            return task(view)
        except StaleView as stale:
            log.info("%s: looking at the shards again", stale)
        with self._looking:
            if self.view is view:  # no other request has looked again meanwhile
                try:
                    self.view = self._look()
                except (ValueError, StaleView, KeyError) as error:
                    raise ShardsChanged(f"the shards changed under the router: {error}",
                                        "the shards changed under the router and are not one split now (a split "
                                        "being written, or split into another number of shards; the router's log "
                                        "says which); try again, or restart the router with the new split's URLs") \
                        from error
        try:
            return task(self.view)
        except StaleView as error:
            raise ShardsChanged(f"the shards changed under the router twice in one request: {error}",
                                "the shards are being split again; try again") from error

    @property
    def meta(self) -> dict:
        return self.view.meta

    @property
    def bits(self) -> int:
        return self.view.bits

    def __len__(self) -> int:
        return len(self.view)

    def query(self, images=None, k: int = 10, rerank: str = "none", shortlist: int = SHORTLIST,
              ids: list[int] | None = None) -> list[dict]:
        return self._answer(lambda view: answer_queries(view, images, k, rerank, shortlist, ids))

    def image_jpeg(self, image_id: int, thumb: bool = False) -> bytes:
        return self._answer(lambda view: view.image_jpeg(image_id, thumb))


def check_shards(urls: list[str], metas: list[dict]) -> None:
    """ConfigError unless the servers at ``urls`` serve every shard of one split, once each (MixedSplits: shards
    of more than one split or encoder)."""
    for url, meta in zip(urls, metas, strict=True):
        meta["url"] = url
        if "shard" not in meta:
            raise ConfigError(f"{url} serves a whole index, not a shard: split it with `hashlab index split`")
    if {m["encoder_sha256"] for m in metas} != {metas[0]["encoder_sha256"]} or \
            {m["split"] for m in metas} != {metas[0]["split"]}:
        raise MixedSplits("the shards come from different splits or encoders: "
                         + ", ".join(f"{m['url']} (shard {m['shard']} of split {m['split']})" for m in metas))
    found = sorted(m["shard"] for m in metas)
    if found != list(range(metas[0]["shards"])):
        raise ConfigError(f"the index was split into {metas[0]['shards']} shards; the URLs serve shards {found}: "
                          "give --shards one URL for each")


class ShardView:
    """One look at the shards of a split, in shard order: the index interface answer_queries uses."""

    def __init__(self, clients: list, urls: list[str], firsts: np.ndarray, meta: dict, encoder, pool):
        self.clients, self.urls, self.firsts, self.meta, self.encoder, self.pool = \
            clients, urls, firsts, meta, encoder, pool
        self.bits = int(meta["bits"])
        self.split = meta["split"]

    @staticmethod
    def request(client, which: str, url: str, method: str, path: str, answers: tuple[int, ...] = (200,),
                **options):
        """``answers``: the statuses that are an answer (the caller reads them); any other is the shard failing."""
        import httpx
        try:
            response = client.request(method, path, **options)
        except httpx.HTTPError as error:
            raise ShardUnavailable(f"{which} ({url}) did not answer {path}: {type(error).__name__}: {error}",
                                   f"{which} did not answer ({type(error).__name__})") from error
        if response.status_code not in answers:
            raise ShardUnavailable(f"{which} ({url}) answered {path} with {response.status_code}: "
                                   f"{response.text[:300]}", f"{which} answered {response.status_code}")
        return response

    def _request(self, shard: int, method: str, path: str, answers: tuple[int, ...] = (200,), **options):
        which = f"shard {shard} of {len(self.urls)}"
        response = self.request(self.clients[shard], which, self.urls[shard], method, path, answers, **options)
        split = response.headers.get(SPLIT_HEADER)
        if split is not None and split != self.split:  # its answer, even a 404, is about another split's ids
            raise StaleView(f"{which} ({self.urls[shard]}) now serves split {split}, not {self.split}")
        return response

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

    def image_jpeg(self, image_id: int, thumb: bool = False) -> bytes:
        # the shard's "no such id" (404) and "file gone" (410) are answers about the image, not a failing shard
        response = self._request(self.shard_of(image_id), "GET", f"/api/image/{image_id}", answers=(200, 404, 410),
                                 params={"thumb": int(thumb)})
        if response.status_code == 404:
            raise KeyError(self.no_image(image_id))
        if response.status_code == 410:
            raise FileNotFoundError(response.json().get("error", f"indexed image {image_id} can no longer be read"))
        return response.content
