"""attribute_hash: attribute-aware hash codes for fine-grained retrieval (patent "Attribute-aware
hash code learning method for large-scale fine-grained image retrieval"; the A2-Net family, Wei et
al., NeurIPS 2021). docs/methods/attribute_hash.md maps every claim of the seed to this file.

1. Attention: on the deep feature map X (C x H x W), C local attention guides (one per channel)
   and one global guide give local and global features; their global average pools, concatenated,
   are the image's feature vector f.
2. Hashing: V = tanh(W f), binary code sign(V); trained asymmetrically: the query points' V against
   the database points' codes (ADSH's objective, hashlab.methods.asymmetric). The source's database
   codes are "obtained by activating the database points" (claim 3): the network's codes of the pool
   items (pool_codes = network); ADSH's free learned codes are the option (pool_codes = learned).
3. A tied-weight decoder reconstructs f from V with W^T (alpha * reconstruction loss), so the bits
   keep the image's attribute information.
   The target f is not detached: the source trains everything by one total loss, and f is batch-
   normalised without affine parameters, so the decoder cannot shrink its target to zero.
4. Self-orthogonality: V^T V / n close to the identity (the / n and the mean over k^2 are ours; beta *
   orthogonality loss), so each bit
   carries a distinct attribute. With fewer rows n than bits k, V^T V / n has rank <= n and the
   term cannot fall below (k - n) / k^2; orthogonality_window adds earlier batches' codes (detached).

Ablation switches: reconstruction_weight = 0, orthogonality_weight = 0, local_attention = false,
pool_codes = network | learned (training), database_codes = encoded | learned (evaluation).
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
    sum. Local guides (their form ours; claim 2 names C guides): one sigmoid map per channel, from a shared 1x1
    bottleneck C -> C/8 -> C (a full
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


def orthogonality_loss(codes: torch.Tensor, earlier: torch.Tensor | None = None) -> torch.Tensor:
    """|V^T V / n - I|_F^2 / bits^2 over the batch's codes and ``earlier`` ones (detached): zero when the bits
    are orthonormal over those rows. Its floor is (bits - n) / bits^2 when n < bits rows."""
    rows = codes if earlier is None or len(earlier) == 0 else torch.cat([codes, earlier.detach()])
    gram = rows.T @ rows / len(rows)
    return (gram - torch.eye(codes.shape[1], device=codes.device)).pow(2).mean()


class AttributeHash(AsymmetricTraining, HashingModule):
    method_id = "attribute_hash"
    display_name = "AttributeHash"  # in tables and figures
    seed_method = True

    def __init__(self, *args, grid: int = 4, local_attention: bool = True, reconstruction_weight: float = 0.1,
                 orthogonality_weight: float = 1.0, orthogonality_window: int = 1, gamma: float = 200.0,
                 sampled_database: int | None = 2000, pool_codes: Literal["network", "learned"] = "network",
                 database_codes: Literal["encoded", "learned"] = "encoded",
                 dissimilar: float | Literal["balanced"] = "balanced", **kwargs):
        """gamma: weight of |V_i - B_i|^2 in ADSH's objective; with pool_codes=network a quantization penalty
        between the batch's codes and their signs (ours in this use; 200 is ADSH's value for learned codes).
        reconstruction_weight, orthogonality_weight: alpha and beta (values ours). sampled_database: database codes compared
        against per iteration (None: all). pool_codes: the database side of the training loss, the
        network's codes of the pool items (network, the source's) or free codes learned in closed form
        (learned, ADSH's). orthogonality_window: batches whose codes the orthogonality term sees (the
        current one and the codes of the window - 1 before it). database_codes: evaluate with the
        network's codes of the database (encoded; what a user indexing new images has) or with the
        pool's codes where the database item is in the training pool (learned). dissimilar: S of pairs
        sharing no label ("balanced": -r, as ADSH's public code)."""
        super().__init__(*args, **kwargs)
        self.reconstruction_weight, self.orthogonality_weight = reconstruction_weight, orthogonality_weight
        self._earlier_codes: list[torch.Tensor] = []

    def build_extractor(self) -> nn.Module:
        # the same taps as fdh_mfe, so frozen runs of both share one feature cache; only the deep level is read
        return StageGrids(self.backbone, default_taps(self.backbone), self.hparams.grid)

    def build_head(self, feature_dim: int) -> nn.Module:
        return AttributeHashHead(self.extractor.level_channels, self.bits, self.hparams.local_attention)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                  indices: torch.Tensor):
        parts = {"hash": self.database.loss(codes, labels, indices)}
        # f again, even with the term off: this second pass updates f's BatchNorm running statistics a second time
        # per step, so the "without reconstruction" ablation differs from the full method by the term alone (results
        # version 2; computing f once for both is queued for version 3, docs/reproduce.md)
        target = self.head.feature_vector(features) if self.training or self.reconstruction_weight else None
        if self.reconstruction_weight:
            parts["reconstruction"] = (self.head.reconstruct(codes) - target).pow(2).mean()
        if self.orthogonality_weight:
            earlier = torch.cat(self._earlier_codes) if self._earlier_codes else None
            parts["orthogonality"] = orthogonality_loss(codes, earlier)
            if self.hparams.orthogonality_window > 1 and self.training:
                self._earlier_codes = [codes.detach(), *self._earlier_codes][: self.hparams.orthogonality_window - 1]
        total = (parts["hash"] + self.reconstruction_weight * parts.get("reconstruction", 0)
                 + self.orthogonality_weight * parts.get("orthogonality", 0))
        return total, parts
