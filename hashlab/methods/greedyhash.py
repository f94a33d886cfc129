"""GreedyHash (Su, Zhang, Han & Tian, NeurIPS 2018): the hash layer's output h is binarised greedily,
b = sign(h), in the forward pass, and the gradient goes straight through to h (no relaxation); a
linear classifier on b gives the supervised loss, and alpha times |(|h| - 1)|^3 keeps h near +-1.
Multi-label data: the classifier's loss is the per-label binary cross-entropy (ours; the paper is
single-label)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashlab.losses.baselines import GreedySign, abs_one_loss
from hashlab.methods.base import HashingModule


class GreedyHash(HashingModule):
    method_id = "greedyhash"
    display_name = "GreedyHash"  # in tables and figures

    def __init__(self, *args, alpha: float = 0.1, num_classes: int | None = None, **kwargs):
        """alpha: weight of the cubic penalty; num_classes: the classifier's outputs (default: the data's)."""
        super().__init__(*args, **kwargs)
        self.classifier = nn.Linear(self.bits, num_classes) if num_classes else None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.classifier is None:
            self.hparams.num_classes = self.trainer.datamodule.num_classes
            self.classifier = nn.Linear(self.bits, self.hparams.num_classes).to(self.device)

    def parameter_groups(self) -> list[dict]:
        return [*super().parameter_groups(), {"params": self.classifier.parameters(), "lr": self.hparams.lr}]

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        logits = self.classifier(GreedySign.apply(codes))
        if not self.multi_label:
            supervised = F.cross_entropy(logits, labels.argmax(1))
        else:
            supervised = F.binary_cross_entropy_with_logits(logits, labels.float())
        penalty = abs_one_loss(codes, power=3)
        return supervised + self.hparams.alpha * penalty, {"classification": supervised, "penalty": penalty}
