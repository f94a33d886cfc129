"""Proxy (hash-centre) losses: one learnable proxy per class in code space; a code is pulled to the
proxies of its classes and pushed from the others."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def proxy_loss(codes: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, scale: float = 8.0,
               margin: float = 0.1, multi_label: bool = False) -> torch.Tensor:
    """Softmax over cosine similarities to the class proxies, with an additive margin on the true
    class (single-label data), or a sigmoid per class (``multi_label`` data: decided by the data set, not by
    the batch, where every image may happen to carry one label). ``scale`` sharpens the softmax:
    cosines live in [-1, 1]."""
    cosine = F.normalize(codes, dim=1) @ F.normalize(proxies, dim=1).T
    targets = labels.float()
    if not multi_label:
        logits = scale * (cosine - margin * targets)
        return F.cross_entropy(logits, targets.argmax(1))
    return F.binary_cross_entropy_with_logits(scale * (cosine - margin * (2 * targets - 1)), targets)


@torch.no_grad()
def proxy_separation(proxies: torch.Tensor) -> dict[str, float]:
    """Hamming distances between the binarised proxies (sign), as fractions of the code length:
    mean and minimum over class pairs. Well-spread hash centres sit near 0.5."""
    signs = torch.where(proxies >= 0, 1.0, -1.0)
    bits = signs.shape[1]
    distance = (bits - signs @ signs.T) / 2 / bits
    upper = torch.triu(torch.ones_like(distance, dtype=torch.bool), diagonal=1)
    if not upper.any():
        return {"proxy_hamming_mean": 0.0, "proxy_hamming_min": 0.0}
    return {"proxy_hamming_mean": float(distance[upper].mean()), "proxy_hamming_min": float(distance[upper].min())}
