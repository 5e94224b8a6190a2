"""The first convolution and the max-pool after it as one CPU kernel, for training.

In the reference network the 26x26x32 output of ``Conv2D_1`` is the largest tensor of a training
step, yet only a quarter of it survives ``Max_Pool_1``. Torch writes it, pools it, then in the
backward pass zero-fills a gradient of the same size and scatters into it, only to reduce that
gradient to 288 kernel weights. Here each pooled value is computed window by window, keeping
the maximum and which position of the window gave it; the backward pass turns the pooled
gradient straight into kernel gradients. The big map is never stored. On 2 cores a training step
of the reference network (batch 64) went from 9.4 to 8.2 ms (fastest of 8 rounds; 7.2 ms with
the crop described in ``build.read_extents``).

Deeper convolutions (``Conv2D_2``) take a second path: the convolution stays torch's (oneDNN
is fast once there are input channels), but the pool records which window position won and the
backward pass is sparse. Only the winning position of each window receives gradient, and the
activation after the pool zeroes many of those too, so the convolution's backward needs
gradient at one position in four or fewer. Torch zero-fills the full-size gradient, scatters
into it and runs a dense backward over it; here each non-zero pooled gradient adds one
kernel-sized patch to the input gradient and one input patch to its channel's kernel gradient.
On 2 cores, ``Conv2D_2`` + ``Max_Pool_2`` forward and backward went from {torch_ms} to {ours_ms} ms.

Both are torch's ``max_pool2d(conv2d(x))`` up to float rounding (ties go to the first position
of a window, as in torch). They are used only where that holds: float32 on the CPU outside
autocast, stride 1, a square pool whose stride is its size, as ``nn.MaxPool2d(size)`` builds it.
The kernels are compiled by numba once per layer shape and cached on disk; every sum runs in a
fixed order, so the same threads give the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import NamedTuple

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
        and not torch.is_autocast_enabled("cpu")
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
    if not x.requires_grad:  # the first layer: the whole convolution in one kernel
        return _ConvMaxPool.apply(x, conv.weight, conv.bias, pool.kernel_size, size)
    if size is not None:  # the input rows and columns that the kept outputs read
        k, p = conv.kernel_size[0], pool.kernel_size
        x = x[:, :, : size[0] * p + k - 1, : size[1] * p + k - 1]
    return _ConvThenMaxPool.apply(x, conv.weight, conv.bias, pool.kernel_size)


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
        ctx.weight_format = _memory_format(weight)
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


class _ConvThenMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pool):
        n_out, n_in, k, _ = weight.shape
        kernels = _sparse_kernels(n_in, n_out, k, pool)
        maps = F.conv2d(x, weight, bias).permute(0, 2, 3, 1).contiguous()  # free: oneDNN's layout
        rows, cols = maps.shape[1] // pool, maps.shape[2] // pool
        out = torch.empty(x.shape[0], rows, cols, n_out)
        window = torch.empty(x.shape[0], rows, cols, n_out, dtype=torch.int8)
        kernels.max_pool(maps.numpy(), out.numpy(), window.numpy())
        pixels = x.detach().permute(0, 2, 3, 1).contiguous()
        ctx.save_for_backward(pixels, weight, window)
        ctx.pool = pool
        ctx.weight_format = _memory_format(weight)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        pixels, weight, window = ctx.saved_tensors
        n_out, n_in, k, _ = weight.shape
        kernels = _sparse_kernels(n_in, n_out, k, ctx.pool)
        grad = grad.permute(0, 2, 3, 1).contiguous()
        n, height, width, _ = pixels.shape
        grad_x = None
        if ctx.needs_input_grad[0]:
            # (out, k, k * in): one kernel row of a filter is contiguous, as is one input row
            rows = weight.detach().permute(0, 2, 3, 1).reshape(n_out, k, k * n_in).contiguous()
            flat = torch.empty(n, height, width * n_in)
            kernels.grad_input(rows.numpy(), grad.numpy(), window.numpy(), flat.numpy())
            grad_x = flat.view(n, height, width, n_in).permute(0, 3, 1, 2)
        grad_w = torch.empty(n_out, k, k * n_in)
        kernels.grad_weight(
            pixels.view(n, height, width * n_in).numpy(),
            grad.numpy(),
            window.numpy(),
            grad_w.numpy(),
            numba.get_num_threads(),
        )
        grad_w = grad_w.view(n_out, k, k, n_in).permute(0, 3, 1, 2)
        grad_w = grad_w.contiguous(memory_format=ctx.weight_format)
        return grad_x, grad_w, grad.sum((0, 1, 2)), None


def _memory_format(weight: torch.Tensor) -> torch.memory_format:
    """The gradient goes back in the weight's layout: fused Adam steps both in one pass."""
    if weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


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


class _SparseKernels(NamedTuple):
    max_pool: Callable
    grad_input: Callable
    grad_weight: Callable


