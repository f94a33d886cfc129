"""The query path shared by one index (index.SearchIndex) and shards behind a router (shards.ShardedIndex):
encode the queries, shortlist by Hamming distance, re-rank the shortlist."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from hashlab.search.storage import pack

SHORTLIST = 100  # the Hamming shortlist that re-ranking reorders (hashlab search --shortlist; the server's)


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
    """Top k for each query image or indexed id of ``index`` (a SearchIndex or a ShardedIndex)."""
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
