"""Retrieval metrics for hash codes: mAP@K, precision@N, PR by Hamming radius, precision within radius 2.

Every headline metric is order-free: the expectation over random orders of the items tied at the same
Hamming distance (:mod:`hashlab.evaluation.expected`), so it depends on the codes alone, never on the
order the database happens to be stored in. The stable figure (ties broken by database order, what code
that sorts stably by index reports) is there on request as ``ties="database"``. Definitions are in
docs/evaluation.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashlab.evaluation.codes import pack_codes, pack_labels
from hashlab.evaluation.expected import expected_average_precision, expected_hits
from hashlab.evaluation.kernel import histogram_kernel, stable_kernel

DEFAULT_CURVE_NS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
MAX_BITS = 127  # the codes' words and the buckets of a query's histograms are sized for it
TIES = ("random", "database")


@dataclass
class RetrievalReport:
    """Per query, the database items and the relevant items at each Hamming distance: every order-free
    metric follows from these two histograms. ``stable_average_precision`` (AP@all with ties broken by
    database order) is there when it was asked for."""

    bits: int
    num_database: int
    hist_all: np.ndarray       # (nq, bits+1) database items at each distance
    hist_relevant: np.ndarray  # (nq, bits+1) relevant items at each distance
    stable_average_precision: np.ndarray | None = None  # (nq,)

    @property
    def num_queries(self) -> int:
        return self.hist_all.shape[0]

    def average_precision(self, topk: int | None = None) -> np.ndarray:
        """Per query, the expected AP@topk over random orders of tied items (``None``: the whole database)."""
        if topk is not None and int(topk) <= 0:
            raise ValueError(f"topk must be positive or None (whole database), got {topk}")
        if self.num_database == 0:  # nothing to retrieve: every AP is 0
            return np.zeros(self.num_queries)
        k = self.num_database if topk is None else int(topk)
        return expected_average_precision(self.hist_all, self.hist_relevant, k)

    def mean_average_precision(self, topk: int | None = None) -> float:
        """mAP@topk, order-free (the headline metric); ``None``: mAP@all."""
        return float(self.average_precision(topk).mean()) if self.num_queries else 0.0

    def stable_mean_average_precision(self) -> float:
        """mAP@all with ties broken by database order: the figure of code that sorts stably by index."""
        if self.stable_average_precision is None:
            raise ValueError("this report has no stable-order AP: evaluate with evaluate_retrieval(..., stable=True)")
        return float(self.stable_average_precision.mean()) if self.num_queries else 0.0

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

    def precision_at_n(self, curve_ns=DEFAULT_CURVE_NS) -> dict[str, np.ndarray]:
        """Expected precision of the first N items, for each N of ``curve_ns`` (clipped to the database)."""
        ns = np.asarray(sorted({min(int(c), self.num_database) for c in curve_ns if c > 0} - {0}) or [1],
                        dtype=np.int64)
        hits = expected_hits(self.hist_all, self.hist_relevant, ns)
        return {"n": ns, "precision": (hits / ns).mean(axis=0)}

    def summary(self) -> dict[str, float]:
        out = {"map": self.mean_average_precision(), "precision_h2": self.precision_within_radius(2)}
        if self.stable_average_precision is not None:
            out["map_stable"] = self.stable_mean_average_precision()
        return out


def _prepared(query_codes, database_codes, query_labels, database_labels):
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
    if len(database) >= 2 ** 31:
        raise ValueError(f"{len(database)} database items: the evaluation engine counts at most 2**31 - 1")
    return query.words(), database.words(), q_labels, db_labels, query.bits


def _chunks(num_queries: int) -> int:
    import numba
    return max(1, min(num_queries, 4 * numba.get_num_threads()))  # a few per thread: balanced under load


def evaluate_retrieval(query_codes, database_codes, query_labels, database_labels,
                       stable: bool = False) -> RetrievalReport:
    """Count, for every query, the database items and the relevant ones at each Hamming distance.

    Codes: +-1 or {0,1} arrays (numpy or torch, (n, bits)) or :class:`PackedCodes`.
    Labels: one-hot / multi-hot (n, C) or integer class ids (n,); relevant = sharing a label.
    ``stable=True`` also ranks with ties broken by database order, for ``map_stable``.
    """
    q_words, db_words, q_labels, db_labels, bits = _prepared(query_codes, database_codes, query_labels,
                                                             database_labels)
    chunks = _chunks(len(q_words))
    hist_all, hist_rel = histogram_kernel(q_words, db_words, q_labels, db_labels, bits, chunks)
    stable_ap = (stable_kernel(q_words, db_words, q_labels, db_labels, bits, len(db_words), chunks)
                 if stable else None)
    return RetrievalReport(bits, len(db_words), hist_all, hist_rel, stable_ap)


def mean_average_precision(query_codes, database_codes, query_labels, database_labels,
                           topk: int | None = None, ties: str = "random") -> float:
    """mAP@topk of the Hamming ranking (``None``: the whole database). ``ties="random"`` (the default): the
    expectation over random orders of tied items, which depends on the codes alone. ``ties="database"``:
    ties broken by database order, as code that sorts stably by index does."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if topk is not None and topk <= 0:
        raise ValueError(f"topk must be positive or None (whole database), got {topk}")
    if ties == "random":
        return evaluate_retrieval(query_codes, database_codes, query_labels,
                                  database_labels).mean_average_precision(topk)
    q_words, db_words, q_labels, db_labels, bits = _prepared(query_codes, database_codes, query_labels,
                                                             database_labels)
    k = len(db_words) if topk is None else min(int(topk), len(db_words))
    ap = stable_kernel(q_words, db_words, q_labels, db_labels, bits, k, _chunks(len(q_words)))
    return float(ap.mean()) if len(ap) else 0.0


def _num_classes(*labels) -> int | None:
    """Integer class ids of query and database must be one-hot encoded with the same width."""
    ids = [np.asarray(lab.detach().cpu() if hasattr(lab, "detach") else lab) for lab in labels]
    if all(a.ndim == 1 for a in ids):
        return int(max(a.max(initial=-1) for a in ids)) + 1
    return None
