"""DSH: deep supervised hashing (Liu, Wang, Shan & Chen, CVPR 2016). A contrastive loss on the relaxed
codes: half the squared distance for similar pairs, a hinge max(0, m - |u - v|^2) / 2 for dissimilar
ones with m = 2 * bits, plus alpha times the L1 distance of |u| to 1, which pushes codes towards +-1.
Multi-label data: similar = sharing a label."""

from __future__ import annotations

import torch

from hashlab.losses import contrastive_hamming_loss, label_overlap_similarity
from hashlab.losses.baselines import abs_one_loss
from hashlab.methods.base import HashingModule


class DSH(HashingModule):
    method_id = "dsh"
    display_name = "DSH"  # in tables and figures

    def __init__(self, *args, alpha: float = 0.01, **kwargs):
        """alpha: weight of the regulariser (the paper's 0.01)."""
        super().__init__(*args, **kwargs)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        # |u - v|^2 >= 2 bits is a relaxed Hamming distance (|u - v|^2 / 4) of bits / 2
        contrastive = contrastive_hamming_loss(codes, label_overlap_similarity(labels, labels), codes.shape[1] / 2)
        regulariser = abs_one_loss(codes)
        return contrastive + self.hparams.alpha * regulariser, {"contrastive": contrastive, "regulariser": regulariser}
