"""Unsupervised baselines for the tables: pooled convolutional features + PCA + ITQ, no training.

``crow_itq`` (CroW pooling) and ``pwa_itq`` (part-based weighted aggregation) are the codes that
`hashlab index build --features crow|pwa` makes, fitted here on the protocol's training set and
evaluated like any method (query set against database, validation for nothing: there is nothing
to select). Run them with ``--trainer.max_epochs 0``: the fit is a closed-form PCA + ITQ in setup.
"""

from __future__ import annotations

import torch
from torch import nn

from hashlab.methods.base import HashingModule
from hashlab.search.pooling import pool, select_part_channels
from hashlab.search.quantize import fit_quantizer


class PooledMap(nn.Module):
    """Images -> the pooled descriptor of the backbone's last map (what frozen mode caches)."""

    def __init__(self, backbone, pooling: str, parts: int = 8):
        super().__init__()
        self.backbone, self.pooling, self.parts = backbone, pooling, parts
        self.cache_name = f"{backbone.name}-{pooling}" + (f"{parts}" if pooling == "pwa" else "")
        self.register_buffer("part_channels", torch.empty(0, dtype=torch.long))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.backbone.feature_map(images)
        if self.pooling == "pwa" and not len(self.part_channels):
            self.part_channels = select_part_channels(maps.clamp_min(0).sum(dim=(2, 3)), self.parts).to(maps.device)
        return pool(maps, self.pooling, self.part_channels if self.pooling == "pwa" else None,
                    self.backbone.classifier)


class ITQProjection(nn.Module):
    """x -> (x - mean) @ projection: PCA to the leading `bits` directions, rotated by ITQ."""

    def __init__(self, bits: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("projection", torch.zeros(0, bits))

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
        train = data.features[torch.as_tensor(data.split.train)].float().numpy()
        quantizer = fit_quantizer(train, self.bits, "itq")
        projection = quantizer.components.T @ quantizer.projection  # (D, bits)
        self.head.mean = torch.as_tensor(quantizer.mean, device=self.device)
        self.head.projection = torch.as_tensor(projection, device=self.device)

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
