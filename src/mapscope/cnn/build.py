"""Spec -> ``nn.Module`` whose children carry the spec's layer names.

Each named conv/dense child applies its own activation (as a Keras layer does), so a forward
hook on ``Conv2D_1`` sees what that layer hands on. The output layer returns logits; softmax is
applied by ``probabilities`` and inside the loss, which is numerically safer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mapscope.cnn.spec import Activation, BatchNorm, Conv, Dense, Dropout, Flatten, NetSpec, Pool

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
    "linear": nn.Identity,
    "softmax": nn.Identity,  # logits out; see module docstring
}


# activations that commute with max-pooling (monotone non-decreasing): the fast path may pool first
MONOTONE = (nn.ReLU, nn.Sigmoid, nn.ELU, nn.Tanh, nn.SELU, nn.Identity)


class Activated(nn.Module):
    """A weighted layer followed by its activation, addressable under one name."""

    def __init__(self, inner: nn.Module, activation: str):
        super().__init__()
        self.inner = inner
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.inner(x))


class Network(nn.Module):
    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleDict()
        channels = spec.input_shape[0]
        for layer, shape in zip(spec.layers, spec.shapes, strict=True):
            self.layers[layer.name] = _make(layer, channels, shape)
            channels = shape[0]
        self.extents = read_extents(spec)  # what the fast path (cnn/fast.py) computes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return x

    @property
    def layer_names(self) -> list[str]:
        return self.spec.layer_names

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x).float(), dim=1)

    def kernels(self) -> list[torch.Tensor]:
        """Weights that L1/L2 regularisation applies to (biases excluded, as in Keras)."""
        return [m.inner.weight for m in self.layers.values() if isinstance(m, Activated)]

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Glorot-uniform kernels and zero biases (Keras defaults), from an explicit generator."""
        for module in self.layers.values():
            if isinstance(module, Activated):
                weight = module.inner.weight
                fan_out = weight.shape[0] * (weight[0, 0].numel() if weight.dim() > 2 else 1)
                fan_in = weight[0].numel()
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                with torch.no_grad():
                    nn.init.uniform_(weight, -bound, bound, generator=generator)
                    module.inner.bias.zero_()


def read_extents(spec: NetSpec) -> list[tuple[int, int] | None]:
    """Per layer, the rows x columns of its output that the layers after it read.

    A 2x2 max-pool with floor rounding ignores the last row and column of an odd-sized map, and
    a valid convolution then never reads them either: in the reference network ``Conv2D_2``
    reads only 12x12 of the 13x13 ``Max_Pool_1`` map, so training computes only that part
    (forward values and gradients are unchanged; the step is about 1 ms shorter).
    ``None``: all of it, or not a map.
    """
    extents: list[tuple[int, int] | None] = [None] * len(spec.layers)
    read: tuple[int, int] | None = None  # what the layers after layer i read of its output
    for i in range(len(spec.layers) - 1, -1, -1):
        layer, shape = spec.layers[i], spec.shapes[i]
        if not isinstance(layer, Conv | Pool):
            read = None  # flatten and dense layers read everything
            continue
        if read is not None and read != tuple(shape[1:]):
            extents[i] = read
        rows, cols = read or tuple(shape[1:])
        if isinstance(layer, Pool):
            read = ((rows - 1) * layer.step + layer.size, (cols - 1) * layer.step + layer.size)
        elif layer.padding == "valid":
            read = (
                (rows - 1) * layer.stride + layer.kernel,
                (cols - 1) * layer.stride + layer.kernel,
            )
        else:
            read = None  # a padded convolution reads its whole input
    return extents


def _make(layer, in_channels: int, shape: tuple[int, ...]) -> nn.Module:
    if isinstance(layer, Conv):
        padding = (layer.kernel - 1) // 2 if layer.padding == "same" else 0
        conv = nn.Conv2d(in_channels, layer.filters, layer.kernel, layer.stride, padding)
        return Activated(conv, layer.activation)
    if isinstance(layer, Pool):
        pool = nn.MaxPool2d if layer.kind == "max" else nn.AvgPool2d
        return pool(layer.size, layer.step)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, BatchNorm):  # torch's momentum is the weight of the new value
        norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return norm(shape[0], eps=layer.epsilon, momentum=1.0 - layer.momentum)
    if isinstance(layer, Activation):
        return _ACTIVATIONS[layer.activation]()
    assert isinstance(layer, Dense)
    return Activated(nn.Linear(in_channels, layer.units), layer.activation)


def build(spec: NetSpec, seed: int = 0) -> Network:
    net = Network(spec)
    net.reset_parameters(torch.Generator().manual_seed(seed))
    return net


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
