"""Reusable loss terms; a method composes them with its own weights."""

from hashlab.losses.pairwise import contrastive_hamming_loss, label_overlap_similarity
from hashlab.losses.proxy import proxy_loss, proxy_separation
from hashlab.losses.regularizers import bit_balance_loss, quantization_loss
from hashlab.losses.soft_similarity import (
    code_inner_products,
    cosine_label_similarity,
    feature_consistency_loss,
    pairwise_likelihood_loss,
    similarity_kinds,
    weak_similarity_loss,
    weighted_pull_loss,
)
from hashlab.losses.triplet import relaxed_hamming, triplet_coverage, triplet_loss

__all__ = ["contrastive_hamming_loss", "label_overlap_similarity", "bit_balance_loss", "quantization_loss",
           "code_inner_products", "cosine_label_similarity", "feature_consistency_loss", "pairwise_likelihood_loss",
           "similarity_kinds", "weak_similarity_loss", "weighted_pull_loss", "proxy_loss", "proxy_separation",
           "relaxed_hamming", "triplet_coverage", "triplet_loss"]
