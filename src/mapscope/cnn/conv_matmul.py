"""A convolution over a small map as three matrix products, for training on the CPU.

The reference network's last convolution maps 5x5x64 to 3x3x128: nine output positions per
image. oneDNN's backward for so small a map has a fixed cost of about 0.4 ms a step and runs at
half the rate of its forward. Gathering each position's patch once (64 images x 9 positions x
576 values, 1.3 MB) turns the forward, the filters' gradient and the input's gradient into one
matrix product each, at the library's full rate; the patches' gradient goes back onto the map
as k x k slice additions.

Where it pays was measured on 2 cores, forward and backward of a batch of 64 (AMD Zen 2): 3x3
maps with 576 or 1152 values per patch, 3.25 -> 2.82 ms and 6.16 -> 5.15 ms; a 2x2 map, 2.23 ->
1.91 ms. It lost on a 4x4 map (4.41 -> 4.89 ms) and on 288-value patches (1.33 -> 1.49 ms), so
``applies`` asks for at most 9 positions and at least 512 values per patch.

The result equals ``F.conv2d`` up to float rounding, in the same layout (NCHW shape over
channels-last memory). Matrix products on the same threads sum in the same order, so a training
stays reproducible for a seed and a thread count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_POSITIONS = 9  # output positions per image (a 3x3 map)
MIN_PATCH = 512  # values per patch: kernel height x width x input channels


def padding_of(conv: nn.Conv2d) -> tuple[int, int] | None:
    """Rows and columns of zeros on each side; None for torch's uneven "same" (even kernels)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        k = conv.kernel_size[0]
        return ((k - 1) // 2,) * 2 if k % 2 else None
    return conv.padding  # type: ignore[return-value]  # a pair of ints once built


def applies(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv(x)`` may take this path (see the module's docstring)."""
    if not (
        isinstance(conv, nn.Conv2d)
        and x.device.type == "cpu"
        and x.dtype == conv.weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")  # bf16 stays with oneDNN's convolution
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    ):
        return False
    pad = padding_of(conv)
    if pad is None:
        return False
    rows = x.shape[2] + 2 * pad[0] - conv.kernel_size[0] + 1
    cols = x.shape[3] + 2 * pad[1] - conv.kernel_size[1] + 1
    patch = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels
    return 0 < rows * cols <= MAX_POSITIONS and patch >= MIN_PATCH


def conv_matmul(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` through its patches; differentiable in ``x`` and the conv's parameters."""
    pad = padding_of(conv)
    if pad is not None and pad != (0, 0):
        x = F.pad(x, (pad[1], pad[1], pad[0], pad[0]))
    return _ConvAsMatmul.apply(x, conv.weight, conv.bias)


class _ConvAsMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        n, n_in, height, width = x.shape
        n_out, _, kh, kw = weight.shape
        rows, cols = height - kh + 1, width - kw + 1
        pixels = x.detach().permute(0, 2, 3, 1)  # (N, H, W, in): free for channels-last input
        # (N, rows, cols, in, kh, kw) -> one row per output position, in (kh, kw, in) order
        patches = pixels.unfold(1, kh, 1).unfold(2, kw, 1).permute(0, 1, 2, 4, 5, 3)
        patches = patches.reshape(n * rows * cols, kh * kw * n_in)
        filters = weight.detach().permute(0, 2, 3, 1).reshape(n_out, kh * kw * n_in)
        if bias is None:
            out = patches @ filters.t()
        else:
            out = torch.addmm(bias.detach(), patches, filters.t())
        ctx.save_for_backward(patches, filters)
        ctx.setup = (x.shape, (kh, kw), memory_format_of(weight), bias is not None)
        return out.view(n, rows, cols, n_out).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        patches, filters = ctx.saved_tensors
        (n, n_in, height, width), (kh, kw), weight_format, has_bias = ctx.setup
        n_out = filters.shape[0]
        rows, cols = height - kh + 1, width - kw + 1
        grad = grad.permute(0, 2, 3, 1).reshape(n * rows * cols, n_out)
        grad_x = None
        if ctx.needs_input_grad[0]:
            per_patch = (grad @ filters).view(n, rows, cols, kh, kw, n_in)
            summed = torch.zeros(n, height, width, n_in)
            for ky in range(kh):
                for kx in range(kw):
                    summed[:, ky : ky + rows, kx : kx + cols] += per_patch[:, :, :, ky, kx]
            grad_x = summed.permute(0, 3, 1, 2)
        grad_w = (grad.t() @ patches).view(n_out, kh, kw, n_in).permute(0, 3, 1, 2)
        grad_w = grad_w.contiguous(memory_format=weight_format)
        grad_b = grad.sum(0) if has_bias else None
        return grad_x, grad_w, grad_b


def memory_format_of(weight: torch.Tensor) -> torch.memory_format:
    """The gradient goes back in the weight's layout: fused Adam steps both in one pass."""
    if weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
