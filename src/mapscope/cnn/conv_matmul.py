"""A convolution over a small map as three matrix products, for training on the CPU.

The reference network's last convolution maps 5x5x64 to 3x3x128: nine output positions per
image. oneDNN's backward for so small a map has a fixed cost of about 0.4 ms a step and runs at
half the rate of its forward. Gathering each position's patch once (64 images x 9 positions x
576 values, 1.3 MB) turns the forward, the filters' gradient and the input's gradient into one
matrix product each, at the library's full rate; the patches' gradient goes back onto the map
as one more product, with a 0/1 matrix of which patch entry lands on which pixel (in bf16 this
took 0.09 ms against 0.21 ms for k x k slice additions).

Where it pays was measured on 2 cores, forward and backward of a batch of 64 (AMD Zen 2): 3x3
maps with 576 or 1152 values per patch, 3.25 -> 2.82 ms and 6.16 -> 5.15 ms; a 2x2 map, 2.23 ->
1.91 ms. It lost on a 4x4 map (4.41 -> 4.89 ms) and on 288-value patches (1.33 -> 1.49 ms), so
``applies`` asks for at most 9 positions and at least 512 values per patch.

The result equals ``F.conv2d`` up to float rounding, in the same layout (NCHW shape over
channels-last memory). Under CPU autocast the three products run in its dtype (bf16), as
``F.conv2d`` would there, with the filters' gradient returned in float32 and the bias's summed
in float32: on an AVX512-BF16 CPU (AMD Zen 4, batch 64, fastest of 8 alternating blocks of
steps) a training step took 5.45 ms against 5.95 ms with oneDNN's bf16 convolution, whose
backward for this map alone took 1.3 ms. Matrix products on the same threads sum in the same
order, so a training stays reproducible for a seed and a thread count.
"""

from __future__ import annotations

from functools import cache

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
        and conv.weight.dtype == torch.float32
        and x.dtype in (torch.float32, compute_dtype())
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


def compute_dtype() -> torch.dtype:
    """What the products run in: CPU autocast's dtype where it is on, else float32."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32


def padded(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``x`` with the rows and columns of zeros that ``conv``'s padding adds on each side."""
    pad = padding_of(conv)
    if pad is None or pad == (0, 0):
        return x
    return F.pad(x, (pad[1], pad[1], pad[0], pad[0]))


def conv_matmul(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` through its patches; differentiable in ``x`` and the conv's parameters."""
    return _ConvAsMatmul.apply(padded(x, conv), conv.weight, conv.bias, compute_dtype())


class _ConvAsMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, dtype):
        n, n_in, height, width = x.shape
        n_out, _, kh, kw = weight.shape
        rows, cols = height - kh + 1, width - kw + 1
        pixels = x.detach().to(dtype).permute(0, 2, 3, 1)  # (N, H, W, in): free if channels-last
        # (N, rows, cols, in, kh, kw) -> one row per output position, in (kh, kw, in) order
        patches = pixels.unfold(1, kh, 1).unfold(2, kw, 1).permute(0, 1, 2, 4, 5, 3)
        patches = patches.reshape(n * rows * cols, kh * kw * n_in)
        filters = weight.detach().permute(0, 2, 3, 1).reshape(n_out, kh * kw * n_in).to(dtype)
        with torch.autocast("cpu", enabled=False):  # the dtype is chosen above
            if bias is None:
                out = patches @ filters.t()
            else:
                out = torch.addmm(bias.detach().to(dtype), patches, filters.t())
        ctx.save_for_backward(patches, filters)
        ctx.setup = (x.shape, x.dtype, (kh, kw), weight.dtype, memory_format_of(weight))
        ctx.has_bias = bias is not None
        return out.view(n, rows, cols, n_out).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        patches, filters = ctx.saved_tensors
        (n, n_in, height, width), x_dtype, (kh, kw), weight_dtype, weight_format = ctx.setup
        n_out = filters.shape[0]
        rows, cols = height - kh + 1, width - kw + 1
        grad = grad.to(patches.dtype).permute(0, 2, 3, 1).reshape(n * rows * cols, n_out)
        grad_x = None
        if ctx.needs_input_grad[0]:
            per_patch = (grad @ filters).view(n, rows * cols * kh * kw, n_in)
            landing = _landing(height, width, kh, kw, per_patch.dtype)
            summed = torch.matmul(landing, per_patch).view(n, height, width, n_in)
            grad_x = summed.to(x_dtype).permute(0, 3, 1, 2)
        grad_w = (grad.t() @ patches).to(weight_dtype).view(n_out, kh, kw, n_in)
        grad_w = grad_w.permute(0, 3, 1, 2).contiguous(memory_format=weight_format)
        grad_b = grad.sum(0, dtype=weight_dtype) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None


@cache
def _landing(height: int, width: int, kh: int, kw: int, dtype: torch.dtype) -> torch.Tensor:
    """Which patch entry lands on which pixel: a 0/1 matrix (pixels x patch entries), so that
    one product per image adds every patch's gradient back onto the map (the library sums in
    float32 and rounds once to the product's dtype)."""
    rows, cols = height - kh + 1, width - kw + 1
    pixel = torch.arange(height * width).view(height, width)
    landing = torch.zeros(height * width, rows, cols, kh, kw)
    for r in range(rows):
        for c in range(cols):
            at = pixel[r : r + kh, c : c + kw]
            landing[at, r, c, torch.arange(kh)[:, None], torch.arange(kw)] = 1.0
    return landing.view(height * width, -1).to(dtype)


def memory_format_of(weight: torch.Tensor) -> torch.memory_format:
    """The gradient goes back in the weight's layout: fused Adam steps both in one pass."""
    if weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
