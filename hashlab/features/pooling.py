"""Unsupervised global descriptors pooled from the last convolutional map of a backbone.

- ``spoc``: sum pooling (Babenko & Lempitsky, ICCV 2015).
- ``gem``: generalised mean, p = 3 (Radenović et al., TPAMI 2018).
- ``crow``: cross-dimensional weighting (Kalantidis et al., ECCVW 2016): spatial weights from the
  channel-summed map (normalised, power a = 2, b = 2), channel weights log(sum_j Q_j / Q_k) from the
  fraction Q_k of non-zero activations in channel k (sparser channels weigh more, like IDF).
- ``pwa``: part-based weighted aggregation (Xu et al., 2018): a few channels chosen on the collection
  (the highest variance of their summed responses) act as part detectors; each gives a spatial weight
  map, and the weighted sums, one per part, are concatenated.
- ``cam``: class-activation weighting (Jiménez et al., BMVC 2017) where the backbone has its ImageNet
  classifier: one sum-pooled descriptor per top-scoring class map, summed.

Every descriptor is L2-normalised here; PCA whitening is fitted later on the indexed collection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("spoc", "gem", "crow", "pwa", "cam")


def _normalise_weights(weights: torch.Tensor, a: float = 2.0, b: float = 2.0) -> torch.Tensor:
    """(n, h, w) -> spatial weights divided by their a-norm, to the power 1/b (CroW's recipe)."""
    norm = weights.flatten(1).pow(a).sum(1).pow(1 / a).clamp_min(1e-12)
    return (weights / norm[:, None, None]).pow(1 / b)


def spoc(maps: torch.Tensor) -> torch.Tensor:
    return maps.sum(dim=(2, 3))


def gem(maps: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    return maps.clamp_min(1e-6).pow(p).mean(dim=(2, 3)).pow(1 / p)


def crow(maps: torch.Tensor) -> torch.Tensor:
    maps = maps.clamp_min(0)
    spatial = _normalise_weights(maps.sum(1))
    nonzero = (maps > 0).float().mean(dim=(2, 3))  # Q_k per image
    channel = torch.log(nonzero.sum(1, keepdim=True).clamp_min(1e-12) / (nonzero + 1e-3))
    return channel * (maps * spatial[:, None]).sum(dim=(2, 3))


def pwa(maps: torch.Tensor, part_channels: torch.Tensor) -> torch.Tensor:
    maps = maps.clamp_min(0)
    parts = _normalise_weights(maps[:, part_channels].flatten(0, 1)).view(len(maps), len(part_channels),
                                                                        *maps.shape[2:])
    pooled = torch.einsum("nphw,nchw->npc", parts, maps)  # one weighted sum per part
    return F.normalize(pooled, dim=2).flatten(1)


def select_part_channels(channel_sums: torch.Tensor, parts: int) -> torch.Tensor:
    """PWA's part detectors: the channels whose summed response varies most over the collection."""
    return torch.argsort(channel_sums.float().var(0), descending=True)[:parts].sort().values


def cam(maps: torch.Tensor, classifier: torch.nn.Module, classes: int = 10) -> torch.Tensor:
    linear = classifier if isinstance(classifier, torch.nn.Linear) else None
    if linear is None or linear.in_features != maps.shape[1]:
        raise ValueError("cam pooling needs a backbone whose ImageNet classifier is one linear layer over the "
                         "last map's channels (efficientnet_lite0, resnet18/50); use crow or pwa otherwise")
    scores = linear(maps.mean(dim=(2, 3)))
    top = scores.topk(classes, dim=1).indices  # (n, classes)
    class_maps = torch.einsum("kc,nchw->nkhw", linear.weight, maps)
    chosen = torch.gather(class_maps, 1, top[:, :, None, None].expand(-1, -1, *maps.shape[2:])).clamp_min(0)
    weights = chosen / chosen.flatten(2).amax(2).clamp_min(1e-12)[:, :, None, None]
    return torch.einsum("nkhw,nchw->nc", weights, maps)


def pool(maps: torch.Tensor, method: str, part_channels: torch.Tensor | None = None,
         classifier: torch.nn.Module | None = None) -> torch.Tensor:
    """(n, C, h, w) -> L2-normalised descriptors (n, D)."""
    if method == "spoc":
        out = spoc(maps)
    elif method == "gem":
        out = gem(maps)
    elif method == "crow":
        out = crow(maps)
    elif method == "pwa":
        if part_channels is None:
            raise ValueError("pwa pooling needs part channels chosen on the collection (select_part_channels)")
        out = pwa(maps, part_channels)
    elif method == "cam":
        out = cam(maps, classifier)
    else:
        raise ValueError(f"unknown pooling {method!r}; choose one of {', '.join(POOLINGS)}")
    return F.normalize(out.float(), dim=1)


class PooledMap(nn.Module):
    """Images in [0, 1] -> the pooled descriptor of the backbone's last map. For pwa, the part
    channels are chosen on the first batch it sees and kept (a buffer: saved with the model)."""

    def __init__(self, backbone, pooling: str, parts: int = 8):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.backbone, self.pooling, self.parts = backbone, pooling, parts
        self.cache_name = f"{backbone.name}-{pooling}" + (f"{parts}" if pooling == "pwa" else "")
        self.register_buffer("part_channels", torch.empty(0, dtype=torch.long))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.backbone.feature_map(images)
        if self.pooling == "pwa" and not len(self.part_channels):
            self.part_channels = select_part_channels(maps.clamp_min(0).sum(dim=(2, 3)), self.parts).to(maps.device)
        return pool(maps, self.pooling, self.part_channels if self.pooling == "pwa" else None,
                    self.backbone.classifier)
