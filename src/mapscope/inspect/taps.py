"""Outputs of named layers for a batch of images, from a single forward pass (forward hooks)."""

from __future__ import annotations

import numpy as np
import torch

from mapscope.cnn.build import Network
from mapscope.errors import ConfigError


def check_layer(net: Network, name: str) -> str:
    if name not in net.layers:
        raise ConfigError(f"layer {name!r} does not exist; valid names: {', '.join(net.layers)}.")
    return name


@torch.no_grad()
def layer_outputs(
    net: Network, inputs: np.ndarray, layers: list[str], batch: int = 500
) -> dict[str, np.ndarray]:
    """{layer name: float32 array (N, C, H, W) or (N, units)} for prepared NCHW inputs.

    The output layer's entry holds logits (softmax is applied only in the loss/probabilities).
    """
    for name in layers:
        check_layer(net, name)
    net.eval()
    device = next(net.parameters()).device
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    handles = [
        net.layers[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured[name].append(out.detach().float().cpu().numpy())
        )
        for name in layers
    ]
    try:
        for i in range(0, len(inputs), batch):
            net(torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch])).to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: np.concatenate(parts) for name, parts in captured.items()}
