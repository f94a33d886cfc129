"""attribute_hash: attribute-aware hash codes for fine-grained retrieval (patent "Attribute-aware
hash code learning method for large-scale fine-grained image retrieval"; the A2-Net family, Wei et
al., NeurIPS 2021). docs/methods/attribute_hash.md maps every claim of the seed to this file.

1. Attention: on the deep feature map X (C x H x W), C local attention guides (one per channel)
   and one global guide give local and global features; their global average pools, concatenated,
   are the image's feature vector f.
2. Hashing: V = tanh(W f), binary code sign(V); trained asymmetrically against learned database
   codes (hashlab.methods.asymmetric, ADSH's objective and update).
3. A tied-weight decoder reconstructs f from V with W^T (alpha * reconstruction loss), so the bits
   keep the image's attribute information.
4. Self-orthogonality: V^T V / n close to the identity (beta * orthogonality loss), so each bit
   carries a distinct attribute.

Ablation switches: reconstruction_weight = 0, orthogonality_weight = 0, local_attention = false,
database_codes = learned | encoded (evaluation).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hashlab.backbones.taps import StageGrids, default_taps
from hashlab.methods.asymmetric import AsymmetricTraining
from hashlab.methods.base import HashingModule


class AttentionFeatures(nn.Module):
    """Deep map (n, C, h, w) -> f (n, 2C): GAP of the locally attended map, and the globally attended
    sum. Local guides: one sigmoid map per channel, from a 1x1 bottleneck C -> C/8 -> C (a full
    C x C convolution costs 4x more for the same role); global guide: one spatial softmax (a 1x1
    convolution C -> 1)."""

    def __init__(self, channels: int, local_attention: bool = True, reduction: int = 8):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)  # frozen CNN maps are non-negative and unscaled
        self.local_guides = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1)) if local_attention else None
        self.global_guide = nn.Conv2d(channels, 1, 1)
        self.out = nn.BatchNorm1d(2 * channels, affine=False)  # f is also the decoder's target

    def forward(self, deep: torch.Tensor) -> torch.Tensor:
        x = self.norm(deep)
        local = x * torch.sigmoid(self.local_guides(x)) if self.local_guides is not None else x
        weights = torch.softmax(self.global_guide(x).flatten(2), dim=-1)  # (n, 1, hw)
        global_ = (x.flatten(2) * weights).sum(-1)
        return self.out(torch.cat([local.mean((2, 3)), global_], dim=1))


class AttributeHashHead(nn.Module):
    """Stacked stage grids -> V = tanh(W f); ``reconstruct`` decodes V with W^T (tied weights)."""

    def __init__(self, level_channels: list[int], bits: int, local_attention: bool):
        super().__init__()
        self.level_channels = level_channels
        self.features = AttentionFeatures(level_channels[-1], local_attention)
        self.hash = nn.Linear(2 * level_channels[-1], bits, bias=False)  # W

    def feature_vector(self, stacked: torch.Tensor) -> torch.Tensor:
        deep = torch.split(stacked, self.level_channels, dim=1)[-1]
        return self.features(deep)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hash(self.feature_vector(stacked)))

    def reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        return F.linear(codes, self.hash.weight.T)  # W^T V: the decoder is W itself


def orthogonality_loss(codes: torch.Tensor) -> torch.Tensor:
    """|V^T V / n - I|_F^2 / bits^2: zero when the bits are orthonormal over the batch."""
    gram = codes.T @ codes / len(codes)
    return (gram - torch.eye(codes.shape[1], device=codes.device)).pow(2).mean()


class AttributeHash(AsymmetricTraining, HashingModule):
    method_id = "attribute_hash"

    def __init__(self, *args, grid: int = 4, local_attention: bool = True, reconstruction_weight: float = 1.0,
                 orthogonality_weight: float = 1.0, gamma: float = 200.0, sampled_database: int = 2000,
                 database_codes: Literal["encoded", "learned"] = "encoded", **kwargs):
        """gamma: weight of |V_i - B_i|^2 in ADSH's objective. sampled_database: learned database
        codes compared against per iteration. database_codes: evaluate with the network's codes of
        the database (encoded; what a user indexing new images has) or with the learned codes
        where the database item is in the training pool (learned)."""
        super().__init__(*args, **kwargs)
        self.reconstruction_weight, self.orthogonality_weight = reconstruction_weight, orthogonality_weight

    def build_extractor(self) -> nn.Module:
        # the same taps as fdh_mfe, so frozen runs of both share one feature cache; only the deep level is read
        return StageGrids(self.backbone, default_taps(self.backbone), self.hparams.grid)

    def build_head(self, feature_dim: int) -> nn.Module:
        return AttributeHashHead(self.extractor.level_channels, self.bits, self.hparams.local_attention)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                  indices: torch.Tensor):
        parts = {"hash": self.database.loss(codes, labels, indices)}
        if self.reconstruction_weight:
            target = self.head.feature_vector(features)
            parts["reconstruction"] = (self.head.reconstruct(codes) - target).pow(2).mean()
        if self.orthogonality_weight:
            parts["orthogonality"] = orthogonality_loss(codes)
        total = (parts["hash"] + self.reconstruction_weight * parts.get("reconstruction", 0)
                 + self.orthogonality_weight * parts.get("orthogonality", 0))
        return total, parts
