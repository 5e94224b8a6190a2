"""A convolution and the max-pool after it, for training on the CPU, in two numba paths.

Only one position of each pooling window receives gradient, and a ReLU after the pool zeroes
many of those too; torch nevertheless stores the full-size map, zero-fills a full-size
gradient, scatters into it and runs a dense backward over it. Both paths here pool into the
winning window position (an int8; -1 where the ReLU, folded in, is off) and send gradient only
there:

- The first layer (``Conv2D_1``; its input needs no gradient): the convolution runs in the
  kernel too, window by window, so the 26x26x32 map is never stored, and the backward turns the
  pooled gradient straight into the 288 kernel gradients.
- Deeper layers (``Conv2D_2``): the convolution is Winograd's F(2x2, 3x3) in float32 for 3x3
  kernels before a 2x2 pool below AVX-512 (``winograd``, which pools as it computes), torch's
  otherwise (oneDNN is fast once there are input channels, and takes bf16 under autocast); the
  backward adds one kernel-sized patch to the input gradient and one input patch to the
  filter's kernel gradient for each non-zero pooled gradient, a quarter or less of the dense
  work.

Measured on 2 cores, batch 64, alternating blocks of training steps in one process (fastest
of 8-10 rounds): the first path took a step from 9.4 to 8.2 ms on the machine of that day; on a
faster one the second took it from 4.24 to 3.71 ms, and folding the ReLU in saved 0.11 ms more.

Both give torch's ``relu(max_pool2d(conv2d(x)))`` (or without the ReLU) up to float rounding;
ties go to the first position of a window, as in torch. They are used only where that holds:
float32 input and parameters on the CPU, stride 1, a square pool whose stride is its size, as
``nn.MaxPool2d(size)`` builds it. Under bf16 autocast the deeper path's convolution runs in bf16
exactly as torch's would, its maps are pooled as they are, and both backward passes run in
float32, except on a CPU where oneDNN multiplies on AMX tiles: there the deeper layer's backward
puts the pooled gradient back at the winners and runs oneDNN's bf16 convolution backward over
the whole map, three times as fast as the sparse one (``dense_backward_pays``). The kernels
are compiled by numba once per layer shape and cached on disk. Every sum runs in a fixed order,
so the same threads give the same result (the deeper path's float32 gradients do not depend on
the number of threads at all).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange, uint64
from numba.core import types
from numba.extending import overload
from torch import nn

from mapscope.cnn import winograd
from mapscope.cnn.conv_matmul import compute_dtype, memory_format_of, padded, padding_of
from mapscope.device import onednn_uses_amx


def applies(conv: nn.Module, pool: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``pool(conv(x))`` can take a path of this module (see its docstring)."""
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(pool, nn.MaxPool2d)
        and x.device.type == "cpu"
        and x.dtype == conv.weight.dtype == torch.float32
        and conv.bias is not None
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.kernel_size[0] == conv.kernel_size[1]
        and padding_of(conv) is not None
        and _square_pool(pool)
    )


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
    relu: bool = False,
) -> torch.Tensor:
    """``pool(conv(x))``, or ``relu(pool(conv(x)))``; differentiable in the conv's parameters
    and, where ``x`` needs it, in ``x``.

    ``size`` keeps only the top-left rows x columns of the result: the part that the following
    layers read (see ``Network``); computing the rest would be work whose gradient is zero.
    """
    x = kernel_input(x, conv, pool, size)
    function = _ConvThenMaxPool if x.requires_grad else _ConvMaxPool
    return function.apply(x, conv.weight, conv.bias, pool.kernel_size, relu)


def kernel_input(
    x: torch.Tensor, conv: nn.Conv2d, pool: nn.MaxPool2d, size: tuple[int, int] | None
) -> torch.Tensor:
    """What the kernels convolve: ``x`` padded as ``conv`` pads it, cut to the input rows and
    columns that the kept ``size`` of the pooled result reads."""
    x = padded(x, conv)
    if size is not None:
        k, p = conv.kernel_size[0], pool.kernel_size
        x = x[:, :, : size[0] * p + k - 1, : size[1] * p + k - 1]
    return x


