"""Pairwise loss terms over all pairs of a batch."""

from __future__ import annotations

import torch


def label_overlap_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """s_ij = 1 when items i and j share at least one label, else 0 (multi-hot labels)."""
    return (labels_a.float() @ labels_b.float().T > 0).float()


def contrastive_hamming_loss(codes: torch.Tensor, similarity: torch.Tensor, margin: float) -> torch.Tensor:
    """Relaxed Hamming distance for similar pairs, hinge max(0, margin - distance) for dissimilar ones.

    The relaxed Hamming distance of real-valued codes is ||u - v||^2 / 4, which equals the Hamming
    distance once the codes are +-1; ``margin`` is in bits. Averaged over the distinct pairs of the
    batch and divided by the code length, so weights do not depend on the number of bits.
    """
    bits = codes.shape[1]
    squared_norm = codes.pow(2).sum(1)
    distance = (squared_norm[:, None] + squared_norm[None, :] - 2 * codes @ codes.T).clamp(min=0) / 4
    pair_loss = similarity * distance + (1 - similarity) * torch.clamp(margin - distance, min=0)
    upper = torch.triu(torch.ones_like(pair_loss, dtype=torch.bool), diagonal=1)
    return pair_loss[upper].mean() / bits
