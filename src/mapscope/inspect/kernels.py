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
            return name, convs[0].weight.detach().float().mean(1).cpu().numpy()
    return None
