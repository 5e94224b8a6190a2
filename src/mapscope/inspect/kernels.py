"""The kernels of a network's first convolution: what its first layer of units looks for,
shown beside their OIPs by the atlas and by ``mapscope match``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mapscope.inspect.taps import find_layer, layer_names


def first_conv_kernels(
    net: nn.Module, layers: list[str] | None = None, x: torch.Tensor | None = None
) -> tuple[str, np.ndarray] | None:
    """(layer, (units, height, width) kernels averaged over input channels) of the first layer,
    in the order a forward pass runs them, that holds exactly one ``nn.Conv2d``; None for a
    network without one. ``layers``: the layer names in run order (default: traced with ``x``)."""
    for name in layers if layers is not None else layer_names(net, x):
        convs = [m for m in find_layer(net, name).modules() if isinstance(m, nn.Conv2d)]
        if len(convs) == 1:
            return name, _kernel_pictures(convs[0])
    return None


def _kernel_pictures(conv: nn.Conv2d) -> np.ndarray:
    """(units, kh, kw) a convolution's kernels averaged over its input channels."""
    return conv.weight.detach().float().mean(1).cpu().numpy()


def first_layer_weights(
    net: nn.Module, layers: list[str], image_shape: tuple[int, int, int]
) -> tuple[str, np.ndarray] | None:
    """(layer, (units, h, w)) what the first weighted layer looks for, as pictures: the kernels
    of a first convolution, or, for a first dense layer that reads the whole flattened image
    (an MLP), each unit's weights laid out as the image (the unit's template: its
    pre-activation is the dot product of this picture with the input). None otherwise."""
    for name in layers:
        module = find_layer(net, name)
        convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        dense = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if len(convs) == 1:
            return name, _kernel_pictures(convs[0])
        if len(dense) == 1 and not convs:
            weight = dense[0].weight.detach().float().cpu().numpy()
            if weight.shape[1] != int(np.prod(image_shape)):
                return None
            return name, weight.reshape(len(weight), *image_shape).mean(1)
        if convs or dense:
            return None
    return None
