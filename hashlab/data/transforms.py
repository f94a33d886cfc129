"""The evaluation transforms of each image family: what cached features, tests and search indexes see.
Free of Lightning, so that image search can use them without importing the training stack."""

from __future__ import annotations

from typing import Literal

import torch
from torchvision.transforms import v2

TransformFamily = Literal["small", "photo", "finegrained"]


def resize_size(image_size: int) -> int:
    """The ImageNet recipe's short side before the crop, scaled to the crop size (256 for 224)."""
    return int(round(image_size * 256 / 224))


def eval_transform(image_size: int, family: TransformFamily = "small"):
    """The evaluation transform of a family (what cached features, tests and search indexes see):
    CIFAR-style images resized whole; photos resized on the short side and centre-cropped."""
    if family == "small":
        geometry = [v2.Resize((image_size, image_size), antialias=True)]
    else:
        geometry = [v2.Resize(resize_size(image_size), antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True)])
