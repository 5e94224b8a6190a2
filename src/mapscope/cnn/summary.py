"""A Keras-like model summary, plus each layer's receptive field and effective stride.

The receptive field tells a person how much of the input one node of a layer can see: it is
what makes OIPs of deeper layers larger and more composite.
"""

from __future__ import annotations

from dataclasses import dataclass

from mapscope.cnn.build import Network, count_parameters
from mapscope.cnn.spec import Conv, NetSpec, Pool


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
    rows = summarize(spec)
    header = f"{'Layer':<14}{'Type':<14}{'Output shape':<18}{'Params':>10}  {'Receptive field':<16}{'Stride':>6}"
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = "(" + ", ".join(str(s) for s in r.output_shape) + ")"
        field = f"{r.receptive_field}x{r.receptive_field}" if r.receptive_field else "-"
        stride = str(r.stride) if r.stride else "-"
        lines.append(
            f"{r.name:<14}{r.kind:<14}{shape:<18}{r.parameters:>10,}  {field:<16}{stride:>6}"
        )
    total = sum(r.parameters for r in rows)
    lines += [
        "-" * len(header),
        f"Total params: {total:,}  (trainable: {total:,})",
        f"Input: {tuple(spec.input_shape)} (channels, height, width)",
    ]
    return "\n".join(lines)
