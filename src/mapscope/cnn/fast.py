"""The CPU fast path of training, as modules the trainer swaps in and back out.

``Network.forward`` stays plain: every named layer in order. For training on the CPU, the
trainer enters ``fast_path(net)``, which replaces layers in ``net.layers`` by modules that share
the same parameters and compute the same values faster, and restores the original modules on exit
(also after an exception or Ctrl-C). Inside the block a forward hook on ``Conv2D_1`` would see
the pooled map, so only the trainer's own network, which has no hooks, goes through it.

- ``FusedConvPool`` takes the place of a convolution whose max-pool follows it; the pool's slot
  becomes ``nn.Identity``. Max-pooling commutes with monotone activations, so pooling first is
  exact and the activation (and its backward) runs on a quarter of the values; a ReLU runs inside
  the numba kernels (``conv_pool``), which back-propagate only to each window's winner.
- ``ConvBeforeFlatten`` takes the place of the last convolution before Flatten. With 3x3
  kernels and a map of whole 3x3 blocks (the reference network's 3x3x128) it runs in float32
  as Winograd's F(3x3, 3x3) (``winograd``); otherwise, and under bf16 autocast, a small map's
  convolution runs as matrix products over its patches (``conv_matmul``): oneDNN's backward is
  slow at so small a map. Flatten reads
  the map in NCHW order, so a channels-last map is copied anyway; copying before the
  activation keeps its forward and backward in one layout (ReLU's backward across two layouts
  took 10x longer, 66 against 6 us).

Only where ``conv_pool.applies`` holds does a pair take the kernels; otherwise the fused module
computes ``act(pool(conv(x)))`` with torch, which is still exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from mapscope.cnn import conv_matmul
from mapscope.cnn.build import MONOTONE, Activated, Network
from mapscope.training.swap import swapped


class FusedConvPool(nn.Module):
    """``act(pool(conv(x)))`` for an ``Activated`` convolution and the max-pool after it."""

    def __init__(self, layer: Activated, pool: nn.MaxPool2d, size: tuple[int, int] | None):
        super().__init__()
        self.layer, self.pool, self.size = layer, pool, size
        self.relu = isinstance(layer.act, nn.ReLU)  # folded into the kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mapscope.cnn import conv_pool  # numba compiles on first use: only when training

        if not conv_pool.applies(self.layer.inner, self.pool, x):
            return self.layer.act(self.pool(self.layer.inner(x)))
        y = conv_pool.conv_max_pool(x, self.layer.inner, self.pool, self.size, self.relu)
        return y if self.relu else self.layer.act(y)


class ConvBeforeFlatten(nn.Module):
    """``act(conv(x))`` with the map made NCHW-contiguous before the activation; the
    convolution by Winograd's algorithm or, on a small map, as matrix products (see above)."""

    def __init__(self, layer: Activated):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.layer.inner
        from mapscope.cnn import winograd  # numba: only when training

        if winograd.applies(conv, x):
            maps = winograd.conv_winograd(x, conv)
        elif conv_matmul.applies(conv, x):
            maps = conv_matmul.conv_matmul(x, conv)
        else:
            maps = conv(x)
        return self.layer.act(maps.contiguous())


def fast_layers(net: Network) -> dict[str, nn.Module]:
    """The replacements for ``net.layers``, by layer name (empty: nothing to speed up)."""
    names, layers = list(net.layers), list(net.layers.values())
    swaps: dict[str, nn.Module] = {}
    for i, (name, layer) in enumerate(zip(names, layers, strict=True)):
        following = layers[i + 1] if i + 1 < len(layers) else None
        if not isinstance(layer, Activated) or not isinstance(layer.inner, nn.Conv2d):
            continue
        if isinstance(following, nn.MaxPool2d) and isinstance(layer.act, MONOTONE):
            swaps[name] = FusedConvPool(layer, following, net.extents[i + 1])
            swaps[names[i + 1]] = nn.Identity()
        elif isinstance(following, nn.Flatten):
            swaps[name] = ConvBeforeFlatten(layer)
    return swaps


def fast_input_shape(net: Network, i: int) -> tuple[int, ...]:
    """(channels, rows, columns) of what layer ``i`` receives inside ``fast_path``: the layer
    before it's output, cut to the part the following layers read (``Network.extents``)."""
    shape = net.spec.input_shape if i == 0 else net.spec.shapes[i - 1]
    extent = net.extents[i - 1] if i > 0 else None
    return (shape[0], *(extent or shape[1:]))


@contextlib.contextmanager
def fast_path(net: Network, enabled: bool = True) -> Iterator[Network]:
    """Swap the fast modules into ``net`` for the block; the originals come back afterwards."""
    with swapped(net.layers, fast_layers(net) if enabled else {}):
        yield net
