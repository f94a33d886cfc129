"""Faster training of depthwise convolutions on CPU.

oneDNN computes the weight gradient of a 5 x 5 depthwise convolution several times slower than the
same sum written as one product per kernel tap and compiled by ``torch.compile`` (measured on the
late stages of EfficientNet-Lite0 at 128 px, batch 50: 8.4 against 1.8 ms for 672 x 8 x 8 maps,
5.8 against 0.5 ms for 1152 x 4 x 4; benchmarks/training.py ``depthwise``). Those stages are what the
cpu profile trains, and their depthwise weight gradients were about a quarter of a training step.

:func:`speed_up_depthwise` gives a module's depthwise convolutions that weight gradient; their forward
pass, input gradient and parameters (state-dict keys included) stay PyTorch's. It runs on CPU only,
while gradients are taken; ``HASHLAB_FAST_DEPTHWISE=0`` turns it off, and without a working
``torch.compile`` (no C++ compiler) the convolutions fall back to oneDNN with one warning.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.padding import pad_same
from torch import nn

_compiled = None  # the compiled weight gradient, built at the first backward pass
_compile_failed = False


def weight_grad_by_taps(x: torch.Tensor, grad: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                        padding: tuple[int, int]) -> torch.Tensor:
    """d loss / d weight of a depthwise convolution: for each kernel tap (i, j), the sum over batch and
    positions of the padded input seen by that tap times the output gradient. (C, 1, kh, kw)."""
    padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))  # compiled, never materialised
    height, width = grad.shape[-2:]
    taps = [(padded[:, :, i:i + stride[0] * (height - 1) + 1:stride[0],
                    j:j + stride[1] * (width - 1) + 1:stride[1]] * grad).sum((0, 2, 3))
            for i in range(kernel[0]) for j in range(kernel[1])]
    return torch.stack(taps, 1).view(-1, 1, *kernel)


# one compiled kernel per depthwise layer shape (training batches have one size): a whole backbone has about
# twenty, above torch's default limit of 8, past which dynamo would run the taps uncompiled, slowly
RECOMPILE_LIMIT = 64


def compiled_weight_grad():
    """weight_grad_by_taps compiled (once per process; dynamo keeps one kernel per input shape)."""
    global _compiled
    if _compiled is None:
        import logging

        import torch._dynamo
        # inductor's C++ build logs "No CUDA runtime is found" on every CPU-only machine: noise in a run's log
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # its older name
        setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))
        _compiled = torch.compile(weight_grad_by_taps, dynamic=False)
    return _compiled


def _weight_grad(x, grad, kernel, stride, padding):
    global _compile_failed
    if not _compile_failed:
        try:
            return compiled_weight_grad()(x, grad, kernel, stride, padding)
        except Exception as error:  # no C++ compiler, an unsupported Python: oneDNN's kernel is still correct
            _compile_failed = True
            warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); depthwise "
                          "weight gradients use oneDNN's slower kernel", RuntimeWarning, stacklevel=2)
    return None


def onednn_backward(grad, x, weight, stride, padding, weight_grad: bool) -> torch.Tensor:
    """PyTorch's own gradient of a depthwise convolution (oneDNN's kernel on CPU): the input's, or the weight's."""
    mask = [False, True, False] if weight_grad else [True, False, False]
    return torch.ops.aten.convolution_backward(grad, x, weight, None, list(stride), list(padding), [1, 1], False,
                                               [0, 0], weight.shape[0], mask)[1 if weight_grad else 0]


class _DepthwiseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_backward(grad, x, weight, ctx.stride, ctx.padding, weight_grad=False)
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, grad, tuple(weight.shape[-2:]), tuple(ctx.stride), tuple(ctx.padding))
            if grad_w is None:
                grad_w = onednn_backward(grad, x, weight, ctx.stride, ctx.padding, weight_grad=True)
        return grad_x, grad_w, None, None


class _FastDepthwise:
    """Mixed into a depthwise nn.Conv2d: the same forward, a faster weight gradient on CPU."""

    def forward(self, x):
        if not (torch.is_grad_enabled() and self.weight.requires_grad and x.device.type == "cpu"):
            return super().forward(x)
        padding = self.padding
        if isinstance(self, Conv2dSame):  # TF "same" padding, computed from the input's size
            x, padding = pad_same(x, self.weight.shape[-2:], self.stride, self.dilation), (0, 0)
        y = _DepthwiseConv2d.apply(x, self.weight, tuple(self.stride), tuple(padding))
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class FastDepthwiseConv2d(_FastDepthwise, nn.Conv2d):
    pass


class FastDepthwiseConv2dSame(_FastDepthwise, Conv2dSame):
    pass


def _is_slow_depthwise(conv: nn.Conv2d) -> bool:
    """A depthwise convolution whose oneDNN weight gradient is slow: 5 x 5 and larger (3 x 3 ones are
    as fast as the compiled sum)."""
    return (conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
            and conv.kernel_size[0] * conv.kernel_size[1] >= 25
            and tuple(conv.dilation) == (1, 1) and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))


def speed_up_depthwise(module: nn.Module) -> int:
    """Give every 5 x 5 or larger depthwise convolution in ``module`` the faster CPU weight gradient (in place: the module
    objects keep their parameters and names). Returns how many were changed."""
    if os.environ.get("HASHLAB_FAST_DEPTHWISE", "1") == "0":
        return 0
    changed = 0
    for conv in module.modules():
        if type(conv) is nn.Conv2d and _is_slow_depthwise(conv):
            conv.__class__ = FastDepthwiseConv2d
        elif type(conv) is Conv2dSame and _is_slow_depthwise(conv):
            conv.__class__ = FastDepthwiseConv2dSame
        else:
            continue
        changed += 1
    return changed
