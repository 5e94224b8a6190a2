"""A Keras-like summary of any ``nn.Module``: each layer's output shape, parameters,
receptive field and effective stride, from one traced forward pass.

The receptive field (how many input pixels one node of a map sees) is computed analytically
for known conv/pool modules and measured by a gradient elsewhere (``inspect/receptive.py``);
it is what makes OIPs of deeper layers larger and more composite.
"""

from __future__ import annotations

import torch
from torch import nn

from mapscope.inspect.receptive import receptive_fields
from mapscope.inspect.taps import evaluation_mode, find_layer, forward_to, layer_names, split_call
from mapscope.report.summary import SummaryRow, format_rows


def layer_kind(module: nn.Module) -> str:
    """The module classes a layer is made of (``Conv2d, ReLU``), placeholder ``Identity``
    modules left out."""
    inner = [m for m in module.modules() if next(m.children(), None) is None] or [module]
    inner = [m for m in inner if not isinstance(m, nn.Identity)] or inner
    return ", ".join(dict.fromkeys(type(m).__name__ for m in inner))


def parameters_of(name: str, module: nn.Module) -> int:
    """The layer's parameters, counted at its first call only (``pool@2`` reuses ``pool``'s)."""
    return 0 if split_call(name)[1] > 1 else sum(p.numel() for p in module.parameters())


def summarize_module(
    net: nn.Module, input_shape: tuple[int, int, int], layers: list[str] | None = None
) -> list[SummaryRow]:
    """One row per layer (default: the leaves in the order they run)."""
    x = torch.zeros((1, *input_shape))
    names = layers or layer_names(net, x)
    with torch.no_grad(), evaluation_mode(net):
        outputs = forward_to(net, x, names, stop_early=False)
    fields = receptive_fields(net, input_shape, names)
    rows = []
    for name in names:
        module = find_layer(net, name)
        field = fields[name]
        rows.append(
            SummaryRow(
                name,
                layer_kind(module),
                tuple(outputs[name].shape[1:]),
                parameters_of(name, module),
                field.size if field else None,
                field.stride if field else None,
            )
        )
    return rows


def format_module_summary(net: nn.Module, input_shape: tuple[int, int, int]) -> str:
    rows = summarize_module(net, input_shape)
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return format_rows(rows, input_shape, total, trainable)
