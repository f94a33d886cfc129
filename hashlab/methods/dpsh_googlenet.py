"""dpsh_googlenet: the pairwise hashing method of patent CN107016708B (Hangzhou Dianzi Univ.).

GoogLeNet with its classifier replaced by a q-unit hash layer. Each iteration draws 50 images;
the loss over their pairs is the relaxed Hamming distance for similar pairs and a hinge
max(0, t - distance) for dissimilar pairs, plus a bit-uniformity term (every bit +1 and -1 with
probability 0.5 over the batch) and a quantization term between the layer output and its sign.
Trained with SGD; b = sign(v) at test time. Values in experiments/methods/dpsh_googlenet.yaml.
"""

from __future__ import annotations

import torch

from hashlab.losses import (
    bit_balance_loss,
    contrastive_hamming_loss,
    label_overlap_similarity,
    quantization_loss,
)
from hashlab.methods.base import HashingModule


class DPSHGoogLeNet(HashingModule):
    method_id = "dpsh_googlenet"

    def __init__(self, *args, margin: float = 0.5, uniformity_weight: float = 0.1,
                 quantization_weight: float = 0.1, **kwargs):
        """margin: threshold t for dissimilar pairs, as a fraction of the code length (t = margin * bits)."""
        super().__init__(*args, **kwargs)
        self.margin = margin * self.bits
        self.uniformity_weight = uniformity_weight
        self.quantization_weight = quantization_weight

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                  indices: torch.Tensor):
        pairwise = contrastive_hamming_loss(codes, label_overlap_similarity(labels, labels), self.margin)
        uniformity = bit_balance_loss(codes)
        quantization = quantization_loss(codes)
        total = pairwise + self.uniformity_weight * uniformity + self.quantization_weight * quantization
        return total, {"pairwise": pairwise, "uniformity": uniformity, "quantization": quantization}
