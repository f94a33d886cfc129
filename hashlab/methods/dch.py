"""DCH: deep Cauchy hashing (Cao, Long, Liu & Wang, CVPR 2018). The probability that a pair is similar
is a Cauchy function of its normalised Hamming distance d = bits / 2 (1 - cos(h_i, h_j)),
gamma / (gamma + d); the loss is its weighted cross-entropy (similar and dissimilar pairs weigh as much
in total) plus lambda times a Cauchy quantization loss log(1 + d(|h|, 1) / gamma). Codes: tanh.
Multi-label data: similar = sharing a label."""

from __future__ import annotations

import torch

from hashlab.losses import label_overlap_similarity
from hashlab.losses.baselines import cauchy_pairwise_loss, cauchy_quantization_loss
from hashlab.methods.base import HashingModule


class DCH(HashingModule):
    method_id = "dch"
    display_name = "DCH"  # in tables and figures
    tanh_codes = True

    def __init__(self, *args, gamma: float = 20.0, quantization_weight: float = 0.1, **kwargs):
        """gamma: the Cauchy scale (the paper's 20); quantization_weight: lambda (0.1, unconfirmed: docs/methods/dch.md)."""
        super().__init__(*args, **kwargs)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        pairwise = cauchy_pairwise_loss(codes, label_overlap_similarity(labels, labels), self.hparams.gamma)
        quantization = cauchy_quantization_loss(codes, self.hparams.gamma)
        total = pairwise + self.hparams.quantization_weight * quantization
        return total, {"cauchy": pairwise, "quantization": quantization}
