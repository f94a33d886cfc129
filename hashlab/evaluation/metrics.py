"""Retrieval metrics for hash codes: mAP@K, tie-aware mAP, precision@N, PR by Hamming radius.

Definitions are in docs/evaluation.md. Everything is computed from one kernel pass
(:func:`hashlab.evaluation.kernel.retrieval_kernel`), so asking for every metric costs the same
as asking for mAP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hashlab.evaluation.codes import pack_codes, pack_labels
from hashlab.evaluation.kernel import one_word_kernel, retrieval_kernel

DEFAULT_CURVE_NS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
MAX_BITS = 127  # the kernel keeps a distance and a relevance flag in one byte


@dataclass
class RetrievalReport:
    """Per-query statistics of one retrieval run, from which every metric is derived."""

    bits: int
    num_database: int
    topk: int
    average_precision: np.ndarray  # (nq,) stable AP@topk
    hist_all: np.ndarray  # (nq, bits+1) database items at each Hamming distance
    hist_relevant: np.ndarray  # (nq, bits+1) relevant items at each distance
    curve_ns: np.ndarray  # (m,) cut-offs of the precision@N curve
    hits_at_n: np.ndarray  # (nq, m) relevant items within the first N
    extras: dict = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        return len(self.average_precision)

    def mean_average_precision(self) -> float:
        return float(self.average_precision.mean()) if self.num_queries else 0.0

    def tie_aware_mean_average_precision(self) -> float:
        """Expected AP over random orders inside tied distances (He et al., CVPR 2018), whole database."""
        n_d = self.hist_all.astype(np.float64)
        r_d = self.hist_relevant.astype(np.float64)
        before = np.cumsum(n_d, axis=1) - n_d  # items at smaller distance
        before_rel = np.cumsum(r_d, axis=1) - r_d
        harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, self.num_database + 1))])
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(n_d > 1, (r_d - 1) / np.maximum(n_d - 1, 1), 0.0)
            start = before.astype(np.int64)
            harmonic_span = harmonic[start + n_d.astype(np.int64)] - harmonic[start]
            # sum over t in (before, before + n_d] of (before_rel + 1 + slope * (t - before - 1)) / t
            inner = (before_rel + 1 - slope * (before + 1)) * harmonic_span + slope * n_d
            group = np.where(r_d > 0, r_d / np.maximum(n_d, 1) * inner, 0.0)
        total_rel = r_d.sum(axis=1)
        ap = np.where(total_rel > 0, group.sum(axis=1) / np.maximum(total_rel, 1), 0.0)
        return float(ap.mean()) if self.num_queries else 0.0

    def pr_curve_by_radius(self) -> dict[str, np.ndarray]:
        """Mean precision and recall of the items within Hamming radius r, for r = 0..bits."""
        within = np.cumsum(self.hist_all, axis=1)
        within_rel = np.cumsum(self.hist_relevant, axis=1)
        total_rel = self.hist_relevant.sum(axis=1, keepdims=True)
        precision = np.divide(within_rel, within, out=np.zeros(within.shape), where=within > 0)
        recall = np.divide(within_rel, total_rel, out=np.zeros(within.shape), where=total_rel > 0)
        return {"radius": np.arange(self.bits + 1), "precision": precision.mean(axis=0),
                "recall": recall.mean(axis=0)}

    def precision_within_radius(self, radius: int = 2) -> float:
        """Mean precision of the items within Hamming radius ``radius``; a query that retrieves nothing counts 0."""
        return float(self.pr_curve_by_radius()["precision"][min(radius, self.bits)])

    def precision_at_n(self) -> dict[str, np.ndarray]:
        """Mean precision of the first N items in the stable ranking, for each N of ``curve_ns``."""
        return {"n": self.curve_ns, "precision": (self.hits_at_n / self.curve_ns).mean(axis=0)}

    def summary(self) -> dict[str, float]:
        return {
            "map": self.mean_average_precision(),
            "map_tie_aware": self.tie_aware_mean_average_precision(),
            "precision_h2": self.precision_within_radius(2),
        }


def evaluate_retrieval(query_codes, database_codes, query_labels, database_labels,
                       topk: int | None = None, curve_ns=DEFAULT_CURVE_NS) -> RetrievalReport:
    """Rank the database for every query by Hamming distance (stable) and collect the statistics.

    Codes: +-1 or {0,1} arrays (numpy or torch, (n, bits)) or :class:`PackedCodes`.
    Labels: one-hot / multi-hot (n, C) or integer class ids (n,); relevant = sharing a label.
    ``topk=None`` ranks the whole database.
    """
    query = pack_codes(query_codes, "query_codes")
    database = pack_codes(database_codes, "database_codes")
    if query.bits != database.bits:
        raise ValueError(f"query codes have {query.bits} bits but database codes have {database.bits} bits")
    if query.bits > MAX_BITS:
        raise ValueError(f"{query.bits} bits: the evaluation engine supports at most {MAX_BITS} bits")
    num_classes = _num_classes(query_labels, database_labels)
    q_labels = pack_labels(query_labels, num_classes, "query_labels")
    db_labels = pack_labels(database_labels, num_classes, "database_labels")
    for codes, labels, name in ((query, q_labels, "query"), (database, db_labels, "database")):
        if len(codes) != labels.shape[0]:
            raise ValueError(f"{name}: {len(codes)} codes but {labels.shape[0]} label rows")
    n = len(database)
    if topk is not None and topk <= 0:
        raise ValueError(f"topk must be positive or None (whole database), got {topk}")
    k = n if topk is None else min(int(topk), n)
    ns = np.asarray(sorted({min(int(c), n) for c in curve_ns if c > 0}) or [n], dtype=np.int64)
    q_words, db_words = query.words(), database.words()
    if q_words.shape[1] == 1 and q_labels.shape[1] == 1 and n < 2 ** 31:
        import numba
        chunks = max(1, min(len(q_words), 4 * numba.get_num_threads()))  # a few per thread: balanced under load
        ap, _, hist_all, hist_rel, hits = one_word_kernel(q_words, db_words, q_labels, db_labels, query.bits, k, ns,
                                                          chunks)
    else:
        ap, _, hist_all, hist_rel, hits = retrieval_kernel(q_words, db_words, q_labels, db_labels, query.bits, k, ns)
    return RetrievalReport(query.bits, n, k, ap, hist_all, hist_rel, ns, hits)


def mean_average_precision(query_codes, database_codes, query_labels, database_labels,
                           topk: int | None = None) -> float:
    """mAP@topk with the database ranked by Hamming distance, ties broken by database order."""
    return evaluate_retrieval(query_codes, database_codes, query_labels, database_labels,
                              topk=topk, curve_ns=(1,)).mean_average_precision()


def tie_aware_mean_average_precision(query_codes, database_codes, query_labels, database_labels) -> float:
    """Expected mAP over random orders inside tied distances (whole database)."""
    return evaluate_retrieval(query_codes, database_codes, query_labels, database_labels,
                              curve_ns=(1,)).tie_aware_mean_average_precision()


def _num_classes(*labels) -> int | None:
    """Integer class ids of query and database must be one-hot encoded with the same width."""
    ids = [np.asarray(lab.detach().cpu() if hasattr(lab, "detach") else lab) for lab in labels]
    if all(a.ndim == 1 for a in ids):
        return int(max(a.max(initial=-1) for a in ids)) + 1
    return None
