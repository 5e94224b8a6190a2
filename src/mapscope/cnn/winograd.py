"""3x3 convolutions by Winograd's minimal filtering, for training on the CPU in float32.

A convolution with an r x r kernel computes each m x m block of its output from one tile of
(m + r - 1)^2 input values. Winograd's algorithm (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016) transforms every tile and every filter into (m + r - 1)^2
numbers each; the sum over input channels then becomes one matrix product per transformed
position, and a last transform gives the block. For 3x3 kernels F(2x2, 3x3) does 16
multiplications for 4 outputs and F(3x3, 3x3) 25 for 9, where the direct convolution does 36 and
81. The transforms are a few additions per value (numba kernels, ``winograd_kernels``); the products are torch's
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

The transforms come from Toom-Cook interpolation at fixed points (``winograd_kernels.transforms``); they are
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

import torch
from torch import nn

from mapscope.cnn.conv_matmul import memory_format_of, padded, padding_of
from mapscope.cnn.winograd_kernels import KERNEL, pooling_kernel, transform_kernels


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


def _filters(weight: torch.Tensor, m: int) -> torch.Tensor:
    """G w G^T for every filter and input channel: (n*n, K, C)."""
    n = m + KERNEL - 1
    rows = weight.detach().permute(0, 2, 3, 1).contiguous()  # free for channels-last filters
    out = torch.empty(n * n, weight.shape[0], weight.shape[1])
    transform_kernels(m).filters_in(rows.numpy(), out.numpy())
    return out


def _tiles(x: torch.Tensor, m: int) -> torch.Tensor:
    """B^T d B for every tile of ``x`` (NCHW shape, already padded): (n*n, tiles, C)."""
    n = m + KERNEL - 1
    pixels = x.detach().permute(0, 2, 3, 1).contiguous()  # free for channels-last input
    rows, cols = (x.shape[2] - n) // m + 1, (x.shape[3] - n) // m + 1
    out = torch.empty(n * n, x.shape[0] * rows * cols, x.shape[1])
    transform_kernels(m).tiles_in(pixels.numpy(), out.numpy())
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
    pooling_kernel(m, relu)(
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
        transform_kernels(m).blocks_out(products.numpy(), zeros.numpy(), out.numpy())
        ctx.save_for_backward(tiles, filters)
        ctx.setup = (x.shape, memory_format_of(weight), bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        tiles, filters = ctx.saved_tensors
        (n, n_in, height, width), weight_format, has_bias = ctx.setup
        kernels = transform_kernels(BLOCK)
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
