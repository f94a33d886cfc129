"""torchvision ImageNet backbones. Their weights download from the internet the first time
(into torch's hub cache); without a cache and a connection the error says how to proceed."""

from __future__ import annotations

import torchvision
from torch import nn

from hashlab.backbones.registry import Backbone, GlobalAveragePool, register_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load(builder, weights_enum, pretrained: bool, name: str, **kwargs):
    if not pretrained:
        return builder(weights=None, **kwargs)
    try:
        return builder(weights=weights_enum.DEFAULT, **kwargs)
    except Exception as error:  # URLError, SSL errors, timeouts: all mean "no weights here"
        raise RuntimeError(
            f"backbone {name!r}: could not load ImageNet weights ({error.__class__.__name__}: {error}). "
            "torchvision downloads them into ~/.cache/torch/hub on first use, which needs internet. "
            f"Either run once where there is internet, copy {weights_enum.DEFAULT.url.rsplit('/', 1)[-1]} "
            "into ~/.cache/torch/hub/checkpoints/, or set `pretrained: false` (the model.backbone_pretrained "
            "option), or use the offline backbone efficientnet_lite0.") from error


class _FlattenThen(nn.Sequential):
    """AlexNet/VGG style: adaptive pool to the classifier's grid, flatten, the fc6/fc7 layers."""

    def __init__(self, pool: nn.Module, fc_layers: nn.Sequential):
        super().__init__(pool, nn.Flatten(1), fc_layers)


GOOGLENET_INPUT = (0.5, 0.5, 0.5)  # what torchvision's GoogLeNet weights expect, see googlenet_backbone


@register_backbone("googlenet", "GoogLeNet / Inception v1 (torchvision, ImageNet weights need a download)")
def googlenet(pretrained: bool = True) -> Backbone:
    m = _load(torchvision.models.googlenet, torchvision.models.GoogLeNet_Weights, pretrained, "googlenet",
              **({} if pretrained else {"aux_logits": False, "init_weights": True}))
    return googlenet_backbone(m)


def googlenet_backbone(m) -> Backbone:
    """torchvision's pretrained GoogLeNet sets transform_input=True: it maps its ImageNet-normalised
    input to (x - 0.5) / 0.5, the normalisation its ported weights were trained with. Our Backbone
    normalises images in [0, 1] itself, so it applies (x - 0.5) / 0.5 directly and turns the
    transform off: the same numbers reach conv1 (tests/test_backbones.py checks the logits)."""
    m.transform_input = False
    stages = [nn.Sequential(m.conv1, m.maxpool1, m.conv2, m.conv3, m.maxpool2),
              nn.Sequential(m.inception3a, m.inception3b, m.maxpool3),
              nn.Sequential(m.inception4a, m.inception4b, m.inception4c, m.inception4d, m.inception4e, m.maxpool4),
              nn.Sequential(m.inception5a, m.inception5b)]
    return Backbone("googlenet", stages, GlobalAveragePool(), 1024, GOOGLENET_INPUT, GOOGLENET_INPUT,
                    classifier=m.fc, stage_channels=[192, 480, 832, 1024])


def _fc_backbone(name, builder, weights, pretrained, cut):
    return fc_backbone(name, _load(builder, weights, pretrained, name), cut)


def fc_backbone(name: str, m, cut) -> Backbone:
    fc67 = m.classifier[:-1]  # up to fc7 + ReLU (+ dropout): the usual 4096-d hashing feature
    stages = [m.features[a:b] for a, b in cut]
    return Backbone(name, stages, _FlattenThen(m.avgpool, fc67), 4096, IMAGENET_MEAN, IMAGENET_STD,
                    classifier=m.classifier[-1])


ALEXNET_STAGES = [(0, 3), (3, 6), (6, 13)]
VGG16_STAGES = [(0, 5), (5, 10), (10, 17), (17, 24), (24, 31)]


@register_backbone("alexnet", "AlexNet, fc7 features (torchvision, ImageNet weights need a download)")
def alexnet(pretrained: bool = True) -> Backbone:
    return _fc_backbone("alexnet", torchvision.models.alexnet, torchvision.models.AlexNet_Weights, pretrained,
                        ALEXNET_STAGES)


@register_backbone("vgg16", "VGG-16, fc7 features (torchvision, ImageNet weights need a download)")
def vgg16(pretrained: bool = True) -> Backbone:
    return _fc_backbone("vgg16", torchvision.models.vgg16, torchvision.models.VGG16_Weights, pretrained,
                        VGG16_STAGES)


def _resnet(name, builder, weights, pretrained, channels):
    return resnet_backbone(name, _load(builder, weights, pretrained, name), channels)


def resnet_backbone(name: str, m, channels) -> Backbone:
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    return Backbone(name, [stem, m.layer1, m.layer2, m.layer3, m.layer4], GlobalAveragePool(), channels[-1],
                    IMAGENET_MEAN, IMAGENET_STD, classifier=m.fc, stage_channels=channels)


@register_backbone("resnet18", "ResNet-18 (torchvision, ImageNet weights need a download)")
def resnet18(pretrained: bool = True) -> Backbone:
    return _resnet("resnet18", torchvision.models.resnet18, torchvision.models.ResNet18_Weights, pretrained,
                   [64, 64, 128, 256, 512])


@register_backbone("resnet50", "ResNet-50 (torchvision, ImageNet weights need a download)")
def resnet50(pretrained: bool = True) -> Backbone:
    return _resnet("resnet50", torchvision.models.resnet50, torchvision.models.ResNet50_Weights, pretrained,
                   [64, 256, 512, 1024, 2048])
