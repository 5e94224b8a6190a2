"""Outputs of named layers of any ``nn.Module``, through forward hooks.

Layers are addressed by their ``named_modules()`` names, or by the last part of such a name
when it is unique (``Conv2D_1`` for ``layers.Conv2D_1`` in mapscope's CNN). A module that one
forward pass calls more than once (PyTorch's CIFAR tutorial reuses ``self.pool``) is its first
call under its plain name and its k-th call as ``pool@k``. The forward pass
stops right after the deepest layer asked for (a hook raises, as feature-visualisation
libraries do), so asking for an early layer does not pay for the rest of the network.
Tapping never changes the module: its training flag is restored and every hook removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from mapscope.device import INFERENCE_BATCH
from mapscope.errors import ConfigError


class _StopForward(Exception):
    """Raised by a hook once every wanted layer has produced its output."""


def layer_names(module: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """The layers a tool lists by default: the module's own ``layer_names`` if it keeps one
    (mapscope's CNN, MLP and autoencoder), else its leaf submodules (``features.0``, ...): in
    the order one forward pass of ``example`` runs them, repeated calls as ``name@2`` ..., or,
    without an example, in registration order. Any ``named_modules()`` name, containers
    included, can still be tapped."""
    names = getattr(module, "layer_names", None)
    if names is not None:
        return list(names)
    leaves = {m: n for n, m in module.named_modules() if n and next(m.children(), None) is None}
    if example is None:
        return list(leaves.values())
    order: list[str] = []
    calls: dict[nn.Module, int] = {}

    def note(leaf, _inputs, _output):
        calls[leaf] = calls.get(leaf, 0) + 1
        order.append(leaves[leaf] + (f"@{calls[leaf]}" if calls[leaf] > 1 else ""))

    handles = [leaf.register_forward_hook(note) for leaf in leaves]
    try:
        with torch.no_grad(), evaluation_mode(module):
            module(example.to(module_device(module)))
    finally:
        for handle in handles:
            handle.remove()
    return order


def split_call(name: str) -> tuple[str, int]:
    """``pool@2`` -> (``pool``, 2); a plain name is its first call."""
    base, sep, call = name.rpartition("@")
    if sep and call.isdigit() and int(call) >= 1:
        return base, int(call)
    return name, 1


def at_call(name: str, action: Callable[[torch.Tensor], None]):
    """A forward hook that hands the output to ``action`` at the call ``name`` asks for: the
    first for a plain name, the k-th for ``pool@k`` (a module one forward pass reuses)."""
    wanted, seen = split_call(name)[1], [0]

    def hook(_module, _inputs, output):
        seen[0] += 1
        if seen[0] == wanted:
            action(output)

    return hook


def find_layer(module: nn.Module, name: str) -> nn.Module:
    name = split_call(name)[0]
    named = dict(module.named_modules())
    if name in named and name:
        return named[name]
    matches = [m for full, m in named.items() if full.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    extra = "" if hasattr(module, "layer_names") else " (or any other named_modules() name)"
    raise ConfigError(
        f"layer {name!r} does not exist; valid names: {', '.join(layer_names(module))}{extra}."
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
    if isinstance(module, torch.jit.ScriptModule):
        raise ConfigError(
            "a TorchScript module runs its compiled graph, which forward hooks cannot reach; "
            "give the Python class (--module FILE.py:NAME) with the TorchScript file as --weights."
        )
    targets = {name: find_layer(module, name) for name in layers}
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def store(output):
            captured[name] = output
            if stop_early and len(captured) == len(targets):
                raise _StopForward

        return store

    handles = [m.register_forward_hook(at_call(name, keep(name))) for name, m in targets.items()]
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
    module: nn.Module, inputs: np.ndarray, layers: list[str], batch: int = INFERENCE_BATCH
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