class _ConvMaxPool(torch.autograd.Function):
    """The whole convolution in the kernel; for an input without gradient (the first layer)."""

    @staticmethod
    def forward(ctx, x, weight, bias, pool, relu):
        n_out, n_in, k, _ = weight.shape
        kernels = _first_layer_kernels(n_in, n_out, k, pool, relu)
        pixels = x.permute(0, 2, 3, 1).contiguous()  # free for channels-last input
        kernel = weight.detach().permute(2, 3, 1, 0).contiguous()
        rows, cols = (x.shape[2] - k + 1) // pool, (x.shape[3] - k + 1) // pool
        out = torch.empty(x.shape[0], rows, cols, n_out)
        window = torch.empty(x.shape[0], rows, cols, n_out, dtype=torch.int8)
        kernels.forward(
            pixels.numpy(), kernel.numpy(), bias.detach().numpy(), out.numpy(), window.numpy()
        )
        ctx.save_for_backward(pixels, window)
        ctx.setup = (n_in, n_out, k, pool, relu)
        ctx.weight_format = memory_format_of(weight)
        return out.permute(0, 3, 1, 2)  # NCHW shape, channels-last memory

    @staticmethod
    def backward(ctx, grad):
        pixels, window = ctx.saved_tensors
        n_in, n_out, k, pool, relu = ctx.setup
        kernels = _first_layer_kernels(n_in, n_out, k, pool, relu)
        # float32, as autograd hands it; the step by hand may bring bf16 from a dense layer
        grad = grad.float().permute(0, 2, 3, 1).contiguous()
        # One partial sum per thread, added in a fixed order: same threads, same result.
        threads = min(numba.get_num_threads(), len(grad))
        parts = torch.zeros(threads, k, k, n_in, n_out)
        bias_parts = torch.zeros(threads, n_out)
        kernels.backward(
            pixels.numpy(), grad.numpy(), window.numpy(), parts.numpy(), bias_parts.numpy()
        )
        grad_weight = parts.sum(0).permute(3, 2, 0, 1).contiguous(memory_format=ctx.weight_format)
        return None, grad_weight, bias_parts.sum(0), None, None


class _ConvThenMaxPool(torch.autograd.Function):
    """Torch's convolution, then the pool and a sparse backward; for deeper layers."""

    @staticmethod
    def forward(ctx, x, weight, bias, pool, relu):
        ctx.dense = compute_dtype() == torch.bfloat16 and dense_backward_pays()
        ctx.setup = (pool, relu)
        ctx.weight_format = memory_format_of(weight)
        if ctx.dense:  # cast here as autocast would, and kept for oneDNN's backward
            x, weight = x.detach().to(torch.bfloat16), weight.detach().to(torch.bfloat16)
            out, window = conv_then_max_pool(x, weight, bias, pool, relu)
            ctx.save_for_backward(x, weight, window)
            return out.permute(0, 3, 1, 2)
        if winograd.pools(x, weight, pool) and winograd.pooled_pays():  # pooled as computed
            out, window = winograd.conv_max_pool(x, weight, bias, relu)
        else:
            out, window = conv_then_max_pool(x, weight, bias, pool, relu)
        pixels = x.detach().permute(0, 2, 3, 1).contiguous()
        ctx.save_for_backward(pixels, weight, window)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        if ctx.dense:
            return _dense_backward(ctx, grad)
        pixels, weight, window = ctx.saved_tensors
        n_out, n_in, k, _ = weight.shape
        kernels = _deeper_layer_kernels(n_in, n_out, k, *ctx.setup)
        grad = grad.float().permute(0, 2, 3, 1).contiguous()  # the backward runs in float32
        n, height, width, _ = pixels.shape
        grad_x = None
        if ctx.needs_input_grad[0]:
            # (out, k, k * in): one kernel row of a filter is contiguous, as is one input row
            rows = weight.detach().permute(0, 2, 3, 1).reshape(n_out, k, k * n_in).contiguous()
            flat = torch.empty(n, height, width * n_in)
            kernels.grad_input(rows.numpy(), grad.numpy(), window.numpy(), flat.numpy())
            grad_x = flat.view(n, height, width, n_in).permute(0, 3, 1, 2)
        grad_w = torch.empty(n_out, k, k * n_in)
        grad_b = torch.empty(n_out)
        kernels.grad_weight(
            pixels.view(n, height, width * n_in).numpy(),
            grad.numpy(),
            window.numpy(),
            grad_w.numpy(),
            grad_b.numpy(),
            numba.get_num_threads(),
        )
        grad_w = grad_w.view(n_out, k, k, n_in).permute(0, 3, 1, 2)
        grad_w = grad_w.contiguous(memory_format=ctx.weight_format)
        return grad_x, grad_w, grad_b, None, None


