"""Receptive field and effective stride of every layer of any ``nn.Module``.

One node of a map sees only part of the input: its receptive field. The atlas draws that box
around the winning position of a unit's top images, and the summary shows its size.

The field is computed analytically where the module types are known (``Conv2d``, ``MaxPool2d``,
``AvgPool2d`` and anything that keeps the spatial size, such as activations or batch norm),
following the leaf modules in the order one forward pass runs them. A module that changes the
spatial size in a way these rules do not know (an unusual pooling, a resize) is measured
instead: a gradient is propagated back from one output position of each layer after it, and
the input pixels it reaches form the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mapscope.inspect.taps import at_call, evaluation_mode, find_layer, forward_to


@dataclass(frozen=True)
class Field:
    """How output positions of a layer map to input pixels (per axis: rows, columns)."""

    size: tuple[int, int]  # input pixels seen by one position
    stride: tuple[int, int]  # input pixels between neighbouring positions
    offset: tuple[float, float]  # input coordinate of the centre of position (0, 0)

    def box(self, row: int, col: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) input pixels, bottom/right exclusive, clipped to the image."""
        corners = []
        for pos, size, stride, offset, limit in zip(
            (row, col), self.size, self.stride, self.offset, (height, width), strict=True
        ):
            first = int(np.floor(offset + pos * stride - (size - 1) / 2 + 1e-9))
            corners.append((max(first, 0), min(first + size, limit)))
        (top, bottom), (left, right) = corners
        return top, left, bottom, right


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _known_window(module: nn.Module):
    """(kernel, stride, padding, dilation) per axis for window modules we know, else None."""
    if isinstance(module, nn.Conv2d) and not isinstance(module.padding, str):
        return (
            _pair(module.kernel_size),
            _pair(module.stride),
            _pair(module.padding),
            _pair(module.dilation),
        )
    if isinstance(module, nn.Conv2d):  # padding="same" or "valid"
        kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
        pad = tuple(
            (d * (k - 1)) // 2 if module.padding == "same" else 0
            for k, d in zip(kernel, dilation, strict=True)
        )
        return kernel, _pair(module.stride), pad, dilation
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        dilation = _pair(getattr(module, "dilation", 1))
        return kernel, stride, _pair(module.padding), dilation
    return None


def _trace(net: nn.Module, x: torch.Tensor, layers: list[str]):
    """Leaf modules in the order they ran with their input/output shapes, and for each layer
    the number of leaves that had finished when it did."""
    leaves, finished, handles = [], {}, []

    def on_leaf(module, inputs, output):
        shape_in = tuple(inputs[0].shape) if inputs and torch.is_tensor(inputs[0]) else ()
        shape_out = tuple(output.shape) if torch.is_tensor(output) else ()
        leaves.append((module, shape_in, shape_out))

    def on_layer(name):
        def note(_output):
            finished[name] = len(leaves)

        return at_call(name, note)  # a reused module: the call the name asks for

    for module in net.modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(on_leaf))
    for name in layers:  # registered after the leaf hooks: a leaf layer is counted first
        handles.append(find_layer(net, name).register_forward_hook(on_layer(name)))
    try:
        with torch.no_grad(), evaluation_mode(net):
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    return leaves, finished


def _measured(net: nn.Module, x: torch.Tensor, layer: str) -> Field:
    """The field of ``layer`` from the input pixels a gradient from its centre position reaches."""
    reached = torch.zeros(x.shape[-2:], dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    with evaluation_mode(net):
        for _ in range(4):  # several random inputs: ReLUs gate different paths each time
            probe = torch.randn(x.shape, generator=generator).requires_grad_(True)
            out = forward_to(net, probe, [layer])[layer]
            rows, cols = out.shape[-2:]
            out[0, :, rows // 2, cols // 2].sum().backward()
            reached |= probe.grad[0].abs().sum(0) > 0
    hit_rows, hit_cols = np.nonzero(reached.numpy())
    size = (int(np.ptp(hit_rows)) + 1, int(np.ptp(hit_cols)) + 1) if len(hit_rows) else (1, 1)
    stride = (x.shape[-2] / rows, x.shape[-1] / cols)
    centre = (
        (hit_rows.min() + hit_rows.max()) / 2 if len(hit_rows) else 0.0,
        (hit_cols.min() + hit_cols.max()) / 2 if len(hit_cols) else 0.0,
    )
    offset = (centre[0] - (rows // 2) * stride[0], centre[1] - (cols // 2) * stride[1])
    return Field(size, (round(stride[0]), round(stride[1])), offset)


def receptive_fields(
    net: nn.Module, input_shape: tuple[int, ...], layers: list[str]
) -> dict[str, Field | None]:
    """{layer: Field} for every layer whose output is a map; None where it is not (dense)."""
    x = torch.zeros((1, *input_shape), device=next(net.parameters()).device)
    leaves, finished = _trace(net, x, layers)
    states: list[tuple | None] = []  # field state after each leaf, or None when unknown
    state: tuple | None = ((1, 1), (1, 1), (0.0, 0.0))  # size, stride, offset per axis
    for module, shape_in, shape_out in leaves:
        window = _known_window(module)
        if state is not None and window is not None:
            (size, jump, offset), new = state, ([], [], [])
            for axis in range(2):
                k, s, p, d = (w[axis] for w in window)
                span = d * (k - 1) + 1
                new[0].append(size[axis] + (span - 1) * jump[axis])
                new[1].append(jump[axis] * s)
                new[2].append(offset[axis] + ((span - 1) / 2 - p) * jump[axis])
            state = tuple(tuple(v) for v in new)
        elif len(shape_out) != 4 or (len(shape_in) == 4 and shape_in[-2:] != shape_out[-2:]):
            state = None  # not a map any more, or an unknown change of size
        states.append(state)
    fields: dict[str, Field | None] = {}
    for name in layers:
        done = finished.get(name, 0)
        shape = leaves[done - 1][2] if done else ()
        if len(shape) != 4:
            fields[name] = None
        elif states[done - 1] is not None:
            size, stride, offset = states[done - 1]
            fields[name] = Field(size, stride, offset)
        else:
            fields[name] = _measured(net, x, name)
    return fields
