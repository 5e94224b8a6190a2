"""The layer table that ``mapscope summary`` and ``mapscope cnn summary`` print: one row per
layer with its output shape, parameters, receptive field and effective stride."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SummaryRow:
    name: str
    kind: str  # the module classes inside the layer
    output_shape: tuple[int, ...]  # per image
    parameters: int
    receptive_field: tuple[int, int] | None  # input pixels (rows, columns); None for vectors
    stride: tuple[int, int] | None  # input pixels between neighbouring nodes


def format_rows(
    rows: list[SummaryRow], input_shape: tuple[int, ...], total: int, trainable: int
) -> str:
    """The table ``mapscope summary`` and ``mapscope cnn summary`` print."""
    width = max(14, *(len(r.name) + 2 for r in rows))
    kind_width = max(14, *(len(r.kind) + 2 for r in rows))
    header = (
        f"{'Layer':<{width}}{'Type':<{kind_width}}{'Output shape':<18}{'Params':>10}  "
        f"{'Receptive field':<16}{'Stride':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = "(" + ", ".join(str(s) for s in r.output_shape) + ")"
        field = "x".join(map(str, r.receptive_field)) if r.receptive_field else "-"
        stride = (
            "-"
            if r.stride is None
            else str(r.stride[0])
            if r.stride[0] == r.stride[1]
            else "x".join(map(str, r.stride))
        )
        lines.append(
            f"{r.name:<{width}}{r.kind:<{kind_width}}{shape:<18}{r.parameters:>10,}  "
            f"{field:<16}{stride:>6}"
        )
    lines += [
        "-" * len(header),
        f"Total params: {total:,}  (trainable: {trainable:,})",
        f"Input: {tuple(input_shape)} (channels, height, width)",
    ]
    return "\n".join(lines)
