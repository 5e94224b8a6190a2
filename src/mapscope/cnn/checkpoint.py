"""Saving and loading CNN weights without executing code.

Weights live in safetensors files; the architecture is the JSON spec in ``config.json``.
Optimizer state for resuming uses ``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mapscope.cnn.build import Network
from mapscope.errors import RunError
from mapscope.io import atomic_path


def save_weights(net: Network, path: str | Path) -> Path:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def load_weights(net: Network, path: str | Path) -> Network:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: model file missing; was the run trained to at least one epoch?")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable safetensors model file ({exc}).") from exc
    expected = net.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise RunError(
            f"{path}: the weights do not fit the architecture in config.json (tensor names or shapes "
            "differ). Was the file copied from another run?"
        )
    net.load_state_dict(state)
    return net


def save_state(state: dict, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_state(path: str | Path) -> dict:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise RunError(f"{path}: not a readable mapscope checkpoint ({exc}).") from exc
