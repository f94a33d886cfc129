"""The retrieval kernels: one pass over the database per query, no sort, no distance matrix.

Distances are integers 0..bits, so everything a metric needs that does not depend on the order of
tied items is in two histograms per query: database items at each distance, and relevant items at
each distance. :func:`histogram_kernel` builds both in one pass, one increment per item (the two
counts share one int64: all items in the low 32 bits, relevant ones in the high 32). The expected
metrics over random orders of tied items follow from the histograms alone (:mod:`.expected`).

The stable ranking (ties broken by database order) needs more: the rank of an item is the number of
items at a smaller distance plus the number at the same distance up to and including it.
:func:`stable_kernel` notes, for each relevant item, its distance and its position among the items at
that distance so far (branch-free: every item writes its note, only a relevant one advances the
cursor); the ranks follow from the histograms without a second pass over the database.

Codes of up to 64 bits with up to 64 classes (one word each: CIFAR-10, Flickr25K, NUS-WIDE at every
usual code length) take the one-word variants: no inner loops over words, buffers allocated once per
chunk of queries. Memory is O(database) per chunk of queries (a few chunks a thread) for the stable kernel,
O(bits) for the histograms.
"""

from __future__ import annotations

import numba
import numpy as np

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
RELEVANT = np.int64(1) << np.int64(32)  # a relevant item's increment of the shared counter
LOW = np.int64(0xFFFFFFFF)


@numba.njit(inline="always", cache=True)
def _popcount(x):
    # SWAR popcount; LLVM lowers this pattern to the POPCNT instruction on the host CPU.
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@numba.njit(inline="always")
def _distance(query_words, db_words, q, i):
    d = np.int64(0)
    for w in range(query_words.shape[1]):
        d += np.int64(_popcount(query_words[q, w] ^ db_words[i, w]))
    return d


@numba.njit(inline="always")
def _relevant(query_labels, db_labels, q, i):
    r = np.uint64(0)
    for w in range(query_labels.shape[1]):
        r |= query_labels[q, w] & db_labels[i, w]
    return np.int64(r != 0)


@numba.njit(parallel=True, cache=True)
def histogram_kernel(query_words, db_words, query_labels, db_labels, bits, chunks):
    """(hist_all, hist_rel): per query, database items and relevant items at each distance 0..bits."""
    nq = query_words.shape[0]
    n = db_words.shape[0]
    hist_all = np.zeros((nq, bits + 1), dtype=np.int64)
    hist_rel = np.zeros((nq, bits + 1), dtype=np.int64)
    one_word = query_words.shape[1] == 1 and query_labels.shape[1] == 1
    dbw = db_words[:, 0].copy()
    dbl = db_labels[:, 0].copy()
    per = (nq + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        h = np.zeros(bits + 1, dtype=np.int64)
        for q in range(chunk * per, min(nq, (chunk + 1) * per)):
            h[:] = 0
            if one_word:
                qw = query_words[q, 0]
                ql = query_labels[q, 0]
                for i in range(n):
                    h[np.int64(_popcount(qw ^ dbw[i]))] += 1 + (np.int64((ql & dbl[i]) != 0) << 32)
            else:
                for i in range(n):
                    h[_distance(query_words, db_words, q, i)] += 1 + (_relevant(query_labels, db_labels, q, i) << 32)
            for d in range(bits + 1):
                hist_all[q, d] = h[d] & LOW
                hist_rel[q, d] = h[d] >> 32
    return hist_all, hist_rel


@numba.njit(inline="always")
def _stable_average_precision(h, note, k, bits, topk):
    """AP@topk in the stable ranking, from the all-items histogram and the notes of the k relevant items
    (distance << 32 | position among the items at that distance, in database order)."""
    hr = np.zeros(bits + 1, dtype=np.int64)
    for j in range(k):
        hr[note[j] >> 32] += 1
    before_all = np.zeros(bits + 1, dtype=np.int64)
    before_rel = np.zeros(bits + 1, dtype=np.int64)
    for d in range(1, bits + 1):
        before_all[d] = before_all[d - 1] + h[d - 1]
        before_rel[d] = before_rel[d - 1] + hr[d - 1]
    seen = np.zeros(bits + 1, dtype=np.int64)
    total = 0.0
    count = 0
    for j in range(k):
        d = note[j] >> 32
        seen[d] += 1
        rank = before_all[d] + (note[j] & LOW)
        if rank <= topk:
            total += (before_rel[d] + seen[d]) / rank
            count += 1
    return total / count if count > 0 else 0.0


@numba.njit(parallel=True, cache=True)
def stable_kernel(query_words, db_words, query_labels, db_labels, bits, topk, chunks):
    """Per query, AP@topk with ties broken by database order (a stable sort), the convention of code that
    sorts stably by index; a query with no relevant item in the top K has AP 0."""
    nq = query_words.shape[0]
    n = db_words.shape[0]
    ap = np.zeros(nq, dtype=np.float64)
    one_word = query_words.shape[1] == 1 and query_labels.shape[1] == 1
    dbw = db_words[:, 0].copy()
    dbl = db_labels[:, 0].copy()
    per = (nq + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        note = np.empty(n + 1, dtype=np.int64)
        h = np.zeros(bits + 1, dtype=np.int64)
        for q in range(chunk * per, min(nq, (chunk + 1) * per)):
            h[:] = 0
            k = 0
            if one_word:
                qw = query_words[q, 0]
                ql = query_labels[q, 0]
                for i in range(n):
                    d = np.int64(_popcount(qw ^ dbw[i]))
                    c = h[d] + 1
                    h[d] = c
                    note[k] = (d << 32) | c  # branch-free: always written, kept only when the item is relevant
                    k += np.int64((ql & dbl[i]) != 0)
            else:
                for i in range(n):
                    d = _distance(query_words, db_words, q, i)
                    c = h[d] + 1
                    h[d] = c
                    note[k] = (d << 32) | c
                    k += _relevant(query_labels, db_labels, q, i)
            ap[q] = _stable_average_precision(h, note, k, bits, topk)
    return ap
