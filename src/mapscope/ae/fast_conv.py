"""Convolutions of the autoencoder's CPU fast path, as autograd functions (``ae.fast`` uses them).

Two measured weak spots of oneDNN in bf16 on the CPU, each replaced where it is measured to lose:
the kernel gradient of a stride-2 (transposed) convolution between wide layers, and a transposed
convolution to an image's one to four channels. Both are done as matrix products over
channels-last pixels, which oneDNN's matrix kernels run near their peak. Everything else, and
every input gradient of a wide layer, is torch's own convolution backward.

``convolve`` applies a ReLU as oneDNN writes the output (a "post-op") when asked, which saves a
pass over the layer's largest maps and keeps its backward one ``threshold_backward``.
Results are those of torch's layers up to float rounding, as accurate as autocast's own bf16
layers (``tests/test_ae_fast.py`` compares both with float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _rows(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) channels-last as (N*H*W, C): a view, one row per pixel."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


class Workspace:
    """Buffers one layer's backward fills anew at every step, kept from step to step.

    Fresh buffers of a few MB cost a page fault per 4 KiB on first touch, and glibc hands a
    step's freed memory back to the system before the next: gathering the 3.6 MB of windows of
    a 32x64 layer took 1.2 ms in a training step and 0.15 ms into a reused buffer (Zen 5)."""

    def __init__(self):
        self._buffers: dict[tuple, torch.Tensor] = {}

    def zeros(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A buffer, zero when first made; what a caller writes into it stays."""
        key = (name, tuple(shape), dtype)
        if key not in self._buffers:
            fmt = torch.channels_last if len(shape) == 4 else torch.contiguous_format
            self._buffers[key] = torch.zeros(shape, dtype=dtype).contiguous(memory_format=fmt)
        return self._buffers[key]


def _windows(maps, conv: nn.Module, out_hw, workspace: Workspace) -> torch.Tensor:
    """The kernel-sized windows of zero-padded ``maps``, window (i, j) starting at stride * (i, j):
    (N*oh*ow, kh*kw*C), ordered (ky, kx, c) like a channels-last kernel."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    n, c, h, w = maps.shape
    oh, ow = out_hw
    below, right = max(0, sh * (oh - 1) + kh - ph - h), max(0, sw * (ow - 1) + kw - pw - w)
    padded = workspace.zeros("padded", (n, c, ph + h + below, pw + w + right), maps.dtype)
    padded[:, :, ph : ph + h, pw : pw + w] = maps  # the border stays zero
    sn, sc, sy, sx = padded.stride()
    view = padded.as_strided((n, oh, ow, kh, kw, c), (sn, sh * sy, sw * sx, sy, sx, sc))
    windows = workspace.zeros("windows", (n * oh * ow, kh * kw * c), maps.dtype)
    windows.view(n, oh, ow, kh, kw, c).copy_(view)
    return windows


def _weight_and_bias_grads(grad, x, weight, conv, transposed, workspace: Workspace):
    """The kernel's and bias's gradients as one matrix product each over channels-last pixels.

    A convolution's kernel gradient pairs each output pixel's gradient with the input window it
    read; a transposed convolution's pairs each input pixel with the output window it wrote
    (the same windows, the roles swapped). In bf16 this runs 1.5-2.3x as fast as oneDNN's own
    kernel-gradient here (1.3 against 1.9 ms and 1.4 against 3.1 ms for the default
    autoencoder's 32x64 layers, Zen 5); in float32 and for one-channel layers oneDNN is faster.
    """
    if transposed:
        pairs = _rows(x).t() @ _windows(grad, conv, x.shape[2:], workspace)
    else:
        pairs = _rows(grad).t() @ _windows(x, conv, grad.shape[2:], workspace)
    kh, kw = conv.kernel_size
    dw = pairs.view(weight.shape[0], kh, kw, weight.shape[1]).permute(0, 3, 1, 2)
    pixels = _rows(grad)
    db = (torch.ones(1, len(pixels), dtype=grad.dtype) @ pixels).view(-1)  # torch.sum: 4x slower
    return dw, db


def matrix_weight_grads(conv: nn.Module, dtype: torch.dtype) -> bool:
    """Whether ``_weight_and_bias_grads`` beats oneDNN for this layer: bf16, and at least 16
    channels on both sides (see its docstring)."""
    return dtype == torch.bfloat16 and min(conv.in_channels, conv.out_channels) >= 16


class _ConvFunction(torch.autograd.Function):
    """A (transposed) convolution, with or without a ReLU folded in, and its backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv, relu, workspace):
        transposed = isinstance(conv, nn.ConvTranspose2d)
        attr = "relu" if relu else "none"
        padding, stride, dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        if transposed:
            y = torch.ops.mkldnn._convolution_transpose_pointwise(
                x, weight, bias, padding, list(conv.output_padding), stride, dilation,
                conv.groups, attr, [None], "",
            )  # fmt: skip
        else:
            y = torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, padding, stride, dilation, conv.groups, attr, [None], ""
            )
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.conv, ctx.transposed, ctx.relu, ctx.workspace = conv, transposed, relu, workspace
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        conv, transposed = ctx.conv, ctx.transposed
        if ctx.relu:
            grad = torch.ops.aten.threshold_backward(grad, y, 0)
        grad = grad.to(x.dtype).contiguous(memory_format=torch.channels_last)
        by_matrix = matrix_weight_grads(conv, x.dtype)
        dx, dw, db = torch.ops.aten.convolution_backward(
            grad, x, weight, [conv.out_channels], list(conv.stride), list(conv.padding),
            list(conv.dilation), transposed,
            list(conv.output_padding) if transposed else [0, 0], conv.groups,
            [ctx.needs_input_grad[0], not by_matrix, not by_matrix],
        )  # fmt: skip
        if by_matrix:
            dw, db = _weight_and_bias_grads(grad, x, weight, conv, transposed, ctx.workspace)
        return dx, dw, db, None, None, None


