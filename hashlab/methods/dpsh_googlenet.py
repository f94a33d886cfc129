"""dpsh_googlenet: the pairwise hashing method of patent CN107016708B (Hangzhou Dianzi Univ.).

GoogLeNet with its classifier replaced by a q-unit hash layer whose relaxed outputs are constrained
to [-1, +1]^q (a tanh here). Each iteration draws 50 images; the loss over their pairs is the
relaxed Hamming distance for similar pairs and a hinge max(0, t - distance) for dissimilar pairs,
plus a bit-uniformity term (every bit +1 and -1 with probability 0.5 over the batch) and a
quantization term between the layer output and its sign; the patent sums the three. Its formulas are
images missing from its text, so how each term is scaled is ours: the pair term in DSH's form (CVPR 2016:
half the squared distance, or half the hinge on it with m = 4t); the regularisers ours (squared, not DSH's
L1; DSH has no uniformity term), each summed over its bits and counted for both images of a pair; default
weights 0.01 (ours; the cpu profile tunes them). Trained with SGD; at test time b = +1 where v > 0, else -1
(claim 3). docs/methods/dpsh_googlenet.md maps the patent to code.
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
    display_name = "DPSH-GoogLeNet"  # in tables and figures
    seed_method = True

    def __init__(self, *args, margin: float = 0.5, uniformity_weight: float = 0.01,
                 quantization_weight: float = 0.01, bounded: bool = True, **kwargs):
        """margin: threshold t for dissimilar pairs, as a fraction of the code length (t = margin * bits).
        uniformity_weight, quantization_weight: weights of our two regularisers (0 turns a term off).
        bounded: relaxed codes in [-1, +1]^q, as the patent constrains them (the tanh is ours)."""
        super().__init__(*args, **kwargs)
        self.margin = margin * self.bits
        self.uniformity_weight = uniformity_weight
        self.quantization_weight = quantization_weight

    @property
    def tanh_codes(self) -> bool:  # the patent's [-1, +1]^q constraint
        return self.hparams.bounded

    def test_codes(self, inputs: torch.Tensor, indices: torch.Tensor, role: str) -> torch.Tensor:
        # claim 3: b = +1 where v > 0, else -1 (an output of exactly 0 is -1; the shared binarisation gives +1)
        outputs = self(inputs)
        return torch.where(outputs > 0, 1.0, -1.0).to(outputs.dtype)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                  indices: torch.Tensor):
        # every pair of the randomly drawn batch: the patent's "paired at random" pairs are a subset
        # our scale: the per-bit means below times 2q; the pair term in DSH's units (1/2 |u - v|^2 is
        # twice the relaxed Hamming distance) and each regulariser counted for both images of a pair
        scale = 2 * self.bits
        pairwise = scale * contrastive_hamming_loss(codes, label_overlap_similarity(labels, labels), self.margin)
        uniformity = scale * bit_balance_loss(codes)
        quantization = scale * quantization_loss(codes)
        total = pairwise + self.uniformity_weight * uniformity + self.quantization_weight * quantization
        return total, {"pairwise": pairwise, "uniformity": uniformity, "quantization": quantization}
