"""A second evaluator, sharing no code with the engine, to check a committed table against its codes.

The engine computes mAP@all in closed form from distance histograms (:mod:`hashlab.evaluation.expected`). Here
the same figures are measured the way the definitions read, by ranking every database item:

- ``map_stable`` (ties in database order): a stable ``np.argsort`` of each query's distances, then the
  precision at each relevant item. It must equal the record's figure to rounding.
- ``map`` (order-free: the expectation over random orders of tied items): each query ranks the database with
  torchmetrics' ``retrieval_average_precision``, its scores the distance plus a random jitter below one step,
  so ties fall in a uniformly random order; the mean over a few draws estimates the expectation, with a
  standard error from the spread of each query's AP between draws.

The jitter is drawn for each query apart: one shuffle of the database shared by all queries would move the
queries of a class together (their codes collapse onto the same tie), and the spread between queries would
then understate the error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

QUERY_BLOCK = 100  # queries ranked at once: a block of distances is QUERY_BLOCK x database items


@dataclass
class CrossCheck:
    map_stable: float           # mAP@all, ties in database order
    map_random: float           # mAP@all averaged over ``draws`` random tie orders per query
    map_random_se: float        # its standard error (from each query's spread between draws)
    draws: int


def _distances_and_relevance(query_codes, database_codes, query_labels, database_labels):
    """Hamming distances (int64) and relevance (shares a label), by matrix products of +-1 codes and of labels."""
    bits = query_codes.shape[1]
    q, d = torch.as_tensor(query_codes, dtype=torch.float32), torch.as_tensor(database_codes, dtype=torch.float32)
    distances = ((bits - q @ d.T) / 2).round().to(torch.int64)
    ql, dl = np.asarray(query_labels), np.asarray(database_labels)
    if ql.ndim == 1:  # class ids
        return distances, torch.from_numpy(ql[:, None] == dl[None, :])
    return distances, torch.from_numpy(ql.astype(np.float32)) @ torch.from_numpy(dl.astype(np.float32)).T > 0


def stable_average_precision(distances: np.ndarray, relevant: np.ndarray) -> float:
    """AP@all of one query, the database ranked by distance, ties in database order."""
    hits = relevant[np.argsort(distances, kind="stable")]
    positions = np.flatnonzero(hits)
    if not len(positions):
        return 0.0  # no relevant item: AP 0, as the engine counts it
    return float(np.mean(np.arange(1, len(positions) + 1) / (positions + 1)))


def cross_check(query_codes, database_codes, query_labels, database_labels, draws: int = 4,
                seed: int = 0) -> CrossCheck:
    """Codes as +-1 arrays (n, bits); labels one-hot or multi-hot (n, C)."""
    from torchmetrics.functional.retrieval import retrieval_average_precision
    if draws < 2:
        raise ValueError(f"draws must be at least 2 (the standard error needs a spread), got {draws}")
    generator = torch.Generator().manual_seed(seed)
    bits = query_codes.shape[1]
    stable, random_aps = [], []
    for start in range(0, len(query_codes), QUERY_BLOCK):
        block = slice(start, start + QUERY_BLOCK)
        distances, relevant = _distances_and_relevance(query_codes[block], database_codes, query_labels[block],
                                                       database_labels)
        stable += [stable_average_precision(d, r) for d, r in zip(distances.numpy(), relevant.numpy(), strict=True)]
        # torchmetrics counts an item only where its score is above 0 (1.9: `where(preds > 0, target, 0)`), so
        # the score is bits + 1 - distance, at least 1; the jitter stays below one step, never crossing a distance
        scores = (bits + 1 - distances).float()
        block_aps = []
        for _ in range(draws):
            jittered = scores + 0.5 * torch.rand(scores.shape, generator=generator)
            block_aps.append([retrieval_average_precision(jittered[i], relevant[i]).item() for i in range(len(scores))])
        random_aps.append(block_aps)
    per_query = np.concatenate(random_aps, axis=1)  # (draws, queries)
    # the mean over queries of each query's mean over draws; queries draw apart, so its variance is the sum of
    # the within-query variances / draws, over queries squared
    standard_error = float(np.sqrt(per_query.var(axis=0, ddof=1).sum() / draws) / per_query.shape[1])
    return CrossCheck(map_stable=float(np.mean(stable)), map_random=float(per_query.mean()),
                      map_random_se=standard_error, draws=draws)
