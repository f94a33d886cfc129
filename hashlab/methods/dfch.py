"""dfch: deep feature consistent hashing (patent "Image retrieval method based on depth feature
consistent Hash algorithm", Ocean University of China, 2021). docs/methods/dfch.md maps every
sentence of the patent to this file and names the sources of what it leaves open.

S1: the label similarity is a "percentage", s_ij = cos(l_i, l_j), the patent divides images into strong
and weak similarity ([0063]); here (ours) strong is s = 1, weak 0 < s < 1, and dissimilar pairs (s = 0) join the
strong ones. Strong and dissimilar pairs
enter a pairwise likelihood, weak pairs a pull weighted by s (or IDHN's regression). A
consistency term keeps the codes' similarity structure that of the deep features, and a
quantization term (lambda = 0.1) pulls the tanh codes to +-1.

Weak pairs are pulled together in proportion to s by default (``weak_form=pull``); IDHN's
regression of the code similarity onto s is there as ``regress_centred`` / ``regress_cosine``.

Ablation switches: weak_similarity=false turns s into plain 0/1 (shares any label), weak_weight,
consistency_weight and quantization_weight = 0 remove a term.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from hashlab.losses import (
    cosine_label_similarity,
    feature_consistency_loss,
    label_overlap_similarity,
    pairwise_likelihood_loss,
    quantization_loss,
    similarity_kinds,
    weak_similarity_loss,
    weighted_pull_loss,
)
from hashlab.methods.base import HashingModule


class DFCH(HashingModule):
    method_id = "dfch"
    display_name = "DFCH"  # in tables and figures
    seed_method = True

    def __init__(self, *args, weak_similarity: bool = True, likelihood_scale: float = 0.5,
                 weak_form: Literal["pull", "regress_cosine", "regress_centred"] = "pull", weak_weight: float = 2.0,
                 consistency_weight: float = 0.1, quantization_weight: float = 0.1, **kwargs):
        """likelihood_scale: theta = scale * <u_i, u_j> in the likelihood (DPSH/IDHN use 1/2).
        weak_form: how weakly similar pairs (0 < s < 1) enter the loss. pull: the likelihood's pull
        weighted by s (never pushed apart); regress_cosine / regress_centred: the code similarity
        regressed onto s / onto 2s - 1 (IDHN's form). docs/methods/dfch.md has the measurements.
        weak_weight, consistency_weight, quantization_weight: weights of those terms (0 removes one)."""
        super().__init__(*args, **kwargs)
        self.weak_form = weak_form
        self.weak_similarity = weak_similarity
        self.likelihood_scale = likelihood_scale
        self.weak_weight, self.consistency_weight = weak_weight, consistency_weight
        self.quantization_weight = quantization_weight

    def build_head(self, feature_dim: int) -> nn.Module:
        return nn.Sequential(super().build_head(feature_dim), nn.Tanh())  # codes in (-1, 1), as in IDHN

    def label_similarity(self, labels: torch.Tensor) -> torch.Tensor:
        if self.weak_similarity:
            return cosine_label_similarity(labels, labels)
        return label_overlap_similarity(labels, labels)  # ablation: any shared label counts as similar

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                  indices: torch.Tensor):
        similarity = self.label_similarity(labels)
        hard, weak = similarity_kinds(similarity)
        likelihood = pairwise_likelihood_loss(codes, similarity, hard, self.likelihood_scale)
        if self.weak_form == "pull":
            weak_term = weighted_pull_loss(codes, similarity, weak, self.likelihood_scale)
        else:
            weak_term = weak_similarity_loss(codes, similarity, weak, self.weak_form.removeprefix("regress_"))
        consistency = feature_consistency_loss(codes, features)
        quantization = quantization_loss(codes)
        total = (likelihood + self.weak_weight * weak_term + self.consistency_weight * consistency
                 + self.quantization_weight * quantization)
        distinct_pairs = max(len(codes) * (len(codes) - 1), 1)  # weak never holds an item with itself
        return total, {"likelihood": likelihood, "weak": weak_term, "consistency": consistency,
                       "quantization": quantization, "weak_pairs": weak.sum() / distinct_pairs}
