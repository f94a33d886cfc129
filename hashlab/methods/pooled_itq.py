"""Unsupervised baselines for the tables: pooled convolutional features + PCA + ITQ, no training.

``crow_itq`` (CroW pooling) and ``pwa_itq`` (part-based weighted aggregation) are the codes that
`hashlab index build --features crow|pwa` makes, fitted here on the protocol's training set and
evaluated like any method (query set against database, validation for nothing: there is nothing
to select). Run them with ``--trainer.max_epochs 0``: the fit is a closed-form PCA + ITQ in setup.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashlab.methods.base import HashingModule
from hashlab.search.pooling import PooledMap
from hashlab.search.quantize import fit_quantizer


class ITQProjection(nn.Module):
    """x -> (x - mean) @ projection: PCA to the leading `bits` directions, rotated by ITQ."""

    def __init__(self, bits: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("projection", torch.zeros(0, bits))

    def fit(self, features: np.ndarray) -> None:
        """PCA + ITQ on these features: the search index's quantizer, folded into one projection."""
        quantizer = fit_quantizer(features, self.projection.shape[1], "itq")
        self.mean = torch.as_tensor(quantizer.mean, device=self.mean.device)
        self.projection = torch.as_tensor(quantizer.components.T @ quantizer.projection, device=self.mean.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.mean):
            raise RuntimeError("the ITQ projection is not fitted yet (it is fitted in setup, on the training set)")
        return (x.float() - self.mean) @ self.projection


class PooledITQ(HashingModule):
    pooling = "crow"

    def build_extractor(self) -> nn.Module:
        return PooledMap(self.backbone, self.pooling)

    def build_head(self, feature_dim: int) -> nn.Module:
        return ITQProjection(self.bits)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if len(self.head.mean):
            return
        data = self.trainer.datamodule
        if data.features is None:
            raise ValueError(f"{self.method_id} fits PCA + ITQ on cached features: use model.mode frozen")
        self.head.fit(data.features[torch.as_tensor(data.split.train)].float().numpy())

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        self.head.mean = torch.zeros_like(state["head.mean"])
        self.head.projection = torch.zeros_like(state["head.projection"])
        if "extractor.part_channels" in state:
            self.extractor.part_channels = torch.zeros_like(state["extractor.part_channels"])

    def hash_loss(self, codes, labels, features, indices):
        raise RuntimeError(f"{self.method_id} has nothing to train: run it with --trainer.max_epochs 0")

    def configure_optimizers(self):
        return None  # closed-form fit in setup


class CrowITQ(PooledITQ):
    method_id = "crow_itq"
    pooling = "crow"


class PwaITQ(PooledITQ):
    method_id = "pwa_itq"
    pooling = "pwa"
