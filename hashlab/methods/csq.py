"""CSQ: central similarity quantization (Yuan et al., CVPR 2020). Every class gets a hash centre, rows
of a Hadamard matrix and their negations (random Bernoulli codes where the classes outnumber 2 * bits
or bits is not a power of two); each code is pulled to its item's centre by a per-bit binary
cross-entropy, plus lambda times the quantization loss (|u| - 1)^2. Multi-label items: the centre is
the sign of the sum of their labels' centres (the paper's rule). Codes: tanh."""

from __future__ import annotations

import torch

from hashlab.losses.baselines import center_loss, hash_centers, multi_label_centers
from hashlab.methods.base import HashingModule


class CSQ(HashingModule):
    method_id = "csq"
    display_name = "CSQ"  # in tables and figures
    tanh_codes = True

    def __init__(self, *args, quantization_weight: float = 1e-4, **kwargs):
        """quantization_weight: lambda (1e-4 as DeepHash-pytorch configures CSQ; docs/methods/csq.md)."""
        super().__init__(*args, **kwargs)
        self.register_buffer("centers", torch.zeros(0, self.bits))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if not len(self.centers):
            self.centers = hash_centers(self.trainer.datamodule.num_classes, self.bits).to(self.device)

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        self.centers = torch.zeros_like(checkpoint["state_dict"]["centers"])

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        central = center_loss(codes, multi_label_centers(labels, self.centers))
        quantization = (codes.abs() - 1).pow(2).mean()
        total = central + self.hparams.quantization_weight * quantization
        return total, {"central": central, "quantization": quantization}
