"""A CPU training step of the whole network by hand: forward, loss and gradients, no autograd.

Inside ``fast_path`` every layer is still an autograd node, and so are the loss, the dtype casts
under autocast, the ReLUs and the copies between layouts; each parameter's gradient then goes
through its own ``AccumulateGrad``. For the reference network that bookkeeping is a sizeable
part of a step that takes a few milliseconds. Where the fast path covers the whole network,
``WholeStep`` runs the same layer computations in order, takes the loss's gradient in closed form
(``training/losses.py``), walks the layers back in reverse and adds each parameter's gradient to
its ``.grad``, as ``loss.backward()`` would. The layers' own code is reused: each fused layer's
``torch.autograd.Function`` is called through its static ``forward`` and ``backward`` with a
``_Context`` in place of autograd's, so the kernels, products and order of sums are those of the
autograd path (in float32 the same bits).

It covers networks made of the fast path's fused convolution and max-pool with its ReLU folded
in (``conv_pool``), a small-map convolution before Flatten (``winograd`` or ``conv_matmul``)
with a ReLU or none, Flatten, and dense layers with a ReLU or none (the output layer's softmax
lives in the loss), trained with cross-entropy and label smoothing but no L1/L2 penalty.
``whole_step`` returns None for any other network, and the trainer keeps autograd's step.

For the reference network, in steps alternating with autograd's in one process (2 cores, AMD
Zen 4, batch 64), a step took 3-5 % less time in fp32 and 6-9 % less in bf16. Making the network
one autograd node instead, with the loss's node and ``AccumulateGrad`` kept, saved a third of
that: most of autograd's cost here lies outside the layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mapscope.cnn import conv_matmul
from mapscope.cnn.build import Activated, Network
from mapscope.cnn.fast import ConvBeforeFlatten, FusedConvPool, fast_input_shape
from mapscope.training.losses import smoothed_cross_entropy_and_gradient


class _Context:
    """What the layer Functions use of an autograd ``ctx``: the tensors saved for backward,
    which inputs need a gradient, and the attributes they set themselves."""

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple[torch.Tensor, ...] = ()

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors


def _add_grad(parameter: torch.Tensor, grad: torch.Tensor) -> None:
    """Add ``grad`` to ``parameter.grad`` (made in the parameter's layout where there is none),
    as autograd's ``AccumulateGrad`` does."""
    if parameter.grad is None:
        parameter.grad = torch.empty_like(parameter).copy_(grad)
    else:
        parameter.grad.add_(grad)


def _activated(out: torch.Tensor, relu: bool) -> torch.Tensor:
    """``out`` through the layer's ReLU (in place) or, without one, as it is."""
    return out.clamp_min_(0.0) if relu else out


def _through_activation(grad: torch.Tensor, out: torch.Tensor, relu: bool) -> torch.Tensor:
    """The gradient before the activation that gave ``out``: zero where the ReLU was off."""
    return torch.ops.aten.threshold_backward(grad, out, 0.0) if relu else grad


def _unpadded(grad: torch.Tensor, shape: torch.Size, pad: tuple[int, int]) -> torch.Tensor:
    """The gradient of an input of ``shape`` that was zero-padded by ``pad`` and then cut to the
    rows and columns that ``grad`` covers (the part the next layers read)."""
    rows, cols = shape[2] + 2 * pad[0], shape[3] + 2 * pad[1]
    if grad.shape[2:] != (rows, cols):
        grad = F.pad(grad, (0, cols - grad.shape[3], 0, rows - grad.shape[2]))
    return grad[:, :, pad[0] : rows - pad[0], pad[1] : cols - pad[1]]


class _ConvPool:
    """A convolution, its max-pool and ReLU through ``conv_pool``'s kernels."""

    def __init__(self, module: FusedConvPool, first: bool):
        from mapscope.cnn import conv_pool  # numba: only when training

        self.module, self.first = module, first
        self.kernel_input = conv_pool.kernel_input
        self.function = conv_pool._ConvMaxPool if first else conv_pool._ConvThenMaxPool
        self.pad = conv_matmul.padding_of(module.layer.inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, pool = self.module.layer.inner, self.module.pool
        self.shape = x.shape
        x = self.kernel_input(x, conv, pool, self.module.size)
        self.ctx = _Context((not self.first, True, True, False, False))
        return self.function.forward(self.ctx, x, conv.weight, conv.bias, pool.kernel_size, True)

    def backward(self, grad: torch.Tensor) -> torch.Tensor | None:
        grad_x, grad_w, grad_b, _, _ = self.function.backward(self.ctx, grad)
        _add_grad(self.module.layer.inner.weight, grad_w)
        _add_grad(self.module.layer.inner.bias, grad_b)
        return None if grad_x is None else _unpadded(grad_x, self.shape, self.pad)


class _ConvBeforeFlatten:
    """A small-map convolution by Winograd's algorithm in float32 (``winograd``) or as matrix
    products (``conv_matmul``), as ``ConvBeforeFlatten`` chooses, then its activation, in the
    NCHW order that Flatten reads."""

    def __init__(self, module: ConvBeforeFlatten, first: bool):
        from mapscope.cnn import winograd  # numba: only when training

        self.conv, self.first = module.layer.inner, first
        self.relu = isinstance(module.layer.act, nn.ReLU)
        self.pad = conv_matmul.padding_of(self.conv)
        self.winograd = winograd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        self.shape = x.shape
        needs = (not self.first, True, conv.bias is not None)
        if self.winograd.applies(conv, x):
            self.function, dtype = self.winograd._ConvWinograd, ()
        else:
            self.function, dtype = conv_matmul._ConvAsMatmul, (conv_matmul.compute_dtype(),)
        self.ctx = _Context(needs + (False,) * len(dtype))
        padded = conv_matmul.padded(x, conv)
        maps = self.function.forward(self.ctx, padded, conv.weight, conv.bias, *dtype)
        self.out = _activated(maps.contiguous(), self.relu)  # patches' rows are channels-last
        return self.out

    def backward(self, grad: torch.Tensor) -> torch.Tensor | None:
        grad = _through_activation(grad.view(self.out.shape), self.out, self.relu)
        grad_x, grad_w, grad_b = self.function.backward(self.ctx, grad)[:3]
        _add_grad(self.conv.weight, grad_w)
        if grad_b is not None:
            _add_grad(self.conv.bias, grad_b)
        return None if grad_x is None else _unpadded(grad_x, self.shape, self.pad)


class _Flatten:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad: torch.Tensor | None) -> torch.Tensor | None:
        return None if grad is None else grad.reshape(self.shape)


class _Dense:
    """``act(x @ W.T + b)`` in the products' dtype (bf16 under CPU autocast, as ``nn.Linear``
    would run there), gradients of the parameters in their own dtype."""

    def __init__(self, module: Activated, first: bool):
        self.linear, self.first = module.inner, first
        self.relu = isinstance(module.act, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = conv_matmul.compute_dtype()
        self.x, self.weight = x.to(dtype), self.linear.weight.to(dtype)
        out = torch.addmm(self.linear.bias.to(dtype), self.x, self.weight.t())
        self.out = _activated(out, self.relu)
        return self.out

    def backward(self, grad: torch.Tensor) -> torch.Tensor | None:
        grad = _through_activation(grad.to(self.out.dtype), self.out, self.relu)
        weight = self.linear.weight
        _add_grad(weight, (grad.t() @ self.x).to(weight.dtype))
        _add_grad(self.linear.bias, grad.sum(0).to(self.linear.bias.dtype))  # as autograd
        return None if self.first else grad @ self.weight


def _stages(net: Network) -> list | None:
    """The network's swapped-in layers as stages in order; None where one is not covered,
    including a fused layer whose kernels (``applies``) do not take the shapes the network's
    spec gives, in float32 on the CPU as the trainer feeds it."""
    from mapscope.cnn import conv_pool  # numba: only when training

    stages: list = []
    first = True  # no parameters before this layer: its input needs no gradient
    for i, module in enumerate(net.layers.values()):
        if isinstance(module, nn.Identity):  # a max-pool's slot, pooled by the layer before
            continue
        if isinstance(module, FusedConvPool | ConvBeforeFlatten):
            x = torch.empty(1, *fast_input_shape(net, i))
        if isinstance(module, FusedConvPool) and module.relu:
            if not conv_pool.applies(module.layer.inner, module.pool, x):
                return None
            if stages and isinstance(stages[-1], _ConvPool) and not stages[-1].first:
                return None  # under bf16 its input would be bf16, which the kernels do not take
            stages.append(_ConvPool(module, first))
        elif isinstance(module, ConvBeforeFlatten) and isinstance(
            module.layer.act, nn.ReLU | nn.Identity
        ):
            if not conv_matmul.applies(module.layer.inner, x):
                return None
            stages.append(_ConvBeforeFlatten(module, first))
        elif isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            stages.append(_Flatten())
            continue
        elif (
            isinstance(module, Activated)
            and isinstance(module.inner, nn.Linear)
            and module.inner.bias is not None
            and isinstance(module.act, nn.ReLU | nn.Identity)
        ):
            stages.append(_Dense(module, first))
        else:
            return None
        first = False
    return stages


class WholeStep:
    """``step(x, target) -> (output, loss)``: the network's output for ``x``, the step's loss,
    and its gradient added to every parameter's ``.grad``, as a forward, the loss and
    ``loss.backward()`` through the fast path would give. Call it under the step's autocast."""

    def __init__(self, stages: list, smoothing: float):
        self.stages, self.smoothing = stages, smoothing

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise TypeError(f"float32 images on the CPU expected, got {x.dtype} on {x.device}")
        output = x
        for stage in self.stages:
            output = stage.forward(output)
        with torch.autocast("cpu", enabled=False):  # the loss in float32, as step_loss has it
            loss, grad = smoothed_cross_entropy_and_gradient(output.float(), target, self.smoothing)
            for stage in reversed(self.stages):
                grad = stage.backward(grad)
        return output, loss


def whole_step(net: Network, smoothing: float) -> WholeStep | None:
    """A ``WholeStep`` for ``net`` inside its ``fast_path`` block, or None where the network or
    its loss is not covered (see the module docstring): then autograd's step trains it."""
    if net.spec.l1 or net.spec.l2:
        return None
    stages = _stages(net)
    return None if stages is None else WholeStep(stages, smoothing)
