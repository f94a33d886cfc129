"""The retrieval kernel: one pass over the database per query, no sort, no distance matrix.

Distances are integers 0..bits, so the stable rank of an item (ties broken by database order)
is the number of items at a smaller distance plus the number at the same distance up to and
including it. One pass builds the per-distance histograms and notes, for each relevant item, its
distance and its position among the items at that distance so far; the ranks follow from the
histograms without a second pass over the database (1.5x faster than two passes, benchmarks/).
The pass is branch-free: every item writes its note, and only a relevant one advances the cursor.
Memory is O(database) per thread.

Per database item: one histogram increment and one store of a packed note (distance << 32 | position
in its bucket), kept only when the item is relevant; the relevant histogram, the precisions and the hits
at each N come from a pass over the relevant items alone (:func:`_ranked_relevant`). Codes of up to 64
bits with up to 64 classes (one word each: CIFAR-10, Flickr25K, NUS-WIDE at every usual code length)
take :func:`one_word_kernel`: no inner loops over words, buffers allocated once per chunk of queries.
"""

from __future__ import annotations

import numba
import numpy as np

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@numba.njit(inline="always", cache=True)
def _popcount(x):
    # SWAR popcount; LLVM lowers this pattern to the POPCNT instruction on the host CPU.
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@numba.njit(inline="always")
def _outputs(nq, bits, ncurve):
    """(ap, relevant_in_topk, hist_all, hist_rel, hits_at_n), zeroed, for nq queries."""
    return (np.zeros(nq, dtype=np.float64), np.zeros(nq, dtype=np.int64), np.zeros((nq, bits + 1), dtype=np.int64),
            np.zeros((nq, bits + 1), dtype=np.int64), np.zeros((nq, ncurve), dtype=np.int64))


@numba.njit(inline="always")
def _ranked_relevant(h, note, k, bits, topk, curve_ns, q, ap, relevant_in_topk, hist_all, hist_rel, hits_at_n):
    """From the all-items histogram and the notes of the k relevant items (distance << 32 | position among
    the items at that distance, in database order): AP@topk, relevant histogram and hits at each N."""
    ncurve = curve_ns.shape[0]
    hr = np.zeros(bits + 1, dtype=np.int64)
    for j in range(k):
        hr[note[j] >> 32] += 1
    before_all = np.zeros(bits + 1, dtype=np.int64)
    before_rel = np.zeros(bits + 1, dtype=np.int64)
    for d in range(1, bits + 1):
        before_all[d] = before_all[d - 1] + h[d - 1]
        before_rel[d] = before_rel[d - 1] + hr[d - 1]
    seen = np.zeros(bits + 1, dtype=np.int64)
    hit_bucket = np.zeros(ncurve + 1, dtype=np.int64)
    total = 0.0
    count = 0
    for j in range(k):
        d = note[j] >> 32
        seen[d] += 1
        rank = before_all[d] + (note[j] & 0xFFFFFFFF)
        if rank <= topk:
            total += (before_rel[d] + seen[d]) / rank
            count += 1
        lo, hi = 0, ncurve
        while lo < hi:
            mid = (lo + hi) // 2
            if curve_ns[mid] >= rank:
                hi = mid
            else:
                lo = mid + 1
        hit_bucket[lo] += 1
    if count > 0:
        ap[q] = total / count
    relevant_in_topk[q] = count
    running = 0
    for j in range(ncurve):
        running += hit_bucket[j]
        hits_at_n[q, j] = running
    for d in range(bits + 1):
        hist_all[q, d] = h[d]
        hist_rel[q, d] = hr[d]


@numba.njit(parallel=True, cache=True)
def retrieval_kernel(query_words, db_words, query_labels, db_labels, bits, topk, curve_ns):
    """Per query: stable AP@topk, histograms of all/relevant items by distance, relevant counts in top-N.

    Returns (ap, relevant_in_topk, hist_all, hist_rel, hits_at_n) where hist_* have bits+1 columns and
    hits_at_n[q, j] is the number of relevant items in the first curve_ns[j] positions.
    """
    nq = query_words.shape[0]
    n = db_words.shape[0]
    nw = query_words.shape[1]
    nl = query_labels.shape[1]
    ap, relevant_in_topk, hist_all, hist_rel, hits_at_n = _outputs(nq, bits, curve_ns.shape[0])
    for q in numba.prange(nq):
        h = np.zeros(bits + 1, dtype=np.int64)
        # per relevant item, in database order: distance << 32 | its position among the items at that distance
        # so far; its stable rank is then before_all[d] + position, no second pass over the database
        note = np.empty(n + 1, dtype=np.int64)
        k = 0
        for i in range(n):
            d = np.int64(0)
            for w in range(nw):
                d += np.int64(_popcount(query_words[q, w] ^ db_words[i, w]))
            r = np.uint64(0)
            for w in range(nl):
                r |= query_labels[q, w] & db_labels[i, w]
            c = h[d] + 1
            h[d] = c
            note[k] = (d << 32) | c  # branch-free: always written, kept only for a relevant item
            k += np.int64(r != 0)
        _ranked_relevant(h, note, k, bits, topk, curve_ns, q, ap, relevant_in_topk, hist_all, hist_rel, hits_at_n)
    return ap, relevant_in_topk, hist_all, hist_rel, hits_at_n


@numba.njit(parallel=True, cache=True)
def one_word_kernel(query_words, db_words, query_labels, db_labels, bits, topk, curve_ns, chunks):
    """:func:`retrieval_kernel` for one-word codes and labels (<= 64 bits, <= 64 classes), same outputs.
    Queries are split in ``chunks`` (one per thread): each chunk allocates its buffers once."""
    nq = query_words.shape[0]
    n = db_words.shape[0]
    ap, relevant_in_topk, hist_all, hist_rel, hits_at_n = _outputs(nq, bits, curve_ns.shape[0])
    dbw = db_words[:, 0].copy()
    dbl = db_labels[:, 0].copy()
    per = (nq + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        note = np.empty(n + 1, dtype=np.int64)
        h = np.zeros(bits + 1, dtype=np.int64)
        for q in range(chunk * per, min(nq, (chunk + 1) * per)):
            h[:] = 0
            k = 0
            qw = query_words[q, 0]
            ql = query_labels[q, 0]
            for i in range(n):
                d = np.int64(_popcount(qw ^ dbw[i]))
                c = h[d] + 1
                h[d] = c
                note[k] = (d << 32) | c  # branch-free: always written, kept only when the item is relevant
                k += np.int64((ql & dbl[i]) != 0)
            _ranked_relevant(h, note, k, bits, topk, curve_ns, q, ap, relevant_in_topk, hist_all, hist_rel,
                             hits_at_n)
    return ap, relevant_in_topk, hist_all, hist_rel, hits_at_n
