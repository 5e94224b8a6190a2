"""The first convolution and the max-pool after it as one CPU kernel, for training.

In the reference network the 26x26x32 output of ``Conv2D_1`` is the largest tensor of a training
step, yet only a quarter of it survives ``Max_Pool_1``. Torch writes it, pools it, then in the
backward pass zero-fills a gradient of the same size and scatters into it, only to reduce that
gradient to 288 kernel weights. Here each pooled value is computed window by window, keeping
the maximum and which position of the window gave it; the backward pass turns the pooled
gradient straight into kernel gradients. The big map is never stored. On 2 cores a training step
of the reference network (batch 64) went from 9.4 to 8.2 ms (fastest of 8 rounds; 7.2 ms with
the crop described in ``build.read_extents``).

The result is torch's ``max_pool2d(conv2d(x))`` up to float rounding (ties go to the first
position of a window, as in torch). It is used only where it is exact and cheap: float32 on the
CPU, an input that needs no gradient (the first layer), stride 1, a square pool whose stride is
its size, as ``nn.MaxPool2d(size)`` builds it. The kernels are compiled by numba once per layer
shape and cached on disk.
"""

from __future__ import annotations

from functools import cache

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange
from torch import nn


def applies(conv: nn.Module, pool: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``pool(conv(x))`` can take the fused path (see the module docstring)."""
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(pool, nn.MaxPool2d)
        and x.device.type == "cpu"
        and x.dtype == conv.weight.dtype == torch.float32
        and not x.requires_grad
        and conv.bias is not None
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.kernel_size[0] == conv.kernel_size[1]
        and _padding(conv) is not None
        and _square_pool(pool)
    )


def _padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """Rows and columns of zeros on each side; None for torch's uneven "same" (even kernels)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        k = conv.kernel_size[0]
        return ((k - 1) // 2,) * 2 if k % 2 else None
    return conv.padding


def _square_pool(pool: nn.MaxPool2d) -> bool:
    size, stride = pool.kernel_size, pool.stride
    return (
        isinstance(size, int)
        and stride in (size, (size, size))
        and pool.padding == 0
        and pool.dilation == 1
        and not pool.ceil_mode
        and not pool.return_indices
        and size * size <= 127  # the window position is stored as int8
    )


def conv_max_pool(
    x: torch.Tensor,
    conv: nn.Conv2d,
    pool: nn.MaxPool2d,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``pool(conv(x))`` in one pass; differentiable with respect to the conv's weight and bias.

    ``size`` keeps only the top-left rows x columns of the result: the part that the following
    layers read (see ``Network``); computing the rest would be work whose gradient is zero.
    """
    pad = _padding(conv)
    if pad != (0, 0):
        x = F.pad(x, (pad[1], pad[1], pad[0], pad[0]))
    return _ConvMaxPool.apply(x, conv.weight, conv.bias, pool.kernel_size, size)


class _ConvMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pool, size):
        n_out, n_in, k, _ = weight.shape
        forward_kernel, _ = _kernels(n_in, n_out, k, pool)
        pixels = x.permute(0, 2, 3, 1).contiguous()  # free for channels-last input
        kernel = weight.detach().permute(2, 3, 1, 0).contiguous()
        rows = (x.shape[2] - k + 1) // pool
        cols = (x.shape[3] - k + 1) // pool
        if size is not None:
            rows, cols = min(rows, size[0]), min(cols, size[1])
        out = torch.empty(x.shape[0], rows, cols, n_out)
        window = torch.empty(x.shape[0], rows, cols, n_out, dtype=torch.int8)
        forward_kernel(
            pixels.numpy(), kernel.numpy(), bias.detach().numpy(), out.numpy(), window.numpy()
        )
        ctx.save_for_backward(pixels, window)
        ctx.shape = (n_in, n_out, k, pool)
        ctx.weight_format = (
            torch.channels_last
            if weight.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        return out.permute(0, 3, 1, 2)  # NCHW shape, channels-last memory

    @staticmethod
    def backward(ctx, grad):
        pixels, window = ctx.saved_tensors
        n_in, n_out, k, pool = ctx.shape
        _, backward_kernel = _kernels(n_in, n_out, k, pool)
        grad = grad.permute(0, 2, 3, 1).contiguous()
        # One partial sum per thread, added in a fixed order: same threads, same result.
        parts = torch.zeros(min(numba.get_num_threads(), len(grad)), k, k, n_in, n_out)
        backward_kernel(pixels.numpy(), grad.numpy(), window.numpy(), parts.numpy())
        grad_weight = parts.sum(0).permute(3, 2, 0, 1).contiguous(memory_format=ctx.weight_format)
        return None, grad_weight, grad.sum((0, 1, 2)), None, None


@cache
def _kernels(n_in: int, n_out: int, k: int, pool: int):
    """Kernels with the layer's sizes as compile-time constants.

    Constant loop bounds let LLVM unroll the window and kernel loops and vectorise over the
    output channels with the sums in registers; with run-time bounds the same code was about 3
    times slower.
    """
    span = pool + k - 1  # input rows/columns under one pooling window
    windows = pool * pool

    @njit(parallel=True, fastmath=True, cache=True)
    def forward(pixels, kernel, bias, out, window):
        # pixels (N, H, W, in), kernel (k, k, in, out), out/window (N, rows, cols, out)
        for n in prange(pixels.shape[0]):
            for row in range(out.shape[1]):
                for col in range(out.shape[2]):
                    patch = pixels[
                        n, row * pool : row * pool + span, col * pool : col * pool + span
                    ]
                    best_out = out[n, row, col]
                    best_at = window[n, row, col]
                    for c in range(n_out):
                        best = np.float32(-np.inf)
                        at = 0
                        for dy in range(pool):
                            for dx in range(pool):
                                s = np.float32(0.0)
                                for ky in range(k):
                                    for kx in range(k):
                                        for ci in range(n_in):
                                            s += patch[dy + ky, dx + kx, ci] * kernel[ky, kx, ci, c]
                                if s > best:
                                    best = s
                                    at = dy * pool + dx
                        best_out[c] = best + bias[c]
                        best_at[c] = at

    @njit(parallel=True, fastmath=True, cache=True)
    def backward(pixels, grad, window, parts):
        # parts (threads, k, k, in, out): each thread sums the kernel gradient of its images
        n_images = pixels.shape[0]
        per_part = -(-n_images // parts.shape[0])
        for part in prange(parts.shape[0]):
            total = parts[part]
            routed = np.empty((windows, n_out), np.float32)  # gradient per window position
            for n in range(part * per_part, min(n_images, (part + 1) * per_part)):
                for row in range(grad.shape[1]):
                    for col in range(grad.shape[2]):
                        patch = pixels[
                            n, row * pool : row * pool + span, col * pool : col * pool + span
                        ]
                        g = grad[n, row, col]
                        at = window[n, row, col]
                        for c in range(n_out):
                            for w in range(windows):
                                routed[w, c] = g[c] if at[c] == w else np.float32(0.0)
                        for ky in range(k):
                            for kx in range(k):
                                for ci in range(n_in):
                                    tap = total[ky, kx, ci]
                                    for c in range(n_out):
                                        s = tap[c]
                                        for dy in range(pool):
                                            for dx in range(pool):
                                                s += (
                                                    routed[dy * pool + dx, c]
                                                    * patch[dy + ky, dx + kx, ci]
                                                )
                                        tap[c] = s

    return forward, backward
