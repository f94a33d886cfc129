"""The compiled depthwise weight gradient (hashlab.backbones.depthwise) against PyTorch's own, on the layer
kinds EfficientNet-Lite0's late stages have: a 5 x 5 depthwise convolution with symmetric padding and
timm's stride-2 "same"-padded one."""

import copy

import pytest
import torch
from timm.layers.conv2d_same import Conv2dSame
from torch import nn

from hashlab.backbones.depthwise import FastDepthwiseConv2d, FastDepthwiseConv2dSame, speed_up_depthwise


def small_stack() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 24, 1), nn.BatchNorm2d(24), nn.ReLU6(),
        nn.Conv2d(24, 24, 5, padding=2, groups=24, bias=False), nn.BatchNorm2d(24), nn.ReLU6(),
        Conv2dSame(24, 24, 5, stride=2, groups=24, bias=False), nn.ReLU6(),
        nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=True),  # 3 x 3: oneDNN is as fast, left alone
        nn.Conv2d(24, 4, 1)).to(memory_format=torch.channels_last)


def gradients(model, x):
    model.zero_grad()
    x = x.clone().requires_grad_()
    model(x).square().mean().backward()
    return x.grad, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_fast_depthwise_gradients_match_pytorch_and_repeat_exactly():
    reference = small_stack()
    fast = copy.deepcopy(reference)
    assert speed_up_depthwise(fast) == 2
    assert type(fast[3]) is FastDepthwiseConv2d and type(fast[6]) is FastDepthwiseConv2dSame
    assert type(fast[8]) is nn.Conv2d  # 3 x 3
    assert list(fast.state_dict()) == list(reference.state_dict())

    x = torch.randn(6, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # without gradients (evaluation) it runs PyTorch's forward, unchanged
        assert torch.equal(fast(x), reference(x))
    fast.load_state_dict(reference.state_dict())  # the BatchNorm statistics as they were
    expected_input, expected = gradients(reference, x)
    got_input, got = gradients(fast, x)
    torch.testing.assert_close(got_input, expected_input, rtol=1e-4, atol=1e-6)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
    # the weight gradient really is the compiled one (oneDNN's differs from it in the last bits) wherever a C++
    # compiler is (CI has one); only a machine without one warns once and falls back to oneDNN's
    import os
    import shutil

    from hashlab.backbones import depthwise
    compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")
    assert depthwise._compile_failed == (compiler is None), f"torch.compile failed with {compiler} on the machine"
    assert torch.equal(got["3.weight"], expected["3.weight"]) == depthwise._compile_failed
    # the same inputs give the same bits again (a rerun cell trains identically)
    again_input, again = gradients(fast, x)
    assert torch.equal(again_input, got_input) and all(torch.equal(again[n], got[n]) for n in got)


def test_fast_depthwise_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("HASHLAB_FAST_DEPTHWISE", "0")
    model = small_stack()
    assert speed_up_depthwise(model) == 0 and type(model[3]) is nn.Conv2d


@pytest.mark.parametrize("frozen", [True, False])
def test_a_frozen_depthwise_layer_gives_input_gradients_only(frozen):
    reference = small_stack()
    fast = copy.deepcopy(reference)
    speed_up_depthwise(fast)
    for model in (reference, fast):
        model[3].weight.requires_grad_(not frozen)
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    expected_input, _ = gradients(reference, x)
    got_input, _ = gradients(fast, x)
    torch.testing.assert_close(got_input, expected_input, rtol=1e-4, atol=1e-6)
    assert (fast[3].weight.grad is None) == frozen