class _ImageTransposedConvFunction(torch.autograd.Function):
    """A transposed convolution to a few channels (the decoder's image layer) by one matrix
    product per pass: each input pixel's channels times the kernel give the output window it
    writes, and ``fold`` adds the overlapping windows up in float32. oneDNN computes such a
    layer at a few output values per cycle: 1.8 ms forward against 0.8 for the product and the
    fold here (128 MNIST images, bf16, Zen 5). The output is float32."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv, workspace):
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        written = _rows(x) @ _kernel_rows(weight)  # (N*H*W, kh*kw*O): the window each pixel writes
        full = ((h - 1) * sh + kh, (w - 1) * sw + kw)
        columns = written.float().view(n, h * w, kh, kw, -1).permute(0, 4, 2, 3, 1)
        out = F.fold(columns.reshape(n, -1, h * w), full, (kh, kw), stride=(sh, sw))
        oh, ow = _transposed_output_size(conv, (h, w))
        ctx.save_for_backward(x, weight)
        ctx.conv, ctx.workspace = conv, workspace
        return out[:, :, ph : ph + oh, pw : pw + ow] + bias.float().view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        n, c, h, w = x.shape
        written = _windows(grad.to(x.dtype), ctx.conv, (h, w), ctx.workspace)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (written @ _kernel_rows(weight).t()).view(n, h, w, c).permute(0, 3, 1, 2)
        kh, kw = ctx.conv.kernel_size
        dw = (_rows(x).t() @ written).view(c, kh, kw, -1).permute(0, 3, 1, 2)
        return dx, dw, grad.sum((0, 2, 3)).to(weight.dtype), None, None


def _kernel_rows(weight: torch.Tensor) -> torch.Tensor:
    """A transposed convolution's kernel (C_in, C_out, kh, kw) as (C_in, kh*kw*C_out)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def _transposed_output_size(conv: nn.ConvTranspose2d, hw: tuple[int, int]) -> tuple[int, int]:
    return tuple(
        (size - 1) * s - 2 * p + k + extra
        for size, s, p, k, extra in zip(
            hw, conv.stride, conv.padding, conv.kernel_size, conv.output_padding, strict=True
        )
    )


def image_layer(conv: nn.Module, dtype: torch.dtype) -> bool:
    """Whether ``_ImageTransposedConvFunction`` computes this layer: a bf16 transposed
    convolution to at most 4 channels whose output padding is no more than its padding; in
    float32 its backward is slower than oneDNN's."""
    return (
        isinstance(conv, nn.ConvTranspose2d)
        and dtype == torch.bfloat16
        and conv.out_channels <= 4
        and all(e <= p for e, p in zip(conv.output_padding, conv.padding, strict=True))
    )


def convolve(x, weight, bias, conv: nn.Module, relu: bool, workspace: Workspace) -> torch.Tensor:
    """``conv`` (an ``nn.Conv2d`` or ``nn.ConvTranspose2d``: its geometry) applied with these
    tensors, followed by a ReLU if ``relu``; ``workspace`` is the layer's own."""
    if image_layer(conv, x.dtype):
        y = _ImageTransposedConvFunction.apply(x, weight, bias, conv, workspace)
        return torch.relu(y) if relu else y
    return _ConvFunction.apply(x, weight, bias, conv, relu, workspace)
