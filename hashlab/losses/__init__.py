"""Reusable loss terms; a method composes them with its own weights."""

from hashlab.losses.pairwise import contrastive_hamming_loss, label_overlap_similarity
from hashlab.losses.regularizers import bit_balance_loss, quantization_loss

__all__ = ["contrastive_hamming_loss", "label_overlap_similarity", "bit_balance_loss", "quantization_loss"]
