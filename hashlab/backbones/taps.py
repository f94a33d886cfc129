"""Stage-feature taps: the outputs of several stages of any registered backbone, shallow to deep.

Multi-level methods (fdh_mfe) read a backbone at several depths. :func:`default_taps` picks,
for any backbone, the last stage at each of its deepest resolutions (e.g. strides 8, 16 and 32
for EfficientNet-Lite0 and ResNets), and :class:`StageGrids` returns those maps average-pooled to
a common ``grid x grid`` and stacked on channels: one tensor per image, which the frozen-feature
cache can store like a pooled vector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashlab.backbones.registry import Backbone

PROBE_SIZE = 224


@torch.no_grad()
def stage_shapes(backbone: Backbone, size: int = PROBE_SIZE) -> list[tuple[int, int]]:
    """(channels, spatial size) of every stage's output for a size x size input (memoised)."""
    key = (backbone.name, size)
    if key not in _SHAPES:
        was_training = backbone.training
        x = backbone.normalize(torch.zeros(1, 3, size, size, device=backbone.mean.device))
        shapes = []
        backbone.eval()
        for stage in backbone.stages:
            x = stage(x)
            shapes.append((x.shape[1], x.shape[-1]))
        backbone.train(was_training)
        _SHAPES[key] = shapes
    return _SHAPES[key]


_SHAPES: dict[tuple[str, int], list[tuple[int, int]]] = {}


def default_taps(backbone: Backbone, levels: int = 3) -> list[int]:
    """Indices of the last stage at each resolution, the deepest ``levels`` of them, shallow first."""
    shapes = stage_shapes(backbone)
    last_at_size = [i for i, (_, size) in enumerate(shapes) if i + 1 == len(shapes) or shapes[i + 1][1] != size]
    if len(last_at_size) < levels:
        raise ValueError(f"backbone {backbone.name!r} has {len(last_at_size)} resolutions, fewer than {levels} levels")
    return last_at_size[-levels:]


class StageGrids(nn.Module):
    """Images in [0, 1] -> (n, sum of tapped channels, grid, grid)."""

    def __init__(self, backbone: Backbone, taps: list[int], grid: int):
        super().__init__()
        if sorted(taps) != list(taps) or not taps or taps[-1] >= len(backbone.stages):
            raise ValueError(f"taps {taps} must be increasing stage indices of {backbone.name} "
                             f"(0..{len(backbone.stages) - 1})")
        self.backbone, self.taps, self.grid = backbone, list(taps), grid
        shapes = stage_shapes(backbone)
        self.level_channels = [shapes[i][0] for i in self.taps]
        self.cache_name = f"{backbone.name}-taps{'.'.join(map(str, self.taps))}-grid{grid}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone.normalize(images)
        grids = []
        for index, stage in enumerate(self.backbone.stages[: self.taps[-1] + 1]):
            x = stage(x)
            if index in self.taps:
                grids.append(F.adaptive_avg_pool2d(x, self.grid))
        return torch.cat(grids, dim=1)

    def split_levels(self, stacked: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(stacked, self.level_channels, dim=1))
