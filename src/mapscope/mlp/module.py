"""The numpy MLP's parameters in a torch module, so that every inspection tool that works on an
``nn.Module`` (activations, compare, OIPs) works on an MLP run too.

Layers are named ``Dense_1`` ... ``Dense_n`` like the CNN's dense layers; each applies its
activation, and the last returns the pre-activation class scores (logits), as the CNN's does.
The module computes in float32 and gives the same class as ``MLP.predict``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mapscope.mlp.network import MLP

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


class MLPModule(nn.Module):
    def __init__(self, layers: tuple[int, ...], activation: str):
        super().__init__()
        self.layers = nn.ModuleDict()
        last = len(layers) - 2
        for i, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
            act = nn.Identity() if i == last else _ACTIVATIONS[activation]()
            self.layers[f"Dense_{i + 1}"] = nn.Sequential(nn.Linear(fan_in, fan_out), act)

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers.values():
            x = layer(x)
        return x


def as_module(model: MLP) -> MLPModule:
    module = MLPModule(model.layers, model.activation)
    with torch.no_grad():
        for layer, w, b in zip(module.layers.values(), model.weights_, model.biases_, strict=True):
            layer[0].weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            layer[0].bias.copy_(torch.from_numpy(b))
    return module.eval()
