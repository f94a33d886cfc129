"""Exact, fast, order-free retrieval evaluation for binary codes (see docs/evaluation.md)."""

from hashlab.evaluation.codes import PackedCodes, pack_codes, pack_labels
from hashlab.evaluation.metrics import RetrievalReport, evaluate_retrieval, mean_average_precision
from hashlab.evaluation.torchmetric import HashingRetrievalMetric

__all__ = [
    "PackedCodes", "pack_codes", "pack_labels", "RetrievalReport", "evaluate_retrieval",
    "mean_average_precision", "HashingRetrievalMetric",
]
