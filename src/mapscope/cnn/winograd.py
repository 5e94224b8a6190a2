"""3x3 convolutions by Winograd's minimal filtering, for training on the CPU in float32.

A convolution with an r x r kernel computes each m x m block of its output from one tile of
(m + r - 1)^2 input values. Winograd's algorithm (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016) transforms every tile and every filter into (m + r - 1)^2
numbers each; the sum over input channels then becomes one matrix product per transformed
position, and a last transform gives the block. For 3x3 kernels F(2x2, 3x3) does 16
multiplications for 4 outputs and F(3x3, 3x3) 25 for 9, where the direct convolution does 36 and
81. The transforms are a few additions per value (numba kernels here); the products are torch's
batched matrix products, at the library's full rate. The physical floor that
``benchmarks/cnn_train.py`` prints counts the direct convolution's multiplications, so these
layers may run below it.

Two layers of the reference network take it, in float32. Under bf16 autocast they keep their
bf16 paths: with the transformed values rounded to bf16, F(3x3, 3x3) was off by up to 2.6 % of
the largest output, and F(2x2, 3x3) by 0.53 % against 0.36 % for oneDNN's direct bf16
convolution, for about 0.1 ms of a 4 ms step.

- ``Conv2D_2`` before its 2x2 max-pool (``conv_pool``), forward only, where torch runs below
  AVX-512 (``pooled_pays``): with F(2x2, 3x3) the 2x2 output blocks are the pool's windows, so
  the output transform pools as it goes and the map is never stored. The backward stays
  ``conv_pool``'s sparse one, which reads only the input, the filters and the winning positions.
- ``Conv2D_3`` over the 5x5 map, forward and backward: one F(3x3, 3x3) tile per image, in place
  of ``conv_matmul``'s patches.

The transforms come from Toom-Cook interpolation at fixed points (``transforms``); they are
exact in real arithmetic, and in float32 the results differ from torch's convolution by a few
units in the last place of the largest values (relative 2-4e-6 against 5e-7 for oneDNN's direct
sums). Every kernel writes each output from one image or one filter alone, and the products run
on the same threads in the same order, so a training stays reproducible for a seed.

Measured on AMD Zen 4, batch 64, real images, whole training steps with each layer's path on
and off in turns in one process (medians of 12 rounds of 50 steps): held to AVX2 a step took
0.82x the time with Conv2D_3 by Winograd and 0.95x with Conv2D_2 (0.79x both) on 2 threads,
0.83x and 0.93x (0.78x) on one. With AVX-512 Conv2D_3 gave 0.83-0.85x, but Conv2D_2 0.97x on one
thread and 1.00-1.08x on two, where oneDNN's direct convolution is faster: there it keeps
oneDNN's.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
import torch
from numba import njit, prange
from torch import nn

from mapscope.cnn.conv_matmul import memory_format_of, padded, padding_of

KERNEL = 3  # r: the kernel size these transforms are made for
POINTS = {2: (0.0, 1.0, -1.0), 3: (0.0, 1.0, -1.0, 2.0)}  # interpolation points for m = 2 and 3


class Transforms(NamedTuple):
    """F(m x m, r x r): ``output = A^T [(G w G^T) * (B^T d B)] A`` for one tile ``d``."""

    output: np.ndarray  # A^T, m x n
    filter: np.ndarray  # G, n x r
    data: np.ndarray  # B^T, n x n


@cache
def transforms(m: int, r: int = KERNEL) -> Transforms:
    """The Toom-Cook matrices for blocks of m x m outputs and r x r kernels (n = m + r - 1),
    interpolating at ``POINTS[m]`` and infinity: A^T and G are Vandermonde rows, and B^T is
    solved so that the 1-D identity ``y_i = sum_k g_k d_(i+k)`` holds exactly."""
    points = np.array(POINTS[m], dtype=np.float64)
    n = m + r - 1
    output, filter_ = np.zeros((m, n)), np.zeros((n, r))
    for j, p in enumerate(points):
        scale = np.prod([p - q for q in points if q != p])
        output[:, j] = p ** np.arange(m)
        filter_[j] = p ** np.arange(r) / scale
    output[m - 1, n - 1] = filter_[n - 1, r - 1] = 1.0  # the point at infinity
    # sum_j A^T[i, j] G[j, k] B^T[j, l] = [l == i + k] for every i < m, k < r, l < n
    system = np.zeros((m, r, n, n, n))
    for i in range(m):
        for k in range(r):
            for l_ in range(n):
                system[i, k, l_, :, l_] = output[i] * filter_[:, k]
    wanted = np.zeros((m, r, n))
    for i in range(m):
        for k in range(r):
            wanted[i, k, i + k] = 1.0
    system = system.reshape(-1, n * n)
    data = np.linalg.lstsq(system, wanted.reshape(-1), rcond=None)[0].reshape(n, n)
    # the solver leaves 1e-15 where B^T has 0: rounded away, LLVM drops those products
    return Transforms(*(np.round(t, 9).astype(np.float32) + 0.0 for t in (output, filter_, data)))


def tiles_per_side(outputs: int, m: int) -> int | None:
    """How many m x m blocks cover ``outputs`` rows exactly; None where they do not."""
    return outputs // m if outputs > 0 and outputs % m == 0 else None


def takes(conv: nn.Module, x: torch.Tensor, m: int) -> bool:
    """Whether ``conv(x)`` can run as F(m x m, 3x3): a plain 3x3 convolution in float32 on the
    CPU (not under autocast) whose output rows and columns are whole blocks of m."""
    if not (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (KERNEL, KERNEL)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.weight.dtype == x.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
    ):
        return False
    pad = padding_of(conv)
    if pad is None:
        return False
    rows = x.shape[2] + 2 * pad[0] - KERNEL + 1
    cols = x.shape[3] + 2 * pad[1] - KERNEL + 1
    return tiles_per_side(rows, m) is not None and tiles_per_side(cols, m) is not None


class _Kernels(NamedTuple):
    tiles_in: object  # (N, H, W, C) input -> (n*n, tiles, C): B^T d B per tile
    filters_in: object  # (K, 3, 3, C) filters -> (n*n, K, C): G w G^T
    blocks_out: object  # (n*n, tiles, K) -> (N, K, rows, cols) + bias: A^T M A per block
    grad_blocks_in: object  # (N, K, rows, cols) gradient -> (n*n, tiles, K): A g A^T
    grad_tiles_out: object  # (n*n, tiles, C) -> (N, H, W, C): B gV B^T, overlapping tiles added
    grad_filters_out: object  # (n*n, K, C) -> (K, 3, 3, C): G^T gU G


@cache
def _kernels(m: int) -> _Kernels:
    """The transforms of F(m x m, 3x3) as numba kernels, the matrices compiled in as constants
    so that LLVM unrolls the short loops and drops the multiplications by 0 and 1; the loops
    over channels are innermost and contiguous, vectorised. Each tile's output is written from
    one task only (images or filters split among the threads)."""
    n, r = m + KERNEL - 1, KERNEL
    at, g, bt = transforms(m)

    @njit(parallel=True, fastmath=True, cache=True)
    def tiles_in(x, out):
        rows, cols = (x.shape[1] - n) // m + 1, (x.shape[2] - n) // m + 1
        channels = x.shape[3]
        for image in prange(x.shape[0]):
            half = np.empty((n, n, channels), np.float32)  # B^T d: (i, column, channel)
            for tr in range(rows):
                for tc in range(cols):
                    tile = (image * rows + tr) * cols + tc
                    for i in range(n):
                        for q in range(n):
                            for c in range(channels):
                                s = np.float32(0.0)
                                for p in range(n):
                                    s += bt[i, p] * x[image, tr * m + p, tc * m + q, c]
                                half[i, q, c] = s
                    for i in range(n):
                        for j in range(n):
                            for c in range(channels):
                                s = np.float32(0.0)
                                for q in range(n):
                                    s += bt[j, q] * half[i, q, c]
                                out[i * n + j, tile, c] = s

    @njit(parallel=True, fastmath=True, cache=True)
    def filters_in(w, out):
        channels = w.shape[3]
        for f in prange(w.shape[0]):
            half = np.empty((n, r, channels), np.float32)  # G w: (i, kernel column, channel)
            for i in range(n):
                for v in range(r):
                    for c in range(channels):
                        s = np.float32(0.0)
                        for u in range(r):
                            s += g[i, u] * w[f, u, v, c]
                        half[i, v, c] = s
            for i in range(n):
                for j in range(n):
                    for c in range(channels):
                        s = np.float32(0.0)
                        for v in range(r):
                            s += g[j, v] * half[i, v, c]
                        out[i * n + j, f, c] = s

    @njit(parallel=True, fastmath=True, cache=True)
    def blocks_out(products, bias, out):
        rows, cols = out.shape[2] // m, out.shape[3] // m
        filters = out.shape[1]
        for image in prange(out.shape[0]):
            half = np.empty((m, n, filters), np.float32)  # A^T M: (o, column, filter)
            for tr in range(rows):
                for tc in range(cols):
                    tile = (image * rows + tr) * cols + tc
                    for o in range(m):
                        for j in range(n):
                            for f in range(filters):
                                s = np.float32(0.0)
                                for i in range(n):
                                    s += at[o, i] * products[i * n + j, tile, f]
                                half[o, j, f] = s
                    for o in range(m):
                        for o2 in range(m):
                            for f in range(filters):
                                s = bias[f]
                                for j in range(n):
                                    s += at[o2, j] * half[o, j, f]
                                out[image, f, tr * m + o, tc * m + o2] = s

    @njit(parallel=True, fastmath=True, cache=True)
    def grad_blocks_in(grad, out):
        rows, cols = grad.shape[2] // m, grad.shape[3] // m
        filters = grad.shape[1]
        for image in prange(grad.shape[0]):
            half = np.empty((n, m, filters), np.float32)  # A g: (i, output column, filter)
            for tr in range(rows):
                for tc in range(cols):
                    tile = (image * rows + tr) * cols + tc
                    for i in range(n):
                        for o2 in range(m):
                            for f in range(filters):
                                s = np.float32(0.0)
                                for o in range(m):
                                    s += at[o, i] * grad[image, f, tr * m + o, tc * m + o2]
                                half[i, o2, f] = s
                    for i in range(n):
                        for j in range(n):
                            for f in range(filters):
                                s = np.float32(0.0)
                                for o2 in range(m):
                                    s += at[o2, j] * half[i, o2, f]
                                out[i * n + j, tile, f] = s

    @njit(parallel=True, fastmath=True, cache=True)
    def grad_tiles_out(grad, out):
        rows, cols = (out.shape[1] - n) // m + 1, (out.shape[2] - n) // m + 1
        channels = out.shape[3]
        for image in prange(out.shape[0]):
            out[image] = 0.0
            half = np.empty((n, n, channels), np.float32)  # B gV: (row p, j, channel)
            for tr in range(rows):
                for tc in range(cols):
                    tile = (image * rows + tr) * cols + tc
                    for p in range(n):
                        for j in range(n):
                            for c in range(channels):
                                s = np.float32(0.0)
                                for i in range(n):
                                    s += bt[i, p] * grad[i * n + j, tile, c]
                                half[p, j, c] = s
                    for p in range(n):
                        for q in range(n):
                            for c in range(channels):
                                s = np.float32(0.0)
                                for j in range(n):
                                    s += bt[j, q] * half[p, j, c]
                                out[image, tr * m + p, tc * m + q, c] += s

    @njit(parallel=True, fastmath=True, cache=True)
    def grad_filters_out(grad, out):
        channels = out.shape[3]
        for f in prange(out.shape[0]):
            half = np.empty((r, n, channels), np.float32)  # G^T gU: (u, j, channel)
            for u in range(r):
                for j in range(n):
                    for c in range(channels):
                        s = np.float32(0.0)
                        for i in range(n):
                            s += g[i, u] * grad[i * n + j, f, c]
                        half[u, j, c] = s
            for u in range(r):
                for v in range(r):
                    for c in range(channels):
                        s = np.float32(0.0)
                        for j in range(n):
                            s += g[j, v] * half[u, j, c]
                        out[f, u, v, c] = s

    return _Kernels(
        tiles_in, filters_in, blocks_out, grad_blocks_in, grad_tiles_out, grad_filters_out
    )


@cache
def _pooling_kernel(m: int, relu: bool):
    """The output transform of F(m x m, 3x3) with an m x m max-pool over each block: the
    pooled value (ReLU folded in, as ``conv_pool`` does) and its window position (-1 where the
    ReLU is off); ties go to the first position, as in torch."""
    n = m + KERNEL - 1
    at = transforms(m).output

    @njit(parallel=True, fastmath=True, cache=True)
    def blocks_out_pooled(products, bias, out, window):
        # products (n*n, tiles, K); out, window (tiles, K)
        filters = out.shape[1]
        for tile in prange(out.shape[0]):
            half = np.empty((m, n, filters), np.float32)  # A^T M: (o, column, filter)
            for o in range(m):
                for j in range(n):
                    for f in range(filters):
                        s = np.float32(0.0)
                        for i in range(n):
                            s += at[o, i] * products[i * n + j, tile, f]
                        half[o, j, f] = s
            for f in range(filters):
                best = np.float32(-np.inf)
                at_best = 0
                for o in range(m):
                    for o2 in range(m):
                        s = np.float32(0.0)
                        for j in range(n):
                            s += at[o2, j] * half[o, j, f]
                        if s > best:
                            best = s
                            at_best = o * m + o2
                value = best + bias[f]
                off = relu and not value > 0  # the ReLU passes no gradient here
                out[tile, f] = np.float32(0.0) if off else value
                window[tile, f] = -1 if off else at_best

    return blocks_out_pooled


def _filters(weight: torch.Tensor, m: int) -> torch.Tensor:
    """G w G^T for every filter and input channel: (n*n, K, C)."""
    n = m + KERNEL - 1
    rows = weight.detach().permute(0, 2, 3, 1).contiguous()  # free for channels-last filters
    out = torch.empty(n * n, weight.shape[0], weight.shape[1])
    _kernels(m).filters_in(rows.numpy(), out.numpy())
    return out


def _tiles(x: torch.Tensor, m: int) -> torch.Tensor:
    """B^T d B for every tile of ``x`` (NCHW shape, already padded): (n*n, tiles, C)."""
    n = m + KERNEL - 1
    pixels = x.detach().permute(0, 2, 3, 1).contiguous()  # free for channels-last input
    rows, cols = (x.shape[2] - n) // m + 1, (x.shape[3] - n) // m + 1
    out = torch.empty(n * n, x.shape[0] * rows * cols, x.shape[1])
    _kernels(m).tiles_in(pixels.numpy(), out.numpy())
    return out


def pools(x: torch.Tensor, weight: torch.Tensor, pool: int) -> bool:
    """Whether ``conv_max_pool`` computes this padded input's convolution and max-pool: 3x3
    filters, a 2x2 pool, float32 on the CPU outside autocast."""
    return (
        pool == 2
        and weight.shape[2:] == (KERNEL, KERNEL)
        and x.dtype == weight.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and min(x.shape[2:]) >= KERNEL + 1
    )


def pooled_pays() -> bool:
    """Whether ``conv_max_pool`` beats oneDNN's float32 convolution and the pool kernel inside
    a training step: where torch runs below AVX-512. With AVX-512 oneDNN's direct convolution
    is as fast, and the transform domain's 10 MB a step crowd the rest of the step out of the
    caches (see the module's docstring)."""
    return torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX")


def conv_max_pool(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, relu: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``max_pool2d(conv2d(x, weight, bias), 2)`` (then the ReLU where ``relu``) by F(2x2, 3x3)
    for a padded float32 input whose convolution rows and columns are even: the pooled maps
    (N, rows, cols, K) and each one's window position (int8; -1 where the ReLU is off), the
    layout ``conv_pool``'s backward reads."""
    m = 2
    products = torch.bmm(_tiles(x, m), _filters(weight, m).transpose(1, 2))  # (16, tiles, K)
    rows, cols = (x.shape[2] - KERNEL + 1) // m, (x.shape[3] - KERNEL + 1) // m
    out = torch.empty(x.shape[0], rows, cols, weight.shape[0])
    window = torch.empty(out.shape, dtype=torch.int8)
    flat = (products.shape[1], weight.shape[0])
    _pooling_kernel(m, relu)(
        products.numpy(), bias.detach().numpy(), out.view(flat).numpy(), window.view(flat).numpy()
    )
    return out, window


BLOCK = 3  # the block size of the layer before Flatten: F(3x3, 3x3), one tile on a 5x5 map


def applies(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv(x)`` may take ``conv_winograd`` (F(3x3, 3x3))."""
    return takes(conv, x, BLOCK)


def conv_winograd(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` by F(3x3, 3x3), NCHW-contiguous; differentiable in ``x`` and the conv's
    parameters."""
    return _ConvWinograd.apply(padded(x, conv), conv.weight, conv.bias)


class _ConvWinograd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        m = BLOCK
        tiles, filters = _tiles(x, m), _filters(weight, m)
        products = torch.bmm(tiles, filters.transpose(1, 2))  # (25, tiles, K)
        rows, cols = x.shape[2] - KERNEL + 1, x.shape[3] - KERNEL + 1
        out = torch.empty(x.shape[0], weight.shape[0], rows, cols)
        zeros = torch.zeros(weight.shape[0]) if bias is None else bias.detach()
        _kernels(m).blocks_out(products.numpy(), zeros.numpy(), out.numpy())
        ctx.save_for_backward(tiles, filters)
        ctx.setup = (x.shape, memory_format_of(weight), bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        tiles, filters = ctx.saved_tensors
        (n, n_in, height, width), weight_format, has_bias = ctx.setup
        kernels = _kernels(BLOCK)
        grad = grad.float().contiguous()
        per_tile = torch.empty(tiles.shape[0], tiles.shape[1], grad.shape[1])
        kernels.grad_blocks_in(grad.numpy(), per_tile.numpy())
        grad_x = None
        if ctx.needs_input_grad[0]:
            pixels = torch.empty(n, height, width, n_in)
            kernels.grad_tiles_out(torch.bmm(per_tile, filters).numpy(), pixels.numpy())
            grad_x = pixels.permute(0, 3, 1, 2)
        filter_grad = torch.bmm(per_tile.transpose(1, 2), tiles)  # (25, K, C)
        grad_w = torch.empty(grad.shape[1], KERNEL, KERNEL, n_in)
        kernels.grad_filters_out(filter_grad.numpy(), grad_w.numpy())
        grad_w = grad_w.permute(0, 3, 1, 2).contiguous(memory_format=weight_format)
        grad_b = grad.sum((0, 2, 3)) if has_bias else None
        return grad_x, grad_w, grad_b
