"""Saving and loading network weights without executing code (every neural run kind).

Weights live in safetensors files; the architecture is the JSON spec in ``config.json``.
Optimizer state for resuming uses ``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mapscope.errors import RunError
from mapscope.io import atomic_path


def save_weights(net: nn.Module, path: str | Path) -> Path:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def load_weights(net: nn.Module, path: str | Path) -> nn.Module:
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
    for name, tensor in state.items():
        if tensor.dtype != expected[name].dtype:
            raise RunError(
                f"{path}: tensor {name} is {tensor.dtype}, expected {expected[name].dtype}."
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise RunError(f"{path}: tensor {name} holds NaN or infinite values.")
    net.load_state_dict(state)
    return net


def save_state(state: dict, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


CHECKPOINT_KEYS = {"optimizer", "generator", "step", "planned_epochs"}


def load_state(path: str | Path) -> dict:
    """Optimizer state, generator state and step counter, read without running code. Torch's
    own message for a refused file advises ``weights_only=False``, which would run whatever the
    file holds; it is never passed on."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint missing; the run cannot be resumed.")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; we refuse them
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # torch raises many types for foreign, malicious or corrupt files
        raise RunError(
            f"{path}: not a mapscope checkpoint (damaged, or holding objects other than tensors "
            "and numbers, which are never loaded)."
        ) from None
    if not isinstance(state, dict) or not set(state) >= CHECKPOINT_KEYS:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise RunError(f"{path}: a checkpoint needs {sorted(CHECKPOINT_KEYS)}, found {keys}.")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise RunError(f"{path}: 'step' must be a whole number >= 0.")
    if not isinstance(state["generator"], torch.Tensor) or state["generator"].dtype != torch.uint8:
        raise RunError(f"{path}: 'generator' must be a torch generator state (uint8 tensor).")
    return state
