"""Metrics of the ranking as expectations over random orders of tied items, from the histograms alone.

A Hamming ranking is a partial order: every item at distance d comes before every item at d + 1, and
nothing orders the items at the same distance. Supervised codes collapse (thousands of database items
share a query's code), so any fixed order inside a tie (database order, say) decides a large part of
the metric. The expectation over all orders of the tied items is the quantity that depends on the codes
alone. For a query, distance bucket d holds n_d items of which r_d are relevant; B items and R relevant
ones lie at smaller distances. A uniformly random order inside the bucket puts a relevant item at each
of its positions with probability r_d / n_d, and, given one at position j, (r_d - 1)(j - 1)/(n_d - 1)
other relevant items before it in expectation; the sums over positions are differences of harmonic
numbers (He et al., "Hashing as Tie-Aware Learning to Rank", CVPR 2018, for AP over the whole list).

When a cut-off K (AP@K, precision@N) falls inside a bucket, the number X of relevant items among its
first m = K - B positions is hypergeometric; AP@K divides by R + X, so its expectation is a sum over
the values of X, each term exact (docs/evaluation.md derives it).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _harmonic(n):
    out = np.zeros(n + 1, dtype=np.float64)
    for i in range(1, n + 1):
        out[i] = out[i - 1] + 1.0 / i
    return out


@numba.njit(cache=True)
def _log_choose(n, k):
    return math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)


@numba.njit(cache=True)
def expected_average_precision(hist_all, hist_rel, topk):
    """Per query, the expected AP@topk over random orders of tied items. AP@K = (1 / relevant items in the
    top K) x sum of the precision at each of their ranks; 0 for a query with none in the top K."""
    nq, buckets = hist_all.shape
    n_total = 0
    for d in range(buckets):
        n_total += hist_all[0, d] if nq else 0
    harmonic = _harmonic(max(n_total, 1))
    topk = min(topk, n_total)
    out = np.zeros(nq, dtype=np.float64)
    for q in range(nq):
        before = 0      # B: items at smaller distances
        before_rel = 0  # R: relevant items at smaller distances
        total = 0.0     # expected sum of precisions at relevant ranks in the buckets wholly inside the top K
        ap = -1.0
        for d in range(buckets):
            n = hist_all[q, d]
            r = hist_rel[q, d]
            if n == 0:
                continue
            if before + n <= topk:  # the whole bucket is in the top K
                if r > 0:
                    slope = (r - 1) / (n - 1) if n > 1 else 0.0
                    span = harmonic[before + n] - harmonic[before]
                    total += r / n * ((before_rel + 1 - slope * (before + 1)) * span + slope * n)
                before += n
                before_rel += r
                if before == topk:
                    break
                continue
            # the cut-off falls inside this bucket: m of its n items are ranked, X ~ Hypergeometric(n, r, m) of
            # them relevant; given X = x, E[sum of precisions over these m positions] = a x + b x (x - 1)
            m = topk - before
            span = harmonic[before + m] - harmonic[before]
            a = (before_rel + 1) * span / m
            b = (m - (before + 1) * span) / (m * (m - 1)) if m > 1 else 0.0
            lo = max(0, m - (n - r))
            hi = min(m, r)
            log_all = _log_choose(n, m)
            ap = 0.0
            for x in range(lo, hi + 1):
                if before_rel + x == 0:
                    continue
                p = math.exp(_log_choose(r, x) + _log_choose(n - r, m - x) - log_all)
                ap += p * (total + a * x + b * x * (x - 1)) / (before_rel + x)
            break
        if ap < 0.0:  # the top K ends at a bucket boundary: the count of relevant items in it is fixed
            ap = total / before_rel if before_rel > 0 else 0.0
        out[q] = ap
    return out


@numba.njit(cache=True)
def expected_hits(hist_all, hist_rel, ns):
    """Per query and cut-off N: the expected number of relevant items among the first N."""
    nq, buckets = hist_all.shape
    out = np.zeros((nq, ns.shape[0]), dtype=np.float64)
    for q in range(nq):
        j = 0
        before = 0
        before_rel = 0
        for d in range(buckets):
            n = hist_all[q, d]
            while j < ns.shape[0] and ns[j] <= before + n:
                if n > 0:
                    out[q, j] = before_rel + (ns[j] - before) * hist_rel[q, d] / n
                else:
                    out[q, j] = before_rel
                j += 1
            before += n
            before_rel += hist_rel[q, d]
        while j < ns.shape[0]:  # N beyond the database: every relevant item
            out[q, j] = before_rel
            j += 1
    return out
