"""DPSH: deep pairwise-supervised hashing (Li, Wang & Kang, IJCAI 2016). The negative log-likelihood of
the pairwise labels under p(s_ij = 1) = sigmoid(theta_ij), theta_ij = <u_i, u_j> / 2, plus eta times
the quantization error |u - sign(u)|^2. Multi-label data: s_ij = 1 when two items share a label.

eta is the paper's (10), on the official code's normalisation: both sums divided by num_train x batch.
Our terms are means (the likelihood over the batch's pairs, the quantization over its elements), so the
quantization weight in mean form is eta x bits / num_train: 0.024 at 12 bits, 0.096 at 48 on cifar10-1's
5,000 training images. A fixed weight would match the paper at one code length only."""

from __future__ import annotations

import torch

from hashlab.losses import label_overlap_similarity, pairwise_likelihood_loss, quantization_loss
from hashlab.losses.baselines import off_diagonal
from hashlab.methods.base import HashingModule


class DPSH(HashingModule):
    method_id = "dpsh"
    display_name = "DPSH"  # in tables and figures

    def __init__(self, *args, eta: float = 10.0, **kwargs):
        """eta: the paper's weight of the quantization term (on the official code's normalisation)."""
        super().__init__(*args, **kwargs)
        self.num_train: int | None = None  # the training set's size, known in setup

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.num_train = len(self.trainer.datamodule.split.train)

    def quantization_weight(self) -> float:
        """eta in mean form: eta x bits / num_train (see the module's docstring)."""
        if not self.num_train:
            raise RuntimeError("DPSH's quantization weight depends on the training set's size, known after setup")
        return self.hparams.eta * self.bits / self.num_train

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        mask = off_diagonal(len(codes), codes.device)
        likelihood = pairwise_likelihood_loss(codes, label_overlap_similarity(labels, labels), mask, 0.5)
        quantization = quantization_loss(codes)
        return (likelihood + self.quantization_weight() * quantization,
                {"likelihood": likelihood, "quantization": quantization})
