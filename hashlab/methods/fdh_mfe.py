"""fdh_mfe: fine-grained deep hashing with multi-level feature extraction (FDH-MFE).
docs/methods/fdh_mfe.md maps every sentence of the paper to this file.

- Multi-level features: shallow, middle and deep stage maps of the backbone (stage taps, pooled to
  a grid x grid of regions) become the nodes of a graph: one node per region per level plus one
  global node per level.
- A graph neural network with edges learned from the nodes' affinities (attention) reveals their
  long-range dependencies; the fused representation is read from the global nodes.
- Background suppression: a spatial mask from the channel-summed deep activation map, normalised
  per image and soft-thresholded, weighs every region before pooling and before the graph.
- A proxy loss (one learnable hash centre per class; the paper credits it with the codes' uniformity), a
  triplet loss on the suppressed representation's codes, and, ours, a bit-balance term and a quantization term.

Ablation switches: use_gnn (off: the level vectors are concatenated), use_shallow (off: the
deepest level only), suppress_background, proxy_weight = 0, triplet_weight = 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hashlab.backbones.taps import StageGrids, default_taps
from hashlab.losses import (
    bit_balance_loss,
    proxy_loss,
    proxy_separation,
    quantization_loss,
    triplet_coverage,
    triplet_loss,
)
from hashlab.losses.triplet import Mining
from hashlab.methods.base import HashingModule


class BackgroundSuppression(nn.Module):
    """Channel-summed activation -> min-max normalised per image -> sigmoid((a - threshold) * sharpness).
    The threshold is learned; the mask has the feature map's spatial shape."""

    def __init__(self, threshold: float = 0.3, sharpness: float = 10.0):
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(threshold))
        self.sharpness = sharpness

    def forward(self, deep: torch.Tensor) -> torch.Tensor:
        activation = deep.sum(1)  # (n, h, w)
        low = activation.flatten(1).min(1).values[:, None, None]
        high = activation.flatten(1).max(1).values[:, None, None]
        normalised = (activation - low) / (high - low).clamp(min=1e-6)
        return torch.sigmoid((normalised - self.threshold) * self.sharpness)