def _dense_backward(ctx, grad):
    """The pooled gradient put back at each window's winner, then oneDNN's bf16 convolution
    backward over the whole map: the gradients torch's autocast backward computes."""
    x, weight, window = ctx.saved_tensors
    pooled_grad = grad.permute(0, 2, 3, 1).to(torch.bfloat16).contiguous()
    maps = unpooled(pooled_grad, window, x, weight, *ctx.setup)
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        maps.permute(0, 3, 1, 2),
        x,
        weight,
        [weight.shape[0]],
        (1, 1),
        (0, 0),
        (1, 1),
        False,
        (0, 0),
        1,
        (ctx.needs_input_grad[0], True, True),
    )
    grad_w = grad_w.float().contiguous(memory_format=ctx.weight_format)
    return None if grad_x is None else grad_x.float(), grad_w, grad_b.float(), None, None


def unpooled(
    pooled: torch.Tensor,
    window: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    pool: int,
    relu: bool,
) -> torch.Tensor:
    """The pooled gradient (N, rows, cols, K) put back where each window's maximum was in the
    map that ``weight`` makes of ``x`` (N, H, W, K, in ``pooled``'s dtype), zero elsewhere."""
    n_out, n_in, k, _ = weight.shape
    kernels = _deeper_layer_kernels(n_in, n_out, k, pool, relu)
    rows, cols = x.shape[2] - k + 1, x.shape[3] - k + 1
    maps = torch.empty(x.shape[0], rows, cols, n_out, dtype=pooled.dtype)
    kernels.unpool(_as_numpy(pooled), window.numpy(), _as_numpy(maps))
    return maps


def dense_backward_pays() -> bool:
    """Whether a bf16 layer's backward runs faster densely, by oneDNN, than in the sparse
    kernels: where oneDNN multiplies on AMX tiles. On a 2-core Intel Xeon with AMX, Conv2D_2's
    backward (64 images) took 0.47 ms by oneDNN, 1.48 ms sparse; held to AVX512-BF16
    (``ONEDNN_MAX_CPU_ISA``) oneDNN's took 2.87 ms: without AMX the sparse kernels win."""
    return onednn_uses_amx()


def conv_then_max_pool(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: int, relu: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's convolution of a padded input, then the pool kernel: the pooled maps (N, rows,
    cols, K), in the convolution's dtype, and each one's window position (int8; -1 where the
    ReLU is off), the layout the sparse backward reads."""
    n_out, n_in, k, _ = weight.shape
    kernels = _deeper_layer_kernels(n_in, n_out, k, pool, relu)
    maps = F.conv2d(x, weight, bias)  # bfloat16 under CPU autocast: oneDNN's fast path
    maps = maps.permute(0, 2, 3, 1).contiguous()  # free: oneDNN writes channels-last
    rows, cols = maps.shape[1] // pool, maps.shape[2] // pool
    out = torch.empty(x.shape[0], rows, cols, n_out, dtype=maps.dtype)
    window = torch.empty(x.shape[0], rows, cols, n_out, dtype=torch.int8)
    kernels.max_pool(_as_numpy(maps), _as_numpy(out), window.numpy())
    return out, window


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """numpy has no bfloat16: 16-bit floats go to the kernels as their int16 bits."""
    return t.view(torch.int16).numpy() if t.element_size() == 2 else t.numpy()


def _ordered(value):
    """A number that sorts as the float ``value`` does (see the overload below)."""


@overload(_ordered)
def _ordered_for(value):
    if isinstance(value, types.Float):
        return lambda value: value
    if isinstance(value, types.Integer):  # a 16-bit float's bits: sign, then magnitude
        return lambda value: value ^ ((value >> 15) & 0x7FFF)  # negatives: larger is lower
    return None


class _FirstLayerKernels(NamedTuple):
    forward: Callable
    backward: Callable


@cache
def _first_layer_kernels(n_in: int, n_out: int, k: int, pool: int, relu: bool):
    """Kernels with the layer's sizes as compile-time constants.

    Constant loop bounds let LLVM unroll the window and kernel loops and vectorise over the
    output channels with the sums in registers; with run-time bounds the same code was about 3
    times slower. Pixels are read through flat unsigned offsets (see ``_deeper_layer_kernels``):
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

    return _FirstLayerKernels(forward, backward)


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


class _DeeperLayerKernels(NamedTuple):
    max_pool: Callable
    grad_input: Callable
    grad_weight: Callable
    unpool: Callable


@cache
def _deeper_layer_kernels(n_in: int, n_out: int, k: int, pool: int, relu: bool):
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

    return _DeeperLayerKernels(max_pool, grad_input, grad_weight, unpool)
