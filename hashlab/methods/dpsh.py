"""DPSH: deep pairwise-supervised hashing (Li, Wang & Kang, IJCAI 2016). The negative log-likelihood of
the pairwise labels under p(s_ij = 1) = sigmoid(theta_ij), theta_ij = <u_i, u_j> / 2, plus eta times
the quantization error |u - sign(u)|^2. Multi-label data: s_ij = 1 when two items share a label."""

from __future__ import annotations

import torch

from hashlab.losses import label_overlap_similarity, pairwise_likelihood_loss, quantization_loss
from hashlab.losses.baselines import off_diagonal
from hashlab.methods.base import HashingModule


class DPSH(HashingModule):
    method_id = "dpsh"

    def __init__(self, *args, eta: float = 0.1, **kwargs):
        """eta: weight of the quantization term."""
        super().__init__(*args, **kwargs)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        mask = off_diagonal(len(codes), codes.device)
        likelihood = pairwise_likelihood_loss(codes, label_overlap_similarity(labels, labels), mask, 0.5)
        quantization = quantization_loss(codes)
        return likelihood + self.hparams.eta * quantization, {"likelihood": likelihood, "quantization": quantization}
