"""HashNet (Cao, Long, Wang & Yu, ICCV 2017): codes h = tanh(beta z) with beta raised during training
(continuation: beta = (1 + 0.005 step)^0.5, so h approaches sign(z)), and a weighted pairwise
cross-entropy on theta = alpha <h_i, h_j> in which similar and dissimilar pairs weigh as much in total
(the data imbalance of similar pairs). Multi-label data: similar = sharing a label."""

from __future__ import annotations

import torch

from hashlab.losses import label_overlap_similarity
from hashlab.losses.baselines import continuation_beta, weighted_pairwise_cross_entropy
from hashlab.methods.base import HashingModule


class HashNet(HashingModule):
    method_id = "hashnet"
    display_name = "HashNet"  # in tables and figures

    def __init__(self, *args, alpha: float | None = None, continuation_step: float = 0.005, **kwargs):
        """alpha: the scale of theta (default 10 / bits, so theta spans [-10, 10]). continuation_step: gamma
        of beta = (1 + gamma * step) ** 0.5."""
        super().__init__(*args, **kwargs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        beta = continuation_beta(self.global_step if self._trainer else 0, self.hparams.continuation_step)
        return torch.tanh(beta * self.head(self.embed(inputs)))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.extract(images)))  # the sign is all that counts at test time

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None):
        return self.hash_loss(self(inputs), labels, None, indices)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        alpha = self.hparams.alpha or 10 / codes.shape[1]
        loss = weighted_pairwise_cross_entropy(codes, label_overlap_similarity(labels, labels), alpha)
        return loss, {"weighted_cross_entropy": loss}
