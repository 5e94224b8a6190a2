"""What an OIP maximises: the mean of a map, one node of a map, or one dense node.

Row i of a batch is pushed toward objective i, so one map, one node, or all maps of a layer are
the same code path with a different vector of unit indices.
"""

from __future__ import annotations

import torch
from torch import nn

from mapscope.errors import ConfigError
from mapscope.inspect.taps import find_layer

SATURATING = (nn.Sigmoid, nn.Tanh, nn.Softmax)


def oip_target(net: nn.Module, layer: str) -> str:
    """The module whose output the OIP search drives for ``layer``: the layer itself, or, when
    it ends in a saturating activation (sigmoid, tanh), the weighted module before it. Near 1 a
    sigmoid's gradient vanishes and the ascent stops at its start noise (an MLP's ``Dense_1``
    went from 0.705 to 1.000 and its 70 OIPs stayed noise); its input keeps climbing, and the
    unit's order of preference is the same."""
    names = {module: name for name, module in net.named_modules()}
    leaves = [m for m in find_layer(net, layer).modules() if not list(m.children())]
    if len(leaves) >= 2 and isinstance(leaves[-1], SATURATING):
        return names[leaves[-2]]
    return layer


def check_units(
    output_shape: tuple[int, ...], units: list[int], node: tuple[int, int] | None, layer: str
) -> None:
    count = output_shape[0]
    bad = [u for u in units if not 0 <= u < count]
    if bad:
        kind = "maps" if len(output_shape) == 3 else "nodes"
        raise ConfigError(f"{layer} has {count} {kind} (0..{count - 1}); got {bad}.")
    if node is not None:
        if len(output_shape) != 3:
            raise ConfigError(
                f"--node needs a conv or pool layer; {layer} is a dense layer (pick nodes with --maps)."
            )
        h, w = output_shape[1:]
        if not (0 <= node[0] < h and 0 <= node[1] < w):
            raise ConfigError(
                f"--node {node[0]},{node[1]} lies outside the {h}x{w} maps of {layer}; "
                f"valid rows 0..{h - 1}, columns 0..{w - 1}."
            )


def objective_values(
    output: torch.Tensor, units: torch.Tensor, node: tuple[int, int] | None
) -> torch.Tensor:
    """(B,) objective of each row: its unit's map mean, map node, or dense node value."""
    rows = torch.arange(len(units), device=output.device)
    return _objective(output[rows, units], output.dim() == 2, node)


def every_objective(
    output: torch.Tensor, units: list[int] | torch.Tensor, node: tuple[int, int] | None
) -> torch.Tensor:
    """(B, U): every row's objective for each of ``units``, as ``objective_values`` measures
    one unit per row (how strongly each real image drives each unit)."""
    selected = output[:, torch.as_tensor(units, dtype=torch.long, device=output.device)]
    return _objective(selected, output.dim() == 2, node)


def _objective(selected: torch.Tensor, dense: bool, node: tuple[int, int] | None) -> torch.Tensor:
    """What a unit's output counts as its objective: a dense node's value, a map's node, or a
    map's mean (its last two axes)."""
    if dense:
        return selected
    if node is not None:
        return selected[..., node[0], node[1]]
    return selected.mean(dim=(-2, -1))
