"""What every closed-form baseline shares: codes = sign(projection of cached features), the projection
fitted in setup on the training set's cached features, no epochs (run with --trainer.max_epochs 0).
A method file says how to fit (:meth:`ClosedFormHashing.fit_head`) and, where it differs, what
features it reads (:meth:`build_extractor`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashlab.errors import ConfigError
from hashlab.methods.base import HashingModule


class LinearCodes(nn.Module):
    """x -> (x - mean) @ projection, both fitted; buffers, so checkpoints carry them."""

    def __init__(self, bits: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("projection", torch.zeros(0, bits))

    def set(self, mean: np.ndarray, projection: np.ndarray) -> None:
        self.mean = torch.as_tensor(np.asarray(mean, np.float32), device=self.mean.device)
        self.projection = torch.as_tensor(np.asarray(projection, np.float32), device=self.mean.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.mean):
            raise RuntimeError("the projection is not fitted yet (it is fitted in setup, on the training set)")
        return (x.float() - self.mean) @ self.projection


class ClosedFormHashing(HashingModule):
    kind = "closed-form"  # fitted once on frozen features: no epochs, nothing to tune
    def build_head(self, feature_dim: int) -> nn.Module:
        return LinearCodes(self.bits)

    def fit_head(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Fit ``self.head`` (call ``self.head.set(mean, projection)``) on the training set's features."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if len(self.head.mean):
            return
        data = self.trainer.datamodule
        if data.features is None or self.hparams.mode != "frozen":
            raise ConfigError(f"model.mode = {self.hparams.mode}: {self.method_id} is fitted in closed form on "
                              "cached features; use model.mode frozen")
        train = torch.as_tensor(data.split.train)
        self.fit_head(data.features[train].float().flatten(1).numpy(), data.source.labels[data.split.train])

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        for name, value in checkpoint["state_dict"].items():  # fitted buffers: shapes known only from the file
            owner, _, attribute = name.rpartition(".")
            module = self.get_submodule(owner) if owner else self
            if attribute in module._buffers and module._buffers[attribute].shape != value.shape:
                module._buffers[attribute] = torch.zeros_like(value)

    def hash_loss(self, codes, labels, features, indices):
        raise ConfigError(f"{self.method_id} has nothing to train: run it with --trainer.max_epochs 0")

    def configure_optimizers(self):
        return None  # closed-form fit in setup