class GraphLayer(nn.Module):
    """One message-passing step over a dense graph whose edges are the nodes' scaled dot-product
    affinities (a row-softmax adjacency, learned through the query/key projections)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.update = nn.Sequential(nn.Linear(dim, dim), nn.GELU())

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        adjacency = torch.softmax(self.query(nodes) @ self.key(nodes).transpose(1, 2) / math.sqrt(nodes.shape[-1]), -1)
        return self.norm(nodes + self.update(adjacency @ self.value(nodes)))


class MultiLevelFusion(nn.Module):
    """(n, sum C, g, g) stacked level grids -> (fused vector (n, dim), background mask (n, g, g))."""

    def __init__(self, level_channels: list[int], dim: int, gnn_layers: int, use_gnn: bool, use_shallow: bool,
                 suppress_background: bool):
        super().__init__()
        self.level_channels, self.use_gnn, self.use_shallow = level_channels, use_gnn, use_shallow
        used = level_channels if use_shallow else level_channels[-1:]
        # BatchNorm first: pooled CNN activations are non-negative and of very different scales per level
        self.project = nn.ModuleList(nn.Sequential(nn.BatchNorm1d(c), nn.Linear(c, dim)) for c in used)
        self.level_embedding = nn.Parameter(torch.zeros(len(used), dim))
        self.suppression = BackgroundSuppression() if suppress_background else None
        if use_gnn:
            self.graph = nn.ModuleList(GraphLayer(dim) for _ in range(gnn_layers))
        else:
            self.concat = nn.Linear(len(used) * dim, dim)
        self.dim = dim

    def mask(self, stacked: torch.Tensor) -> torch.Tensor:
        deep = torch.split(stacked, self.level_channels, dim=1)[-1]
        if self.suppression is None:
            return torch.ones_like(deep[:, 0])
        return self.suppression(deep)

    def forward(self, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = torch.split(stacked, self.level_channels, dim=1)
        levels = levels if self.use_shallow else levels[-1:]
        mask = self.mask(stacked)
        weights = mask.flatten(1)[:, :, None]  # (n, regions, 1)
        regions, globals_ = [], []
        for level, project, embedding in zip(levels, self.project, self.level_embedding, strict=True):
            tokens = level.flatten(2).transpose(1, 2)  # (n, regions, C)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-6)  # background-suppressed pooling
            n, r, c = tokens.shape
            regions.append(project(tokens.reshape(n * r, c)).reshape(n, r, -1) * weights + embedding)
            globals_.append(project(pooled) + embedding)
        if not self.use_gnn:
            return self.concat(torch.cat(globals_, dim=1)), mask
        nodes = torch.cat([torch.stack(globals_, dim=1), *regions], dim=1)
        for layer in self.graph:
            nodes = layer(nodes)
        return nodes[:, : len(globals_)].mean(1), mask


class FDHMFE(HashingModule):
    method_id = "fdh_mfe"
    display_name = "FDH-MFE"  # in tables and figures
    seed_method = True

    def __init__(self, *args, grid: int = 4, fusion_dim: int = 256, gnn_layers: int = 2, use_gnn: bool = True,
                 use_shallow: bool = True, suppress_background: bool = True, proxy_weight: float = 1.0,
                 proxy_scale: float = 8.0, proxy_margin: float = 0.1, balance_weight: float = 0.1,
                 triplet_weight: float = 0.5, triplet_margin: float = 0.25, triplet_mining: Mining = "batch_hard",
                 quantization_weight: float = 0.1, num_classes: int | None = None, **kwargs):
        """grid: regions per side of every tapped stage (the deep map's size at the input resolution is
        a good choice: 4 at 128 px, 7 at 224 px). num_classes: how many proxies; by default the data
        set's number of classes."""
        super().__init__(*args, **kwargs)
        self.proxies = nn.Parameter(torch.randn(num_classes, self.bits)) if num_classes else None
        self.proxy_weight, self.proxy_scale, self.proxy_margin = proxy_weight, proxy_scale, proxy_margin
        self.balance_weight, self.quantization_weight = balance_weight, quantization_weight
        self.triplet_weight, self.triplet_margin, self.triplet_mining = triplet_weight, triplet_margin, triplet_mining

    @property
    def wants_class_balanced_batches(self) -> bool:  # P x K batches on fine-grained data (data.batches auto)
        return bool(self.triplet_weight)

    def build_extractor(self) -> nn.Module:
        return StageGrids(self.backbone, default_taps(self.backbone), self.hparams.grid)

    def build_head(self, feature_dim: int) -> nn.Module:
        hp = self.hparams
        fusion = MultiLevelFusion(self.extractor.level_channels, hp.fusion_dim, hp.gnn_layers, hp.use_gnn,
                                  hp.use_shallow, hp.suppress_background)
        return FusionHashHead(fusion, hp.fusion_dim, self.bits, hp.head_dropout)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.proxies is None:  # one proxy per class of the data set, known once the data is read
            self.hparams.num_classes = self.trainer.datamodule.num_classes
            self.proxies = nn.Parameter(torch.randn(self.hparams.num_classes, self.bits, device=self.device))

    def parameter_groups(self) -> list[dict]:
        return [*super().parameter_groups(), {"params": [self.proxies], "lr": self.hparams.lr}]

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                  indices: torch.Tensor):
        if labels.shape[1] != len(self.proxies):
            raise ValueError(f"fdh_mfe: model.num_classes = {len(self.proxies)} proxies, but the data has "
                             f"{labels.shape[1]} classes; leave num_classes unset to use the data's")
        terms = {  # a term switched off (weight 0) is not computed at all
            "proxy": (self.proxy_weight, lambda: proxy_loss(codes, self.proxies, labels, self.proxy_scale,
                                                            self.proxy_margin, self.multi_label)),
            "balance": (self.balance_weight, lambda: bit_balance_loss(codes)),
            "triplet": (self.triplet_weight, lambda: triplet_loss(codes, labels, self.triplet_margin,
                                                                  self.triplet_mining)),
            "quantization": (self.quantization_weight, lambda: quantization_loss(codes)),
        }
        parts = {name: term() for name, (weight, term) in terms.items() if weight}
        total = sum((terms[name][0] * value for name, value in parts.items()), codes.new_zeros(()))
        if self.triplet_weight:  # logged, not trained: anchors without a positive in the batch add nothing
            parts["triplet_anchor_share"] = triplet_coverage(labels)
        return total, parts

    def background_mask(self, images: torch.Tensor) -> torch.Tensor:
        """(n, g, g) suppression mask of images in [0, 1] (for `hashlab explain`)."""
        return self.head.fusion.mask(self.extract(images))

    def extra_metrics(self) -> dict[str, float]:
        return {**super().extra_metrics(), **proxy_separation(self.proxies.detach())}


class FusionHashHead(nn.Module):
    def __init__(self, fusion: MultiLevelFusion, dim: int, bits: int, dropout: float):
        super().__init__()
        self.fusion = fusion
        self.hash = nn.Sequential(nn.BatchNorm1d(dim), nn.Dropout(dropout), nn.Linear(dim, bits), nn.Tanh())

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        fused, _ = self.fusion(stacked)
        return self.hash(fused)
