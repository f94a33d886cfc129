"""Triplet loss on codes with a choice of mining: for an anchor, a positive shares a label with it and
a negative shares none; the loss asks the negative to be farther than the positive by a margin."""

from __future__ import annotations

from typing import Literal

import torch

Mining = Literal["batch_hard", "semihard", "all"]


def relaxed_hamming(codes: torch.Tensor) -> torch.Tensor:
    """Pairwise ||u - v||^2 / 4 / bits: the Hamming distance as a fraction of the code length once
    the codes are +-1."""
    squared = codes.pow(2).sum(1)
    return (squared[:, None] + squared[None, :] - 2 * codes @ codes.T).clamp(min=0) / 4 / codes.shape[1]


def triplet_coverage(labels: torch.Tensor) -> torch.Tensor:
    """The share of a batch's anchors that have a valid triplet (a positive and a negative in the batch)."""
    shared = labels.float() @ labels.float().T > 0
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return ((shared & ~eye).any(1) & (~shared).any(1)).float().mean()


def triplet_loss(codes: torch.Tensor, labels: torch.Tensor, margin: float = 0.25,
                 mining: Mining = "batch_hard") -> torch.Tensor:
    """Mean hinge max(0, d(a, p) - d(a, n) + margin) over the mined triplets; margin as a fraction of
    the code length. batch_hard: the farthest positive and the closest negative of every anchor
    (Hermans et al. 2017). semihard: every positive with the closest negative that is farther than
    it (FaceNet), falling back to the hardest. all: every valid triplet."""
    distance = relaxed_hamming(codes)
    shared = labels.float() @ labels.float().T > 0
    eye = torch.eye(len(codes), dtype=torch.bool, device=codes.device)
    positive, negative = shared & ~eye, ~shared
    anchors = positive.any(1) & negative.any(1)
    if not anchors.any():
        return codes.sum() * 0
    inf = torch.finfo(distance.dtype).max
    if mining == "batch_hard":
        hardest_positive = distance.masked_fill(~positive, -inf).max(1).values
        hardest_negative = distance.masked_fill(~negative, inf).min(1).values
        return (hardest_positive - hardest_negative + margin).clamp(min=0)[anchors].mean()
    # (anchor, positive, negative) cube
    gap = distance[:, :, None] - distance[:, None, :] + margin
    valid = positive[:, :, None] & negative[:, None, :]
    if mining == "all":
        return gap.clamp(min=0)[valid].mean()
    if mining == "semihard":
        farther = valid & (distance[:, None, :] > distance[:, :, None])
        semi = distance[:, None, :].expand_as(gap).masked_fill(~farther, inf).min(2).values
        hardest = distance.masked_fill(~negative, inf).min(1).values[:, None].expand_as(semi)
        chosen = torch.where(semi < inf, semi, hardest)  # no farther negative: the hardest one
        pairs = positive & anchors[:, None]
        return (distance - chosen + margin).clamp(min=0)[pairs].mean()
    raise ValueError(f"triplet mining {mining!r}: use batch_hard, semihard or all")
