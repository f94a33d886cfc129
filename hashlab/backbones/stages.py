"""The stages of a backbone split at a cut, for partial mode: :class:`EarlyStages` (the first stages, whose
output is cached once) and :class:`LateStages` (the remaining ones, trained with the head on those cached maps)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EarlyStages(nn.Module):
    """Images in [0, 1] -> the output of the first ``count`` stages: what partial mode caches.

    With ``taps`` (a multi-level extractor's stage indices) the taps that fall before the cut are
    pooled to ``grid`` x ``grid`` here, and each image becomes one flat vector: those grids, then
    the map at the cut (what :class:`LateStages` splits apart again)."""

    def __init__(self, backbone, count: int, taps: list[int] | None = None, grid: int | None = None):
        super().__init__()
        self.backbone, self.count, self.taps, self.grid = backbone, count, list(taps or []), grid
        tapped = f"-taps{'.'.join(map(str, self.taps))}-grid{grid}" if self.taps else ""
        self.cache_name = f"{backbone.name}-stages0-{count - 1}{tapped}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone.normalize(images)
        pooled = []
        for index, stage in enumerate(self.backbone.stages[: self.count]):
            x = stage(x)
            if index in self.taps:
                pooled.append(F.adaptive_avg_pool2d(x, self.grid).flatten(1))
        return torch.cat([*pooled, x.flatten(1)], dim=1) if self.taps else x


class LateStages(nn.Module):
    """Cached early-stage maps -> the remaining stages -> what the head reads (the pooled vector, or
    with ``taps`` the stacked stage grids, as :class:`hashlab.backbones.taps.StageGrids` gives them);
    trained in partial mode. Holds no parameters of its own: its stages are the backbone's (state dict
    keys stay the same). ``flip`` mirrors a training batch's maps: a cached map of a mirrored image is
    close to the mirrored map, so flips stay a cheap augmentation after the cut."""

    memory_format = torch.channels_last  # benchmarks/training.py compares it with torch.contiguous_format

    def __init__(self, backbone, first: int, taps: list[int] | None = None, grid: int | None = None):
        super().__init__()
        self._backbone = [backbone]  # a plain list: not registered twice as a submodule
        self.first, self.taps, self.grid = first, list(taps or []), grid

    def _trained(self) -> list[nn.Module]:
        """The stages after the cut, and the embedding step when it is used (no taps): for AlexNet and VGG it
        holds fc6/fc7, which partial mode trains as the paper's fine-tuning does (EfficientNet's has none)."""
        backbone = self._backbone[0]
        return [*backbone.stages[self.first:], *([] if self.taps else [backbone.embed])]

    def parameters(self, recurse: bool = True):
        return (p for module in self._trained() for p in module.parameters(recurse))

    def requires_grad_(self, requires_grad: bool = True):
        for module in self._trained():
            module.requires_grad_(requires_grad)
        return self

    def _unpack(self, cached: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if not self.taps:
            return cached, []
        from hashlab.backbones.taps import stage_shapes
        shapes = stage_shapes(self._backbone[0])
        early = [t for t in self.taps if t < self.first]
        sizes = [shapes[t][0] * self.grid ** 2 for t in early]
        *pooled, flat = torch.split(cached, [*sizes, cached.shape[1] - sum(sizes)], dim=1)
        channels = shapes[self.first - 1][0]
        side = math.isqrt(flat.shape[1] // channels)
        grids = [p.reshape(len(p), shapes[t][0], self.grid, self.grid) for p, t in zip(pooled, early, strict=True)]
        return flat.reshape(len(flat), channels, side, side), grids

    def forward(self, cached: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
        backbone = self._backbone[0]
        x, grids = self._unpack(cached)
        if flip is not None:
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            grids = [torch.where(flip[:, None, None, None], g.flip(-1), g) for g in grids]
        x = x.contiguous(memory_format=self.memory_format)  # channels-last: oneDNN's faster layout on CPU
        for index, stage in enumerate(backbone.stages[self.first:], start=self.first):
            x = stage(x)
            if index in self.taps:
                grids.append(F.adaptive_avg_pool2d(x, self.grid))
        return torch.cat(grids, dim=1) if self.taps else backbone.embed(x)
