"""Saving and loading network weights without executing code (every neural run kind).

Weights live in safetensors files; the architecture is the JSON spec in ``config.json``.
Optimizer state for resuming uses ``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mapscope.errors import RunError
from mapscope.io import atomic_path
from mapscope.schema import fields_of


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


@dataclass(frozen=True)
class CheckpointState:
    """The schema of an epoch's ``checkpoint.pt``: what resuming needs beside the weights."""

    optimizer: dict[str, Any]  # torch's optimizer state_dict
    generator: Any  # the shuffling generator's state: a uint8 tensor, checked apart
    step: int
    planned_epochs: int
    precision: Literal["fp32", "bf16"] = "fp32"  # older runs trained in fp32
    threads: int | None = None  # older runs: the threads picked now


GENERATOR_BYTES = torch.Generator().get_state().numel()


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
    checked = fields_of(CheckpointState, state, str(path))
    for name, low in (("step", 0), ("planned_epochs", 1), ("threads", 1)):
        if checked.get(name) is not None and checked[name] < low:
            raise RunError(f"{path}: {name} must be a whole number >= {low}, got {checked[name]}.")
    generator = state["generator"]
    if not (
        isinstance(generator, torch.Tensor)
        and generator.dtype == torch.uint8
        and generator.numel() == GENERATOR_BYTES
    ):
        raise RunError(
            f"{path}: generator must be a torch generator state ({GENERATOR_BYTES} bytes)."
        )
    return state
