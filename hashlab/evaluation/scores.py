"""The numbers a run record keeps, from its evaluated codes: what training writes and what `hashlab rescore`
recomputes from a committed codes.npz, by the one function below so that the two never differ."""

from __future__ import annotations

import numpy as np

from hashlab.evaluation.metrics import evaluate_retrieval, mean_average_precision

# what a record's "evaluation" field says: records without it were scored with ties in database order
EVALUATION = {"ties": "expected over random orders of tied items (order-free)", "version": 2}


UNSEEN, SEEN, VALIDATION = 0, 1, 2  # what a database item was to the model: never used, trained on, selected on


def score_codes(query_codes, database_codes, query_labels, database_labels, database_part=None,
                topks=(1000,)) -> tuple[dict, dict]:
    """(metrics, curves) of one run. metrics: ``map`` (order-free mAP@all, the headline), ``map_stable`` (ties
    by database order), ``precision_h2``, ``map_at_K`` for each K; with ``database_part`` (per database item:
    UNSEEN, SEEN for the training images, VALIDATION for the items model selection looked at) and both a seen
    and an unseen part present, ``map_seen`` and ``map_unseen``: mAP@all against each part of the database
    alone (the validation items belong to neither). curves: precision-recall by Hamming radius and precision@N."""
    report = evaluate_retrieval(query_codes, database_codes, query_labels, database_labels, stable=True)
    metrics = report.summary()
    for k in topks:
        metrics[f"map_at_{k}"] = report.mean_average_precision(k)
    if database_part is not None:
        part = np.asarray(database_part)
        seen, unseen = part == SEEN, part == UNSEEN
        if seen.any() and unseen.any():
            for name, mask in (("map_seen", seen), ("map_unseen", unseen)):
                metrics[name] = mean_average_precision(query_codes, _rows(database_codes, mask), query_labels,
                                                       _rows(database_labels, mask))
    curves = {"pr_by_radius": {k: v.tolist() for k, v in report.pr_curve_by_radius().items()},
              "precision_at_n": {k: v.tolist() for k, v in report.precision_at_n().items()}}
    return metrics, curves


def _rows(array, mask: np.ndarray):
    if hasattr(array, "detach"):
        import torch
        return array[torch.from_numpy(mask)]
    return np.asarray(array)[mask]
