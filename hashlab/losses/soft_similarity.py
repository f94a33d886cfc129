"""Graded ("percentage") label similarity for multi-label data and the loss terms that use it
(IDHN, Zhang et al., IEEE TMM 2019; the DFCH patent). With single-label data every pair is
either identical (s = 1) or disjoint (s = 0), and these terms reduce to the usual pairwise
likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F

WEAK_TOLERANCE = 1e-6  # cosine of identical label sets computes as 1 +- rounding


def cosine_label_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """s_ij = <l_i, l_j> / (|l_i| |l_j|): 1 for identical label sets, 0 for disjoint ones, in between
    for partly shared labels. An item without labels is dissimilar to everything."""
    a, b = labels_a.float(), labels_b.float()
    norms = a.norm(dim=1)[:, None] * b.norm(dim=1)[None, :]
    return (a @ b.T / norms.clamp(min=1e-12)).clamp(0, 1)


def similarity_kinds(similarity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (hard, weak) over the off-diagonal pairs: hard pairs are strongly similar (s = 1)
    or dissimilar (s = 0), weak pairs share some labels (0 < s < 1)."""
    off_diagonal = ~torch.eye(len(similarity), dtype=torch.bool, device=similarity.device)
    hard = ((similarity >= 1 - WEAK_TOLERANCE) | (similarity <= WEAK_TOLERANCE)) & off_diagonal
    return hard, ~hard & off_diagonal


def _over_all_pairs(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over the pairs in ``mask`` divided by the number of distinct ordered pairs of the batch,
    so that each kind of pair weighs in with its share of the batch (a per-kind mean would give
    the few strongly similar pairs of multi-label data the weight of all dissimilar ones)."""
    n = len(loss)
    return loss[mask].sum() / max(1, n * (n - 1))


def code_inner_products(codes: torch.Tensor) -> torch.Tensor:
    """<u_i, u_j> / bits: in [-1, 1] for codes in [-1, 1]; 1 - 2 * Hamming / bits once they are +-1."""
    return codes @ codes.T / codes.shape[1]


def pairwise_likelihood_loss(codes: torch.Tensor, similarity: torch.Tensor, mask: torch.Tensor,
                             scale: float) -> torch.Tensor:
    """Negative log-likelihood of s under p(s = 1) = sigmoid(theta), theta = scale * <u_i, u_j>,
    averaged over the pairs in ``mask`` (DPSH / IDHN's hard-similarity term)."""
    if not mask.any():
        return codes.sum() * 0
    theta = scale * codes @ codes.T
    loss = F.softplus(theta) - similarity * theta  # log(1 + e^theta) - s * theta, without overflow
    return _over_all_pairs(loss, mask)


def weighted_pull_loss(codes: torch.Tensor, similarity: torch.Tensor, mask: torch.Tensor,
                       scale: float) -> torch.Tensor:
    """The likelihood's pull for similar pairs, s * log(1 + e^-theta), weighted by s on the pairs in
    ``mask``: a pair sharing half its labels is pulled together with half the force of an
    identical pair, and never pushed apart."""
    if not mask.any():
        return codes.sum() * 0
    theta = scale * codes @ codes.T
    return _over_all_pairs(similarity * F.softplus(-theta), mask)


def weak_similarity_loss(codes: torch.Tensor, similarity: torch.Tensor, mask: torch.Tensor,
                         target: str = "cosine") -> torch.Tensor:
    """Squared error between the code similarity <u_i, u_j> / bits and a target from s_ij on the
    pairs in ``mask``. ``cosine``: the target is s itself (code cosine = label cosine), so weakly
    similar pairs sit closer than dissimilar ones. ``centred``: 2 s - 1 (IDHN's form), which puts a
    pair sharing half its labels at bits/2, where unrelated codes are."""
    if not mask.any():
        return codes.sum() * 0
    if target not in ("cosine", "centred"):
        raise ValueError(f"weak similarity target {target!r}: use 'cosine' or 'centred'")
    goal = similarity if target == "cosine" else 2 * similarity - 1
    return _over_all_pairs((code_inner_products(codes) - goal).pow(2), mask)


def feature_consistency_loss(codes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Squared error between the code similarity and the cosine similarity of the deep features,
    over all distinct pairs; in partial and finetune modes it pulls the trained features towards the codes as well.
    Features are centred on the batch first: pooled CNN activations are non-negative, and
    uncentred their cosines are all close to 1."""
    centred = F.normalize(features.float() - features.float().mean(dim=0, keepdim=True), dim=1)
    target = centred @ centred.T
    upper = torch.triu(torch.ones(len(codes), len(codes), dtype=torch.bool, device=codes.device), diagonal=1)
    return (code_inner_products(codes) - target)[upper].pow(2).mean()
