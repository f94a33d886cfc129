"""Re-ranking of a Hamming shortlist with the stored float features.

- ``cosine``: cosine similarity of the features.
- ``qe``: alpha-query expansion (Radenović et al., TPAMI 2018): the query is replaced by the
  similarity^alpha-weighted mean of itself and its top matches, then the shortlist is ranked again.
- ``kreciprocal``: k-reciprocal encoding (Zhong et al., CVPR 2017) inside the shortlist: Jaccard distance
  of the (expanded) k-reciprocal neighbour sets, mixed with the original distance.
Scores are "higher is better"; for kreciprocal, 1 - the final distance.
"""

from __future__ import annotations

import numpy as np

RERANKERS = ("none", "cosine", "qe", "kreciprocal")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine(query: np.ndarray, shortlist: np.ndarray) -> np.ndarray:
    return _unit(shortlist) @ _unit(query)


def query_expansion(query: np.ndarray, shortlist: np.ndarray, top: int = 10, alpha: float = 3.0) -> np.ndarray:
    items, q = _unit(shortlist), _unit(query)
    similarity = items @ q
    best = np.argsort(-similarity, kind="stable")[:top]
    weights = np.clip(similarity[best], 0, None) ** alpha
    expanded = _unit(q + (weights[:, None] * items[best]).sum(0))
    return items @ expanded


def k_reciprocal(query: np.ndarray, shortlist: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    points = np.vstack([_unit(query)[None], _unit(shortlist)])  # 0 = the query
    n = len(points)
    k1, k2 = min(k1, n - 1), max(1, min(k2, n))
    distance = np.clip(2 - 2 * points @ points.T, 0, None)
    rank = np.argsort(distance, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, :k + 1]
        return forward[np.array([i in rank[j, :k + 1] for j in forward])]

    encoding = np.zeros((n, n), np.float32)
    for i in range(n):
        members = reciprocal(i, k1)
        expanded = members
        for j in members:
            half = reciprocal(j, int(round(k1 / 2)))
            if len(np.intersect1d(half, members)) > 2 / 3 * len(half):
                expanded = np.union1d(expanded, half)
        weights = np.exp(-distance[i, expanded])
        encoding[i, expanded] = weights / weights.sum()
    encoding = np.stack([encoding[rank[i, :k2]].mean(0) for i in range(n)])  # local query expansion
    minimum = np.minimum(encoding[0][None], encoding[1:]).sum(1)
    maximum = np.maximum(encoding[0][None], encoding[1:]).sum(1)
    jaccard = 1 - minimum / np.maximum(maximum, 1e-12)
    final = (1 - lam) * jaccard + lam * distance[0, 1:]
    return 1 - final


def rerank(method: str, query: np.ndarray, shortlist: np.ndarray) -> np.ndarray | None:
    """Scores of the shortlist items (higher first), or None for ``none``."""
    if method == "none":
        return None
    if method == "cosine":
        return cosine(query, shortlist)
    if method == "qe":
        return query_expansion(query, shortlist)
    if method == "kreciprocal":
        return k_reciprocal(query, shortlist)
    raise ValueError(f"unknown re-ranking {method!r}; choose one of {', '.join(RERANKERS)}")
