"""A Keras-like model summary, plus each layer's receptive field and effective stride.

The receptive field tells a person how much of the input one node of a layer can see: it is
what makes OIPs of deeper layers larger and more composite.
"""

from __future__ import annotations

from dataclasses import dataclass

from mapscope.cnn.build import Network, count_parameters
from mapscope.cnn.spec import Conv, NetSpec, Pool
from mapscope.report.summary import SummaryRow, format_rows


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    receptive_field: int | None  # input pixels per side seen by one node; None after Flatten
    stride: int | None  # input pixels between neighbouring nodes


def summarize(spec: NetSpec) -> list[LayerRow]:
    net = Network(spec)
    rows, field, jump = [], 1, 1
    for layer, shape in zip(spec.layers, spec.shapes, strict=True):
        if isinstance(layer, Conv):
            field, jump = field + (layer.kernel - 1) * jump, jump * layer.stride
        elif isinstance(layer, Pool):
            field, jump = field + (layer.size - 1) * jump, jump * layer.step
        spatial = len(shape) == 3
        kind = layer.type if not isinstance(layer, Pool) else f"{layer.kind}-pool"
        rows.append(
            LayerRow(
                layer.name,
                kind,
                shape,
                count_parameters(net.layers[layer.name]),
                field if spatial else None,
                jump if spatial else None,
            )
        )
    return rows


def format_summary(spec: NetSpec) -> str:
    rows = [
        SummaryRow(
            r.name,
            r.kind,
            r.output_shape,
            r.parameters,
            (r.receptive_field,) * 2 if r.receptive_field else None,
            (r.stride,) * 2 if r.stride else None,
        )
        for r in summarize(spec)
    ]
    total = sum(r.parameters for r in rows)
    return format_rows(rows, spec.input_shape, total, total)
