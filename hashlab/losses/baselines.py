"""Loss terms of the standard deep hashing baselines (each method file composes them). Pairs are all
pairs of the batch; every term is a mean, so weights do not change with batch size or code length."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def off_diagonal(n: int, device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def abs_one_loss(codes: torch.Tensor, power: int = 1) -> torch.Tensor:
    """mean | |u| - 1 |^power: DSH's L1 regulariser (power 1), GreedyHash's cubic penalty (power 3)."""
    return (codes.abs() - 1).abs().pow(power).mean()


def balanced_pair_weights(similarity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HashNet's weights: similar and dissimilar pairs (within ``mask``) weigh as much in total."""
    similar, dissimilar = (similarity > 0) & mask, (similarity == 0) & mask
    total = mask.sum()
    return torch.where(similar, total / similar.sum().clamp(min=1), total / dissimilar.sum().clamp(min=1))


def weighted_pairwise_cross_entropy(codes: torch.Tensor, similarity: torch.Tensor, alpha: float) -> torch.Tensor:
    """HashNet (Cao et al., ICCV 2017): the pairwise likelihood of theta = alpha <h_i, h_j>, each pair
    weighted so that similar and dissimilar pairs weigh as much in total (|S| / |S1|, |S| / |S0|)."""
    mask = off_diagonal(len(codes), codes.device)
    theta = alpha * codes @ codes.T
    loss = F.softplus(theta) - similarity * theta
    return (loss * balanced_pair_weights(similarity, mask))[mask].mean()


def cauchy_pairwise_loss(codes: torch.Tensor, similarity: torch.Tensor, gamma: float) -> torch.Tensor:
    """DCH (Cao et al., CVPR 2018): p(s = 1) = gamma / (gamma + d) with the normalised Hamming distance
    d = bits / 2 * (1 - cos(h_i, h_j)); the cross-entropy, similar and dissimilar pairs weighted equally
    in total as in HashNet."""
    mask = off_diagonal(len(codes), codes.device)
    normed = F.normalize(codes, dim=1)
    distance = codes.shape[1] / 2 * (1 - normed @ normed.T).clamp(min=0)
    eps = 1e-6
    loss = similarity * torch.log((distance + eps) / gamma) + torch.log1p(gamma / (distance + eps))
    return (loss * balanced_pair_weights(similarity, mask))[mask].mean()


def cauchy_quantization_loss(codes: torch.Tensor, gamma: float) -> torch.Tensor:
    """DCH's quantization: log(1 + d(|h|, 1) / gamma), d the normalised Hamming distance to the all-ones code."""
    ones = torch.ones_like(codes)
    distance = codes.shape[1] / 2 * (1 - F.cosine_similarity(codes.abs(), ones, dim=1))
    return torch.log1p(distance / gamma).mean()


def hash_centers(num_classes: int, bits: int, seed: int = 0) -> torch.Tensor:
    """CSQ (Yuan et al., CVPR 2020): rows of a Hadamard matrix and their negations when 2 * bits covers
    the classes and bits is a power of two (centres at Hamming distance bits / 2 or bits); else random
    Bernoulli(0.5) codes, which are nearly as far apart."""
    from scipy.linalg import hadamard
    if bits & (bits - 1) == 0 and num_classes <= 2 * bits:
        matrix = torch.from_numpy(hadamard(bits)).float()
        return torch.cat([matrix, -matrix])[:num_classes]
    generator = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(num_classes, bits, generator=generator) < 0.5, -1.0, 1.0)


def multi_label_centers(labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """CSQ's centre of a multi-label item: the sign of the sum of its labels' centres (ties to +1)."""
    summed = labels.float() @ centers
    return torch.where(summed >= 0, 1.0, -1.0)


def center_loss(codes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CSQ's central similarity: binary cross-entropy between (u + 1) / 2 and (c + 1) / 2, per bit."""
    probability = ((codes + 1) / 2).clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(probability, (targets + 1) / 2)


class GreedySign(torch.autograd.Function):
    """GreedyHash (Su et al., NeurIPS 2018): b = sign(h) forward, the gradient passed straight to h."""

    @staticmethod
    def forward(ctx, h):
        return torch.where(h >= 0, 1.0, -1.0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def continuation_beta(step: int, gamma: float = 0.005, power: float = 0.5) -> float:
    """HashNet's continuation: tanh(beta z) with beta = (1 + gamma * step) ** power, so codes approach
    sign(z) as training goes on."""
    return math.pow(1 + gamma * step, power)
