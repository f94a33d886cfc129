"""The registry and the embedded ImageNet weights, checked on real photographs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skdata

from hashlab.backbones import available_backbones, create_backbone
from hashlab.backbones.efficientnet import checkpoint_path, map_key


def photo(array: np.ndarray, size: int = 224) -> torch.Tensor:
    image = torch.from_numpy(array).permute(2, 0, 1).float().div(255).unsqueeze(0)
    short = min(image.shape[-2:])
    scale = 256 / short
    image = F.interpolate(image, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top:top + size, left:left + size]


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0", pretrained=True).eval()


def test_key_map_uses_every_tensor_of_the_checkpoint(lite0):
    source = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    mapped = {map_key(k) for k in source}
    assert len(mapped) == len(source) == 296  # one-to-one
    assert map_key("_blocks.3._expand_conv.weight") == "blocks.2.0.conv_pw.weight"
    assert map_key("_blocks.15._project_conv.weight") == "blocks.6.0.conv_pwl.weight"
    assert map_key("_bn1.running_var") == "bn2.running_var"
    # Lite1 and Lite2 have more blocks per stage: the flat lukemelas index maps by the variant's own layout
    lite1_layout = (1, 3, 3, 4, 4, 5, 1)
    assert map_key("_blocks.4._expand_conv.weight", lite1_layout) == "blocks.2.0.conv_pw.weight"
    assert map_key("_blocks.20._project_conv.weight", lite1_layout) == "blocks.6.0.conv_pwl.weight"


@pytest.mark.parametrize("variant", [0, 1, 2])
@pytest.mark.parametrize("image,classes", [(skdata.chelsea, range(281, 286)), (skdata.coffee, [967])])
def test_embedded_weights_classify_real_photos(variant, image, classes):
    """Every tensor of each packaged checkpoint lands in the model (the loader refuses otherwise), and the
    result recognises a tabby cat and a cup of coffee."""
    backbone = create_backbone(f"efficientnet_lite{variant}", pretrained=True).eval()
    top5 = backbone.imagenet_logits(photo(image())).topk(5).indices[0].tolist()
    assert set(top5) & set(classes), f"efficientnet_lite{variant}: top-5 {top5} misses {list(classes)}"


def test_feature_shapes_and_stage_channels(lite0):
    images = torch.rand(2, 3, 128, 128)
    assert lite0(images).shape == (2, 1280)
    x = lite0.normalize(images)
    for stage, channels in zip(lite0.stages, lite0.stage_channels, strict=True):
        x = stage(x)
        assert x.shape[1] == channels
    assert x.shape[-1] == 4  # stride 32


def test_registry_lists_the_torchvision_backbones_and_names_unknown_ones():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "googlenet", "alexnet", "vgg16",
            "resnet18", "resnet50"} <= set(available_backbones())
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'.*efficientnet_lite0"):
        create_backbone("resnet7")


@pytest.mark.parametrize("name,dim", [("googlenet", 1024), ("resnet18", 512), ("alexnet", 4096)])
def test_torchvision_backbones_build_without_weights(name, dim):
    backbone = create_backbone(name, pretrained=False).eval()
    assert backbone(torch.rand(1, 3, 112 if name != "alexnet" else 224, 112 if name != "alexnet" else 224)).shape == (1, dim)


def _torchvision_pairs():
    """(name, torchvision model with random weights as torchvision's own pipeline runs it, wrapper
    that turns such a model into hashlab's Backbone)."""
    import torchvision

    from hashlab.backbones import torchvision_models as tv
    return [
        # the pretrained builder sets transform_input=True: the weights expect (x - 0.5) / 0.5
        ("googlenet", lambda: torchvision.models.googlenet(weights=None, transform_input=True, aux_logits=False,
                                                           init_weights=True), tv.googlenet_backbone),
        ("alexnet", lambda: torchvision.models.alexnet(weights=None),
         lambda m: tv.fc_backbone("alexnet", m, tv.ALEXNET_STAGES)),
        ("vgg16", lambda: torchvision.models.vgg16(weights=None),
         lambda m: tv.fc_backbone("vgg16", m, tv.VGG16_STAGES)),
        ("resnet18", lambda: torchvision.models.resnet18(weights=None),
         lambda m: tv.resnet_backbone("resnet18", m, [64, 64, 128, 256, 512])),
        ("resnet50", lambda: torchvision.models.resnet50(weights=None),
         lambda m: tv.resnet_backbone("resnet50", m, [64, 256, 512, 1024, 2048])),
    ]


@pytest.mark.parametrize("name,build,wrap", _torchvision_pairs(), ids=lambda v: v if isinstance(v, str) else "")
def test_torchvision_backbones_give_torchvisions_own_logits(name, build, wrap):
    """The same weights and the same photo: torchvision's model fed as torchvision documents it
    (ImageNet-normalised input) and hashlab's Backbone fed the image in [0, 1] give the same logits."""
    import copy

    from torchvision.transforms import v2
    torch.manual_seed(0)
    reference = build().eval()
    image = photo(skdata.chelsea())
    normalized = v2.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))(image)
    with torch.no_grad():
        expected = reference(normalized)
    backbone = wrap(copy.deepcopy(reference)).eval()
    got = backbone.imagenet_logits(image)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_partial_mode_trains_the_fully_connected_layers_of_alexnet_after_the_cut():
    """AlexNet's and VGG's embedding step holds fc6/fc7 (the layers their papers fine-tune): partial mode must
    train them with the late stages, not leave them frozen at their ImageNet values."""
    from hashlab.backbones.stages import LateStages
    backbone = create_backbone("alexnet", pretrained=False)
    backbone.requires_grad_(False)
    late = LateStages(backbone, first=len(backbone.stages) - 1).requires_grad_(True)
    trained = {id(p) for p in late.parameters()}
    fc = list(backbone.embed.parameters())
    assert fc and all(id(p) in trained and p.requires_grad for p in fc)
    assert not any(p.requires_grad for p in backbone.stages[0].parameters())
    lite0 = create_backbone("efficientnet_lite0")  # its embedding (pooling) has no weights: nothing more to train
    assert not list(lite0.embed.parameters())
