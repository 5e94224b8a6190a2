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

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mapscope.cnn import winograd
from mapscope.cnn.conv_matmul import compute_dtype, memory_format_of, padded, padding_of
from mapscope.cnn.conv_pool_kernels import deeper_layer_kernels, first_layer_kernels
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
        kernels = first_layer_kernels(n_in, n_out, k, pool, relu)
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
        kernels = first_layer_kernels(n_in, n_out, k, pool, relu)
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
        kernels = deeper_layer_kernels(n_in, n_out, k, *ctx.setup)
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
    kernels = deeper_layer_kernels(n_in, n_out, k, pool, relu)
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
    kernels = deeper_layer_kernels(n_in, n_out, k, pool, relu)
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
