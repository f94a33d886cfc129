"""Backbone registry: ``create_backbone("efficientnet_lite0", pretrained=True)``.

Every backbone is a :class:`Backbone`: a list of convolutional stages (so later code can tap
stage outputs, or cache the early stages and train the late ones) and an ``embed`` step that
turns the last feature map into the vector the hash head reads. Inputs are images in [0, 1];
each backbone normalises them itself, so cached features and transforms can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class Backbone(nn.Module):
    def __init__(self, name: str, stages: list[nn.Module], embed: nn.Module, feature_dim: int,
                 mean: tuple[float, float, float], std: tuple[float, float, float],
                 classifier: nn.Module | None = None, stage_channels: list[int] | None = None):
        super().__init__()
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.embed = embed
        self.classifier = classifier  # the ImageNet head, kept for checks and CAM; never trained here
        self.feature_dim = feature_dim
        self.stage_channels = stage_channels or []
        self.min_image_size = 32  # the stride of the deepest map: a smaller input has no pixel left there
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def cache_name(self) -> str:
        """What the frozen-feature cache calls this extractor's output (the pooled feature vector)."""
        return self.name

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (n, 3, H, W) -> feature vectors (n, feature_dim)."""
        return self.embed(self.feature_map(images))

    @torch.no_grad()
    def imagenet_logits(self, images: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError(f"backbone {self.name!r} has no ImageNet classifier")
        return self.classifier(self(images))


@dataclass(frozen=True)
class BackboneEntry:
    factory: Callable[[bool], Backbone]
    description: str
    needs_download: bool  # pretrained weights come from the internet (torchvision) rather than a package


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, description: str, needs_download: bool = True):
    def decorator(factory: Callable[[bool], Backbone]):
        _REGISTRY[name] = BackboneEntry(factory, description, needs_download)
        return factory
    return decorator


def available_backbones() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def create_backbone(name: str, pretrained: bool = True) -> Backbone:
    _import_builtin()
    if name not in _REGISTRY:
        from hashlab.errors import ConfigError, close_matches
        raise ConfigError(f"model.backbone: unknown backbone {name!r}{close_matches(name, _REGISTRY)}; available: "
                          f"{', '.join(sorted(_REGISTRY))}. Register a new one with @hashlab.backbones.register_backbone.")
    return _REGISTRY[name].factory(pretrained)


def _import_builtin():
    # the built-in entries register themselves on import
    from hashlab.backbones import efficientnet, torchvision_models  # noqa: F401


class GlobalAveragePool(nn.Sequential):
    def __init__(self):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
