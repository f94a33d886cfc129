"""The retrieval kernel: one pass over the database per query, no sort, no distance matrix.

Distances are integers 0..bits, so the stable rank of an item (ties broken by database order)
is the number of items at a smaller distance plus the number at the same distance up to and
including it. One pass builds the per-distance histograms, a second pass walks the database in
order and reads each relevant item's rank off them. Memory is O(database) per thread.
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
    ncurve = curve_ns.shape[0]
    ap = np.zeros(nq, dtype=np.float64)
    relevant_in_topk = np.zeros(nq, dtype=np.int64)
    hist_all = np.zeros((nq, bits + 1), dtype=np.int64)
    hist_rel = np.zeros((nq, bits + 1), dtype=np.int64)
    hits_at_n = np.zeros((nq, ncurve), dtype=np.int64)
    for q in numba.prange(nq):
        # distance in the low 7 bits, relevance in the top bit: one byte per item to re-read
        item = np.empty(n, dtype=np.uint8)
        # four interleaved histograms break the store-to-load dependency between neighbours
        h4 = np.zeros((4, bits + 1), dtype=np.int64)
        r4 = np.zeros((4, bits + 1), dtype=np.int64)
        for i in range(n):
            d = np.uint64(0)
            for w in range(nw):
                d += _popcount(query_words[q, w] ^ db_words[i, w])
            is_rel = np.uint8(0)
            for w in range(nl):
                if query_labels[q, w] & db_labels[i, w]:
                    is_rel = np.uint8(1)
                    break
            item[i] = np.uint8(d) | (is_rel << np.uint8(7))
            h4[i & 3, d] += 1
            r4[i & 3, d] += is_rel
        h_all = h4[0] + h4[1] + h4[2] + h4[3]
        h_rel = r4[0] + r4[1] + r4[2] + r4[3]
        # items (all / relevant) at strictly smaller distance
        before_all = np.zeros(bits + 1, dtype=np.int64)
        before_rel = np.zeros(bits + 1, dtype=np.int64)
        for d in range(1, bits + 1):
            before_all[d] = before_all[d - 1] + h_all[d - 1]
            before_rel[d] = before_rel[d - 1] + h_rel[d - 1]
        seen_all = np.zeros(bits + 1, dtype=np.int64)
        seen_rel = np.zeros(bits + 1, dtype=np.int64)
        hit_bucket = np.zeros(ncurve + 1, dtype=np.int64)
        total = 0.0
        count = 0
        for i in range(n):
            d = item[i] & np.uint8(127)
            seen_all[d] += 1
            if item[i] & np.uint8(128):
                seen_rel[d] += 1
                rank = before_all[d] + seen_all[d]
                if rank <= topk:
                    total += (before_rel[d] + seen_rel[d]) / rank
                    count += 1
                # first curve point N with rank <= N
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
        hist_all[q] = h_all
        hist_rel[q] = h_rel
    return ap, relevant_in_topk, hist_all, hist_rel, hits_at_n
