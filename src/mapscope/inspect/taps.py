"""Outputs of named layers of any ``nn.Module``, through forward hooks.

Layers are addressed by their ``named_modules()`` names, or by the last part of such a name
when it is unique (``Conv2D_1`` for ``layers.Conv2D_1`` in mapscope's CNN). The forward pass
stops right after the deepest layer asked for (a hook raises, as feature-visualisation
libraries do), so asking for an early layer does not pay for the rest of the network.
Tapping never changes the module: its training flag is restored and every hook removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from mapscope.errors import ConfigError


class _StopForward(Exception):
    """Raised by a hook once every wanted layer has produced its output."""


def layer_names(module: nn.Module) -> list[str]:
    """The names a user addresses layers by: the module's own ``layer_names`` if it keeps one
    (mapscope's CNN and MLP), else every named submodule."""
    names = getattr(module, "layer_names", None)
    return list(names) if names is not None else [n for n, _ in module.named_modules() if n]


def find_layer(module: nn.Module, name: str) -> nn.Module:
    named = dict(module.named_modules())
    if name in named and name:
        return named[name]
    matches = [m for full, m in named.items() if full.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(
        f"layer {name!r} does not exist; valid names: {', '.join(layer_names(module))}."
    )


def check_layer(module: nn.Module, name: str) -> str:
    find_layer(module, name)
    return name


@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block; each submodule's own training flag comes back afterwards."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags.items():
            m.training = flag


def forward_to(
    module: nn.Module, x: torch.Tensor, layers: list[str], stop_early: bool = True
) -> dict[str, torch.Tensor]:
    """{layer: output tensor} of one forward pass (gradients flow if ``x`` needs them)."""
    targets = {name: find_layer(module, name) for name in layers}
    captured: dict[str, torch.Tensor] = {}

    def hook(name):
        def keep(_module, _inputs, output):
            captured[name] = output
            if stop_early and len(captured) == len(targets):
                raise _StopForward

        return keep

    handles = [m.register_forward_hook(hook(name)) for name, m in targets.items()]
    try:
        module(x)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in layers if name not in captured]
    if missing:
        raise ConfigError(f"layer(s) {missing} were not reached by the forward pass.")
    return captured


def module_device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def layer_outputs(
    module: nn.Module, inputs: np.ndarray, layers: list[str], batch: int = 500
) -> dict[str, np.ndarray]:
    """{layer name: float32 array (N, C, H, W) or (N, units)} for prepared inputs.

    The output layer's entry holds logits (softmax is applied only in the loss/probabilities).
    """
    for name in layers:
        find_layer(module, name)
    device = module_device(module)
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    with evaluation_mode(module):
        for i in range(0, len(inputs), batch):
            x = torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch])).to(device)
            for name, out in forward_to(module, x, layers).items():
                captured[name].append(out.detach().float().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in captured.items()}
