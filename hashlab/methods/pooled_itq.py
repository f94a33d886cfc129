"""Unsupervised baselines for the tables: pooled convolutional features + PCA + ITQ, no training.

``crow_itq`` (CroW pooling) and ``pwa_itq`` (part-based weighted aggregation) are the codes that
`hashlab index build --features crow|pwa` makes, fitted here on the protocol's training set and
evaluated like any method. Run them with ``--trainer.max_epochs 0``: the fit is a closed-form
PCA + ITQ in setup (hashlab/methods/closed_form.py).
"""

from __future__ import annotations

from torch import nn

from hashlab.features.pooling import PooledMap
from hashlab.features.quantize import fit_quantizer
from hashlab.methods.closed_form import ClosedFormHashing


def fit_itq(head, features, bits: int, method: str = "itq") -> None:
    """PCA + ITQ (or LSH) on these features, the search index's quantizer folded into one projection."""
    quantizer = fit_quantizer(features, bits, method)
    head.set(quantizer.mean, quantizer.components.T @ quantizer.projection)


class PooledITQ(ClosedFormHashing):
    kind = "unsupervised"  # no labels: pooled features, PCA and ITQ
    pooling = "crow"

    def build_extractor(self) -> nn.Module:
        return PooledMap(self.backbone, self.pooling)

    def fit_head(self, features, labels) -> None:
        fit_itq(self.head, features, self.bits)


class CrowITQ(PooledITQ):
    method_id = "crow_itq"
    display_name = "CroW+ITQ"  # in tables and figures
    pooling = "crow"


class PwaITQ(PooledITQ):
    method_id = "pwa_itq"
    display_name = "PWA+ITQ"  # in tables and figures
    pooling = "pwa"
