"""Speed of the evaluation engine against a straightforward per-query argsort implementation.

Both compute the same stable mAP on the same random codes in one run (CIFAR-10 protocol size by
default: 1,000 queries x 59,000 database items x 64 bits, 10 classes) and the script prints the
times and the ratio. The engine's memory is bounded by design: one byte per database item per
thread, plus the packed codes.

    .venv/bin/python benchmarks/evaluation.py [--queries 1000 --database 59000 --bits 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hashlab.evaluation import evaluate_retrieval, mean_average_precision


def argsort_map(q, db, ql, dbl):
    """The textbook implementation: distances, a stable argsort per query, cumulative precision."""
    aps = np.zeros(len(q))
    bits = q.shape[1]
    for i in range(len(q)):
        dist = 0.5 * (bits - db @ q[i])
        order = np.argsort(dist, kind="stable")
        relevant = (dbl[order] @ ql[i]) > 0
        hits = np.cumsum(relevant)
        positions = np.flatnonzero(relevant)
        if len(positions):
            aps[i] = np.mean(hits[positions] / (positions + 1))
    return float(aps.mean())


def timed(fn, *args, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - start)
    return value, best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--database", type=int, default=59000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.choice([-1.0, 1.0], size=(args.classes, args.bits)).astype(np.float32)

    def sample(n):  # codes near class centers, so mAP is far from chance and ranks matter
        labels = rng.integers(0, args.classes, n)
        flip = rng.random((n, args.bits)) < 0.2
        return np.where(flip, -centers[labels], centers[labels]), np.eye(args.classes, dtype=np.float32)[labels]

    q, ql = sample(args.queries)
    db, dbl = sample(args.database)
    mean_average_precision(q[:2], db[:10], ql[:2], dbl[:10])  # compile the kernel outside the timing

    ours, t_ours = timed(mean_average_precision, q, db, ql, dbl)
    full, t_full = timed(lambda *a: evaluate_retrieval(*a).summary(), q, db, ql, dbl)
    ref, t_ref = timed(argsort_map, q, db, ql, dbl, repeat=1)
    print(f"problem: {args.queries} queries x {args.database} database x {args.bits} bits, {args.classes} classes")
    print(f"argsort reference : mAP {ref:.6f}  {t_ref:8.3f} s")
    print(f"hashlab engine    : mAP {ours:.6f}  {t_ours:8.3f} s")
    print(f"  all metrics     : mAP, tie-aware mAP, P@H<=2, PR, P@N in {t_full:.3f} s")
    print(f"same value        : |diff| = {abs(ours - ref):.1e} (summation order only)")
    print(f"speed-up          : {t_ref / t_ours:.1f}x")


if __name__ == "__main__":
    main()