@cache
def _sparse_kernels(n_in: int, n_out: int, k: int, pool: int) -> _SparseKernels:
    """Max-pool with window positions, and the sparse backward of the convolution before it.

    The backward adds scaled rows of ``k * n_in`` contiguous values, four sources at a time
    (one store per four multiply-adds). Rows are slices indexed by the loop counter: with
    computed signed indices numba checks each one for wrap-around, and LLVM no longer
    vectorises (measured 6 against 36-41 GFLOP/s on one core).
    """
    row = k * n_in  # one kernel row of one filter; one input row under it (channels-last)
    windows = pool * pool

    @njit(parallel=True, fastmath=True, cache=True)
    def max_pool(maps, out, window):
        # maps (N, H, W, out) -> out, window (N, rows, cols, out); ties go to the first position
        for n in prange(out.shape[0]):
            for r in range(out.shape[1]):
                for c in range(out.shape[2]):
                    best_out = out[n, r, c]
                    best_at = window[n, r, c]
                    first = maps[n, r * pool, c * pool]
                    for ch in range(n_out):
                        best = first[ch]
                        at = 0
                        for w in range(1, windows):
                            v = maps[n, r * pool + w // pool, c * pool + w % pool, ch]
                            if v > best:
                                best = v
                                at = w
                        best_out[ch] = best
                        best_at[ch] = at

    @njit(parallel=True, fastmath=True, cache=True)
    def grad_input(weight, grad, window, grad_x):
        # weight (out, k, row); grad, window (N, rows, cols, out); grad_x (N, H, W * in)
        for n in prange(grad.shape[0]):
            image = grad_x[n]
            image[:] = 0.0
            # per window position, the filters whose maximum is there (padded with scale 0)
            picked = np.zeros((windows, n_out + 4), np.int64)
            scale = np.zeros((windows, n_out + 4), np.float32)
            count = np.zeros(windows, np.int64)
            for r in range(grad.shape[1]):
                for c in range(grad.shape[2]):
                    g = grad[n, r, c]
                    at = window[n, r, c]
                    count[:] = 0
                    for ch in range(n_out):  # no branch: write always, count the non-zeros
                        w = at[ch]
                        picked[w, count[w]] = ch
                        scale[w, count[w]] = g[ch]
                        count[w] += g[ch] != 0.0
                    for w in range(windows):
                        m = count[w]
                        if m == 0:
                            continue
                        scale[w, m : m + 3] = 0.0
                        top = r * pool + w // pool
                        left = (c * pool + w % pool) * n_in
                        chosen = picked[w]
                        factor = scale[w]
                        for q in range(0, m, 4):
                            s0, s1, s2, s3 = factor[q], factor[q + 1], factor[q + 2], factor[q + 3]
                            for ky in range(k):
                                w0 = weight[chosen[q], ky]
                                w1 = weight[chosen[q + 1], ky]
                                w2 = weight[chosen[q + 2], ky]
                                w3 = weight[chosen[q + 3], ky]
                                dst = image[top + ky, left : left + row]
                                for j in range(row):
                                    dst[j] += (s0 * w0[j] + s1 * w1[j]) + (s2 * w2[j] + s3 * w3[j])

    @njit(parallel=True, fastmath=True, cache=True)
    def grad_weight(pixels, grad, window, grad_w, parts):
        # pixels (N, H, W * in); grad_w (out, k, row). Each task owns a block of filters and
        # walks the images in order, so one image's pixels serve all its filters from cache.
        cells = grad.shape[1] * grad.shape[2]
        per_part = -(-n_out // parts)
        for part in prange(parts):
            first, last = part * per_part, min(n_out, (part + 1) * per_part)
            grad_w[first:last] = 0.0
            top = np.zeros(cells + 4, np.int64)  # the non-zero gradients of one filter, image
            left = np.zeros(cells + 4, np.int64)
            scale = np.zeros(cells + 4, np.float32)
            for n in range(grad.shape[0]):
                image = pixels[n]
                for ch in range(first, last):
                    m = 0
                    for r in range(grad.shape[1]):
                        for c in range(grad.shape[2]):
                            v = grad[n, r, c, ch]
                            w = window[n, r, c, ch]
                            top[m] = r * pool + w // pool
                            left[m] = (c * pool + w % pool) * n_in
                            scale[m] = v
                            m += v != 0.0
                    scale[m : m + 3] = 0.0
                    total = grad_w[ch]
                    for q in range(0, m, 4):
                        s0, s1, s2, s3 = scale[q], scale[q + 1], scale[q + 2], scale[q + 3]
                        for ky in range(k):
                            x0 = image[top[q] + ky, left[q] : left[q] + row]
                            x1 = image[top[q + 1] + ky, left[q + 1] : left[q + 1] + row]
                            x2 = image[top[q + 2] + ky, left[q + 2] : left[q + 2] + row]
                            x3 = image[top[q + 3] + ky, left[q + 3] : left[q + 3] + row]
                            dst = total[ky]
                            for j in range(row):
                                dst[j] += (s0 * x0[j] + s1 * x1[j]) + (s2 * x2[j] + s3 * x3[j])

    return _SparseKernels(max_pool, grad_input, grad_weight)
