"""The numbers a run record keeps, from its evaluated codes: what training writes and what `hashlab rescore`
recomputes from a committed codes.npz, by the one function below so that the two never differ."""

from __future__ import annotations

import numpy as np

from hashlab.evaluation.metrics import evaluate_retrieval, mean_average_precision

# what a record's "evaluation" field says: records without it were scored with ties in database order
EVALUATION = {"ties": "expected over random orders of tied items (order-free)", "version": 2}


def score_codes(query_codes, database_codes, query_labels, database_labels, database_seen=None,
                topks=(1000,)) -> tuple[dict, dict]:
    """(metrics, curves) of one run. metrics: ``map`` (order-free mAP@all, the headline), ``map_stable`` (ties
    by database order), ``precision_h2``, ``map_at_K`` for each K; with ``database_seen`` (True for database
    items the model trained on) and both parts present, ``map_seen`` and ``map_unseen``: mAP@all against each
    part of the database alone. curves: precision-recall by Hamming radius and precision@N."""
    report = evaluate_retrieval(query_codes, database_codes, query_labels, database_labels, stable=True)
    metrics = report.summary()
    for k in topks:
        metrics[f"map_at_{k}"] = report.mean_average_precision(k)
    if database_seen is not None:
        seen = np.asarray(database_seen, dtype=bool)
        if 0 < seen.sum() < len(seen):
            for name, part in (("map_seen", seen), ("map_unseen", ~seen)):
                metrics[name] = mean_average_precision(query_codes, _rows(database_codes, part), query_labels,
                                                       _rows(database_labels, part))
    curves = {"pr_by_radius": {k: v.tolist() for k, v in report.pr_curve_by_radius().items()},
              "precision_at_n": {k: v.tolist() for k, v in report.precision_at_n().items()}}
    return metrics, curves


def _rows(array, mask: np.ndarray):
    if hasattr(array, "detach"):
        import torch
        return array[torch.from_numpy(mask)]
    return np.asarray(array)[mask]
