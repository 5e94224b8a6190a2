"""The numba kernels of ``conv_pool``: the first layer's convolution and pool, and the deeper
layers' pool and sparse backward, each made for one layer's sizes.

They import numpy and numba only, not torch, so that the processes that compile them ahead of
a training (``kernel_jobs``) start in a fraction of the time: the torch side, the data layouts
and the reasons for each kernel's shape are in ``conv_pool``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit, prange, uint64
from numba.core import types
from numba.extending import overload

from mapscope.cnn.kernel_cache import use_shipped_level
from mapscope.cnn.kernel_jobs import kernel_factory

use_shipped_level()  # numba targets this CPU's level, whose cache is shipped: kernel_cache


def _ordered(value):
    """A number that sorts as the float ``value`` does (see the overload below)."""


@overload(_ordered)
def _ordered_for(value):
    if isinstance(value, types.Float):
        return lambda value: value
    if isinstance(value, types.Integer):  # a 16-bit float's bits: sign, then magnitude
        return lambda value: value ^ ((value >> 15) & 0x7FFF)  # negatives: larger is lower
    return None


class FirstLayerKernels(NamedTuple):
    forward: Callable
    backward: Callable


@kernel_factory(slow_to_compile=True)
def first_layer_kernels(n_in: int, n_out: int, k: int, pool: int, relu: bool):
    """Kernels with the layer's sizes as compile-time constants.

    Constant loop bounds let LLVM unroll the window and kernel loops and vectorise over the
    output channels with the sums in registers; with run-time bounds the same code was about 3
    times slower. Pixels are read through flat unsigned offsets (see ``deeper_layer_kernels``):
    against per-cell slices, the forward took 0.05 instead of 0.15 ms, the backward 0.26
    instead of 0.35 ms, for 64 images. The backward multiplies each filter's gradient by its
    winning position's pixel only, picked by comparisons, rather than adding one product per
    window position of which all but one are zero: 0.17 instead of 0.24 ms for 64 images (2
    cores), the same bits, as adding a zero product changes no sum.
    """
    windows = pool * pool

    @njit(parallel=True, fastmath=True, cache=True)
    def forward(pixels, kernel, bias, out, window):
        # pixels (N, H, W, in), kernel (k, k, in, out), out/window (N, rows, cols, out)
        width = pixels.shape[2] * n_in  # one input row
        taps = kernel.reshape(-1)
        for n in prange(pixels.shape[0]):
            image = pixels[n].reshape(-1)
            best_out, best_at = out[n].reshape(-1), window[n].reshape(-1)
            cell = uint64(0)  # (row, column) of this image's output, times n_out
            for row in range(out.shape[1]):
                for col in range(out.shape[2]):
                    corner = uint64(row * pool * width + col * pool * n_in)
                    for c in range(n_out):
                        best = np.float32(-np.inf)
                        at = 0
                        for dy in range(pool):
                            for dx in range(pool):
                                s = np.float32(0.0)
                                for ky in range(k):
                                    for kx in range(k):
                                        for ci in range(n_in):
                                            pixel = uint64(
                                                (dy + ky) * width + (dx + kx) * n_in + ci
                                            )
                                            tap = ((ky * k + kx) * n_in + ci) * n_out + c
                                            s += image[corner + pixel] * taps[tap]
                                if s > best:
                                    best = s
                                    at = dy * pool + dx
                        value = best + bias[c]
                        off = relu and not value > 0  # the ReLU passes no gradient here
                        best_out[cell + uint64(c)] = np.float32(0.0) if off else value
                        best_at[cell + uint64(c)] = -1 if off else at
                    cell += uint64(n_out)

    @njit(parallel=True, fastmath=True, cache=True)
    def backward(pixels, grad, window, parts, bias_parts):
        # parts (threads, k, k, in, out), bias_parts (threads, out): each thread sums the
        # gradients of its images
        n_images = pixels.shape[0]
        per_part = -(-n_images // parts.shape[0])
        width = pixels.shape[2] * n_in  # one input row
        for part in prange(parts.shape[0]):
            total = parts[part].reshape(-1)
            bias_total = bias_parts[part]
            passed = np.empty(n_out, np.float32)  # each filter's gradient (0 where the ReLU is off)
            winner = np.empty(n_out, np.int8)  # and the window position it came from
            for n in range(part * per_part, min(n_images, (part + 1) * per_part)):
                image = pixels[n].reshape(-1)
                grads, windows_at = grad[n].reshape(-1), window[n].reshape(-1)
                cell = uint64(0)  # (row, column) of this image's gradient, times n_out
                for row in range(grad.shape[1]):
                    for col in range(grad.shape[2]):
                        corner = uint64(row * pool * width + col * pool * n_in)
                        for c in range(n_out):
                            v, at = grads[cell + uint64(c)], windows_at[cell + uint64(c)]
                            v = v if at >= 0 else np.float32(0.0)
                            bias_total[c] += v
                            passed[c], winner[c] = v, at
                        cell += uint64(n_out)
                        for ky in range(k):
                            for kx in range(k):
                                for ci in range(n_in):
                                    tap = ((ky * k + kx) * n_in + ci) * n_out
                                    first = corner + uint64(ky * width + kx * n_in + ci)
                                    for c in range(n_out):
                                        # the winner's pixel, picked among all positions' pixels
                                        pixel = image[first]
                                        for w in range(1, windows):
                                            shift = (w // pool) * width + (w % pool) * n_in
                                            there = image[first + uint64(shift)]
                                            pixel = there if winner[c] == w else pixel
                                        total[tap + c] += passed[c] * pixel

    return FirstLayerKernels(forward, backward)


@njit(cache=True)
def _patch_offsets(rows: int, cols: int, stride: int, pool: int, n_in: int):
    """Where each pooled cell's window starts in a channels-last input row-major by cell, and
    how far each window position lies from there: a source's patch starts at
    ``corners[cell] + shifts[position]``. Looked up rather than computed per source, the
    kernel gradient's listing of each filter's sources took about half the time (measured
    alone, 64 images with no unit active: 71 against 133 us)."""
    corners = np.empty(rows * cols, np.uint64)
    for r in range(rows):
        for c in range(cols):
            corners[r * cols + c] = r * pool * stride + c * pool * n_in
    shifts = np.empty(pool * pool, np.uint64)
    for w in range(pool * pool):
        shifts[w] = (w // pool) * stride + (w % pool) * n_in
    return corners, shifts


class DeeperLayerKernels(NamedTuple):
    max_pool: Callable
    grad_input: Callable
    grad_weight: Callable
    unpool: Callable


@kernel_factory()
def deeper_layer_kernels(n_in: int, n_out: int, k: int, pool: int, relu: bool):
    """Max-pool into window positions, and the sparse backward of the convolution before it.

    The backward adds scaled rows of ``k * n_in`` contiguous values, four sources at a time
    (one store per four multiply-adds). Offsets are unsigned on purpose: numba checks every
    signed index for wrap-around, which stopped LLVM from vectorising these loops (6 against
    36-41 GFLOP/s on one core) and, outside them, cost 13-23 % of the kernels' time.
    """
    row = k * n_in  # one kernel row of one filter; one input row under it (channels-last)
    windows = pool * pool
    # The input gradient lists each cell's sources per window position. Counting them in an
    # array made every filter wait for the previous one's count to come back from memory; in
    # one register (pools up to 2x2, fewer than 65536 filters) the listing took 105 instead of
    # 187 us for 64 images of the reference network with no unit active, the same bits.
    packed = windows <= 4 and n_out < 0xFFFF

    @njit(parallel=True, fastmath=True, cache=True)
    def max_pool(maps, out, window):
        # maps (N, H, W, out) -> out, window (N, rows, cols, out); ties go to the first position.
        # float32, or a 16-bit float as its int16 bits (compared through _ordered, copied as is)
        for n in prange(out.shape[0]):
            for r in range(out.shape[1]):
                for c in range(out.shape[2]):
                    best_out = out[n, r, c]
                    best_at = window[n, r, c]
                    first = maps[n, r * pool, c * pool]
                    for ch in range(n_out):
                        best = first[ch]
                        best_key = _ordered(best)
                        at = 0
                        for w in range(1, windows):
                            v = maps[n, r * pool + w // pool, c * pool + w % pool, ch]
                            key = _ordered(v)
                            if key > best_key:
                                best, best_key, at = v, key, w
                        off = relu and not best > 0  # the ReLU passes no gradient here
                        best_out[ch] = 0 if off else best
                        best_at[ch] = -1 if off else at

    @njit(parallel=True, fastmath=True, cache=True)
    def grad_input(weight, grad, window, grad_x):
        # weight (out, k, row); grad, window (N, rows, cols, out); grad_x (N, H, W * in)
        stride = uint64(grad_x.shape[2])  # one input row
        filters = weight.reshape(-1)
        for n in prange(grad.shape[0]):
            image = grad_x[n].reshape(-1)
            image[:] = 0.0
            # per window position, where the filters whose maximum is there start in `filters`,
            # and their gradients (the last group of four is padded with gradient 0)
            start = np.zeros((windows, n_out + 4), np.uint64)
            scale = np.zeros((windows, n_out + 4), np.float32)
            count = np.zeros(windows, np.int64)
            grads, windows_at = grad[n].reshape(-1), window[n].reshape(-1)
            at = uint64(0)  # (row, column, filter) in this image's gradient
            for r in range(grad.shape[1]):
                for c in range(grad.shape[2]):
                    # no branch: write always, count the non-zeros
                    if packed:  # the counts in one register, 16 bits per window position
                        counts = uint64(0)
                        for ch in range(n_out):
                            v, best = grads[at], windows_at[at]
                            position = uint64(max(best, 0))
                            shift = position * uint64(16)
                            q = (counts >> shift) & uint64(0xFFFF)
                            start[position, q] = uint64(ch * k * row)
                            scale[position, q] = v
                            counts += uint64((best >= 0) & (v != 0.0)) << shift
                            at += uint64(1)
                        for w in range(windows):
                            count[w] = (counts >> uint64(16 * w)) & uint64(0xFFFF)
                    else:
                        count[:] = 0
                        for ch in range(n_out):
                            v, best = grads[at], windows_at[at]
                            position = max(best, 0)
                            start[position, count[position]] = uint64(ch * k * row)
                            scale[position, count[position]] = v
                            count[position] += (best >= 0) & (v != 0.0)
                            at += uint64(1)
                    for w in range(windows):
                        m = count[w]
                        if m == 0:
                            continue
                        for q in range(m, m + 3):  # pad the last group of four
                            scale[w, q], start[w, q] = 0.0, 0
                        corner = uint64((r * pool + w // pool) * grad_x.shape[2])
                        corner += uint64((c * pool + w % pool) * n_in)
                        here, factor = start[w], scale[w]
                        for q in range(0, m, 4):
                            s0, s1, s2, s3 = factor[q], factor[q + 1], factor[q + 2], factor[q + 3]
                            f0, f1, f2, f3 = here[q], here[q + 1], here[q + 2], here[q + 3]
                            for ky in range(k):
                                dst = corner + uint64(ky) * stride
                                src = uint64(ky * row)
                                for j in range(row):
                                    i = src + uint64(j)
                                    image[dst + uint64(j)] += (
                                        s0 * filters[f0 + i] + s1 * filters[f1 + i]
                                    ) + (s2 * filters[f2 + i] + s3 * filters[f3 + i])

    @njit(parallel=True, fastmath=True, cache=True)
    def grad_weight(pixels, grad, window, grad_w, grad_b, parts):
        # pixels (N, H, W * in); grad_w (out, k, row); grad_b (out). Each task owns a block of
        # filters and walks the images in order, so one image's pixels serve all its filters
        # from cache, and each sum runs in the same order whatever the number of tasks.
        cells = grad.shape[1] * grad.shape[2]
        per_part = -(-n_out // parts)
        stride = uint64(pixels.shape[2])  # one input row
        totals = grad_w.reshape(-1)
        corners, shifts = _patch_offsets(grad.shape[1], grad.shape[2], pixels.shape[2], pool, n_in)
        for part in prange(parts):
            first, last = part * per_part, min(n_out, (part + 1) * per_part)
            grad_w[first:last] = 0.0
            grad_b[first:last] = 0.0
            # the non-zero gradients of one filter and image, and where their patches start
            start = np.zeros(cells + 4, np.uint64)
            scale = np.zeros(cells + 4, np.float32)
            for n in range(grad.shape[0]):
                image = pixels[n].reshape(-1)
                grads, windows_at = grad[n].reshape(-1), window[n].reshape(-1)
                for ch in range(first, last):
                    m = 0
                    at = uint64(ch)  # (cell, filter) in this image's gradient
                    for cell in range(cells):
                        v, w = grads[at], windows_at[at]
                        at += uint64(n_out)
                        start[m] = corners[cell] + shifts[max(w, 0)]
                        scale[m] = v
                        m += (w >= 0) & (v != 0.0)
                    for q in range(m, m + 3):  # pad the last group of four
                        scale[q], start[q] = 0.0, 0
                    for q in range(0, m, 4):
                        s0, s1, s2, s3 = scale[q], scale[q + 1], scale[q + 2], scale[q + 3]
                        p0, p1, p2, p3 = start[q], start[q + 1], start[q + 2], start[q + 3]
                        grad_b[ch] += (s0 + s1) + (s2 + s3)
                        for ky in range(k):
                            dst = uint64((ch * k + ky) * row)
                            src = uint64(ky) * stride
                            for j in range(row):
                                i = src + uint64(j)
                                totals[dst + uint64(j)] += (
                                    s0 * image[p0 + i] + s1 * image[p1 + i]
                                ) + (s2 * image[p2 + i] + s3 * image[p3 + i])

    @njit(parallel=True, cache=True)
    def unpool(grad, window, maps):
        # grad, window (N, rows, cols, out) -> maps (N, H, W, out): each pooled gradient at its
        # window's winner, zero elsewhere; a 16-bit float's bits are copied as they are
        rows, cols = grad.shape[1], grad.shape[2]
        for n in prange(maps.shape[0]):
            maps[n, rows * pool :] = 0  # rows and columns no window covers
            maps[n, :, cols * pool :] = 0
            for r in range(rows):
                for dy in range(pool):
                    for c in range(cols):
                        for dx in range(pool):
                            at = dy * pool + dx
                            here = maps[n, r * pool + dy, c * pool + dx]
                            for ch in range(n_out):
                                won = window[n, r, c, ch] == at
                                here[ch] = grad[n, r, c, ch] if won else 0

    return DeeperLayerKernels(max_pool, grad_input, grad_weight, unpool)
