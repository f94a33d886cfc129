"""Graded relevance for multi-label data: NDCG@k where an item's relevance is the number of labels
it shares with the query (as multi-label hashing papers such as IDHN report beside mAP). mAP
counts an item sharing one of five labels as fully relevant; NDCG rewards ranking items that
share more labels first, which is what graded ("percentage") similarity trains for.

The ranking is the same stable Hamming ranking as everywhere else (ties by database order).
"""

from __future__ import annotations

import numpy as np

from hashlab.evaluation.codes import pack_codes

CHUNK = 256  # queries per block: keeps the (chunk, database) distance matrix small


def _signs(codes, name: str) -> np.ndarray:
    return pack_codes(codes, name).unpack().astype(np.float32)


def ndcg_at_k(query_codes, database_codes, query_labels, database_labels, k: int = 100) -> float:
    """Mean NDCG@k with gain 2^rel - 1 and discount log2(rank + 1), rel = shared labels."""
    q, db = _signs(query_codes, "query_codes"), _signs(database_codes, "database_codes")
    q_labels = np.asarray(query_labels, dtype=np.float32)
    db_labels = np.asarray(database_labels, dtype=np.float32)
    n, bits = len(db), q.shape[1]
    k = min(k, n)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for start in range(0, len(q), CHUNK):
        distance = np.rint((bits - q[start:start + CHUNK] @ db.T) / 2).astype(np.int64)
        key = distance * n + np.arange(n)  # distance first, then database order: a stable ranking
        top = np.argpartition(key, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(np.take_along_axis(key, top, axis=1), axis=1), axis=1)
        relevance = np.rint(q_labels[start:start + CHUNK] @ db_labels.T)
        gains = 2.0 ** np.take_along_axis(relevance, top, axis=1) - 1
        ideal = 2.0 ** np.sort(np.partition(relevance, n - k, axis=1)[:, n - k:], axis=1)[:, ::-1] - 1
        best = ideal @ discount
        scores.append(np.where(best > 0, (gains @ discount) / np.maximum(best, 1e-12), 0.0))
    return float(np.concatenate(scores).mean()) if scores else 0.0
