"""The numba kernels of ``winograd``: the transforms of F(m x m, 3x3) with their matrices
compiled in as constants, and the output transform that max-pools as it goes.

They import numpy and numba only, not torch, so that the processes that compile them ahead of
a training (``kernel_jobs``) start in a fraction of the time: the algorithm, where it runs and
what it costs are in ``winograd``.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from mapscope.cnn.kernel_cache import use_shipped_level
from mapscope.cnn.kernel_jobs import kernel_factory

use_shipped_level()  # numba targets this CPU's level, whose cache is shipped: kernel_cache

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


class Kernels(NamedTuple):
    tiles_in: object  # (N, H, W, C) input -> (n*n, tiles, C): B^T d B per tile
    filters_in: object  # (K, 3, 3, C) filters -> (n*n, K, C): G w G^T
    blocks_out: object  # (n*n, tiles, K) -> (N, K, rows, cols) + bias: A^T M A per block
    grad_blocks_in: object  # (N, K, rows, cols) gradient -> (n*n, tiles, K): A g A^T
    grad_tiles_out: object  # (n*n, tiles, C) -> (N, H, W, C): B gV B^T, overlapping tiles added
    grad_filters_out: object  # (n*n, K, C) -> (K, 3, 3, C): G^T gU G


@kernel_factory()
def transform_kernels(m: int) -> Kernels:
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

    return Kernels(
        tiles_in, filters_in, blocks_out, grad_blocks_in, grad_tiles_out, grad_filters_out
    )


@kernel_factory()
def pooling_kernel(m: int, relu: bool):
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
