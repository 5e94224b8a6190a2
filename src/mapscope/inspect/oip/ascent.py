"""The batched gradient-ascent loop on input images (the network's weights never change).

Each step: objective of every active row, gradient with respect to the input, step of size
``epsilon`` along the gradient normalised by its RMS, re-standardise each image (the network was
trained on standardised inputs; without this, ReLU layers let the activation grow without bound).
A row stops when the relative gain of its objective over ``patience`` steps falls below ``tol``.
Converged rows drop out of the batch, so late steps cost less.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mapscope.inspect.oip.objectives import objective_values
from mapscope.inspect.oip.settings import DEFAULT_STEPS
from mapscope.inspect.oip.start import gaussian_blur, standardize
from mapscope.inspect.taps import forward_to, module_device
from mapscope.progress import bar


@dataclass
class Ascent:
    images: torch.Tensor  # (B, 1, H, W) final images
    activation: np.ndarray  # (B,) final objective
    steps: np.ndarray  # (B,) steps taken
    converged: np.ndarray  # (B,) stopped by the convergence test (not by the step limit)
    trace: list[np.ndarray] = field(default_factory=list)  # objective of all rows per step
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)  # step -> (B, 1, H, W)


def objective(
    net: nn.Module, layer: str, images: torch.Tensor, units: torch.Tensor, node
) -> torch.Tensor:
    """Row i's objective for unit i, on the CPU; the forward pass runs on the module's device and
    stops after ``layer`` (a hook)."""
    device = module_device(net)
    output = forward_to(net, images.to(device), [layer])[layer]
    return objective_values(output, units.to(device), node).cpu()


def gradient(net: nn.Module, layer: str, images: torch.Tensor, units: torch.Tensor, node):
    x = images.detach().to(module_device(net)).requires_grad_(True)
    value = objective(net, layer, x, units, node)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad.cpu()


def ascend(
    net: nn.Module,
    layer: str,
    start: torch.Tensor,
    units: torch.Tensor,
    node: tuple[int, int] | None = None,
    steps: int = DEFAULT_STEPS,
    epsilon: float = 0.01,
    tol: float = 1e-3,
    patience: int = 20,
    snapshot_steps: Sequence[int] = (),
    gradient_filter: Callable[[torch.Tensor], torch.Tensor] | None = None,
    active: torch.Tensor | None = None,
    smooth: float = 0.0,
) -> Ascent:
    x = start.clone()
    n = len(x)
    active = torch.ones(n, dtype=torch.bool) if active is None else active.clone()
    taken = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    history = torch.full((n, patience + 1), float("nan"))
    trace, snapshots = [], {}
    values = torch.zeros(n)
    for step in bar(range(1, steps + 1), f"OIP search of {layer}", unit="step"):
        rows = active.nonzero().squeeze(1)  # on the CPU; they index tensors on any device
        if len(rows) == 0:
            break
        value, grad = gradient(net, layer, x[rows], units[rows], node)
        if gradient_filter is not None:
            grad = gradient_filter(grad)
        if smooth > 0:
            grad = gaussian_blur(grad, smooth)
        rms = grad.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        x[rows] = standardize(x[rows] + epsilon * grad / rms)
        values[rows] = value
        taken[rows.numpy()] = step
        history[rows] = torch.cat([history[rows, 1:], value[:, None]], dim=1)
        if step > patience:
            old, new = history[rows, 0], history[rows, -1]
            gain = (new - old) / new.abs().clamp_min(1e-8)
            done = rows[gain < tol]
            active[done] = False
            converged[done.numpy()] = True
        trace.append(values.numpy().copy())
        if step in snapshot_steps:
            snapshots[step] = x.numpy().copy()
    with torch.no_grad():
        final = objective(net, layer, x, units, node)
    return Ascent(x, final.numpy(), taken, converged, trace, snapshots)
