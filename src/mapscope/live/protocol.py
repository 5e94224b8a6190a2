"""The live app's wire format: small binary frames over one WebSocket, little-endian.

The browser sends the image at the model's input size (never the canvas); the server answers
with every layer as uint8 on the layer's fixed colour scale, which the page maps through its
colour table. Floats cross only where a number is shown as a number (probabilities, codes,
distances). ``hello`` (JSON, once) tells the page the layers, scales and class names.

Browser -> server (first byte: the kind)::

    DRAW    u8 1 | u32 seq | u8 flags | u16 h | u16 w | u8 pixels[h*w*c]
    EXPLAIN u8 2 | u32 seq | u8 flags | u16 h | u16 w | u8 pixels[h*w*c] | u8 method
    DECODE  u8 3 | u32 seq | u8 mode (0 code, 1 principal axes) | u16 n | f32 values[n]

``flags`` bit 0: centre the drawing like an MNIST digit. Server -> browser::

    ANSWER      u8 1 | u32 seq | f32 server_ms | u16 classes | f32 p[classes]
                | image seen | image raw | u16 layers | per layer: u8 data[units]
                | u16 latent | f32 code[latent] | image reconstruction (latent 0: none)
    EXPLANATION u8 2 | u32 seq | u8 method | u16 target | u8 signed | f32 bound | image map
    ALIKE       u8 3 | u32 seq | u16 k | per image: u32 index | u16 label | f32 distance
                | image
    DECODED     u8 4 | u32 seq | u16 latent | f32 code[latent] | image

where ``image`` is u16 h | u16 w | u8 c | f32 lo | f32 hi | u8 pixels[h*w*c], and an
explanation's ``bound`` is its map's largest magnitude (0: zero everywhere). Errors are
JSON text frames ``{"type": "error", "message": ...}``; the connection goes on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from mapscope.errors import MapscopeError

DRAW, EXPLAIN, DECODE = 1, 2, 3
ANSWER, EXPLANATION, ALIKE, DECODED = 1, 2, 3, 4
CENTRE = 1
# the largest frame read: a 3x128x128 image is 48 KiB, so anything bigger is a mistake
MAX_FRAME = 64 * 1024
MAX_SIDE = 128
METHOD_CODES = ("saliency", "ig", "gradcam")


class ProtocolError(MapscopeError):
    """A frame the server cannot use: answered with an error message, never a closed socket."""


@dataclass
class Request:
    kind: int
    seq: int
    pixels: np.ndarray | None = None  # (h, w) or (h, w, c) uint8
    centre: bool = False
    method: str | None = None
    mode: int = 0  # DECODE: 0 a code, 1 principal-axis positions
    values: np.ndarray | None = None


def parse(frame: bytes, shape: tuple[int, int, int]) -> Request:
    """A browser frame as a ``Request``; anything malformed is a ``ProtocolError`` that says
    what was expected. ``shape`` is the model's (C, H, W)."""
    if not isinstance(frame, bytes | bytearray) or len(frame) < 5:
        raise ProtocolError("a frame starts with a kind byte and a u32 sequence number.")
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes is over the {MAX_FRAME}-byte cap.")
    kind = frame[0]
    (seq,) = struct.unpack_from("<I", frame, 1)
    if kind in (DRAW, EXPLAIN):
        pixels, centre, end = _pixels(frame, 5, shape)
        if kind == DRAW:
            _expect_end(frame, end)
            return Request(DRAW, seq, pixels, centre)
        if len(frame) != end + 1 or frame[end] >= len(METHOD_CODES):
            raise ProtocolError(
                f"an explain frame ends with one method byte 0..{len(METHOD_CODES) - 1} "
                f"({', '.join(METHOD_CODES)})."
            )
        return Request(EXPLAIN, seq, pixels, centre, METHOD_CODES[frame[end]])
    if kind == DECODE:
        if len(frame) < 8:
            raise ProtocolError("a decode frame is kind, seq, mode, u16 count, f32 values.")
        mode = frame[5]
        (n,) = struct.unpack_from("<H", frame, 6)
        if mode not in (0, 1) or len(frame) != 8 + 4 * n:
            raise ProtocolError(
                f"a decode frame has mode 0 or 1 and {n} f32 values ({8 + 4 * n} bytes); got "
                f"mode {mode} in {len(frame)} bytes."
            )
        values = np.frombuffer(frame, dtype="<f4", count=n, offset=8).astype(np.float32)
        if not np.isfinite(values).all():
            raise ProtocolError("decode values must be finite numbers (no NaN or infinity).")
        return Request(DECODE, seq, mode=mode, values=values)
    raise ProtocolError(f"unknown frame kind {kind}; expected 1 draw, 2 explain or 3 decode.")


def _pixels(frame: bytes, at: int, shape) -> tuple[np.ndarray, bool, int]:
    channels, height, width = shape
    if len(frame) < at + 5:
        raise ProtocolError("an image frame needs flags, u16 height and u16 width.")
    flags = frame[at]
    h, w = struct.unpack_from("<HH", frame, at + 1)
    if (h, w) != (height, width):
        raise ProtocolError(
            f"the model reads {height}x{width} images; this frame holds {h}x{w}. Send the "
            "input at the model's size."
        )
    start = at + 5
    for c in (1, channels) if channels == 3 else (1,):
        end = start + h * w * c
        if len(frame) in (end, end + 1):
            pixels = np.frombuffer(frame, dtype=np.uint8, count=h * w * c, offset=start)
            pixels = pixels.reshape(h, w, c) if c == 3 else pixels.reshape(h, w)
            return pixels.copy(), bool(flags & CENTRE), end
    raise ProtocolError(
        f"an image frame holds {height}x{width} pixels ({height * width} bytes"
        f"{' or 3 channels' if channels == 3 else ''}); got {len(frame) - start} bytes."
    )


def _expect_end(frame: bytes, end: int) -> None:
    if len(frame) != end:
        raise ProtocolError(f"frame has {len(frame) - end} bytes after its image.")


def image(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> bytes:
    """An image block: (h, w) or (h, w, c) values on the scale [lo, hi] (their own range when
    not given) as uint8."""
    values = np.asarray(values, dtype=np.float32)
    lo = float(values.min()) if lo is None else float(lo)
    hi = float(values.max()) if hi is None else float(hi)
    h, w = values.shape[:2]
    c = values.shape[2] if values.ndim == 3 else 1
    return struct.pack("<HHBff", h, w, c, lo, hi) + quantise(values, lo, hi).tobytes()


def quantise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values on [lo, hi] as 0..255 (clipped); NaN becomes 0."""
    span = hi - lo if hi > lo else 1.0
    scaled = (np.asarray(values, dtype=np.float32) - lo) * np.float32(255.0 / span)
    np.clip(scaled + np.float32(0.5), 0, 255, out=scaled)
    scaled[np.isnan(scaled)] = 0
    return scaled.astype(np.uint8)


def encode_answer(seq: int, answer, views) -> bytes:
    """An ``ANSWER`` frame of a ``LiveAnswer``; ``views`` give each layer's colour scale."""
    probabilities = answer.probabilities
    parts = [struct.pack("<BIf", ANSWER, seq, answer.seconds * 1000)]
    if probabilities is None:
        parts.append(struct.pack("<H", 0))
    else:
        parts.append(struct.pack("<H", len(probabilities)))
        parts.append(np.asarray(probabilities, dtype="<f4").tobytes())
    parts.append(image(answer.seen))
    parts.append(image(answer.raw, 0, 255))
    parts.append(struct.pack("<H", len(views)))
    parts.extend(quantise(answer.layers[v.name], v.lo, v.hi).tobytes() for v in views)
    if answer.code is None:
        parts.append(struct.pack("<H", 0))
    else:
        parts.append(struct.pack("<H", len(answer.code)))
        parts.append(np.asarray(answer.code, dtype="<f4").tobytes())
        parts.append(image(answer.reconstruction, 0, 1))
    return b"".join(parts)


def encode_explanation(seq: int, explanation) -> bytes:
    """An ``EXPLANATION`` frame; its bound is the map's largest magnitude, 0 for a map that is
    zero everywhere (Grad-CAM where no map of its layer raises the class's score), which the
    page then says rather than showing nothing."""
    values = explanation.map
    bound = float(np.abs(values).max())
    scale = bound or 1.0
    lo = -scale if explanation.signed else 0.0
    head = struct.pack(
        "<BIBHBf",
        EXPLANATION,
        seq,
        METHOD_CODES.index(explanation.method),
        explanation.target,
        int(explanation.signed),
        bound,
    )
    return head + image(values, lo, scale)


def encode_alike(seq: int, neighbours) -> bytes:
    parts = [struct.pack("<BIH", ALIKE, seq, len(neighbours.indices))]
    for index, label, distance, pixels in zip(
        neighbours.indices, neighbours.labels, neighbours.distances, neighbours.images, strict=True
    ):
        parts.append(struct.pack("<IHf", int(index), int(label), float(distance)))
        parts.append(image(pixels, 0, 255))
    return b"".join(parts)


def encode_decoded(seq: int, code: np.ndarray, decoded: np.ndarray) -> bytes:
    head = struct.pack("<BIH", DECODED, seq, len(code))
    return head + np.asarray(code, dtype="<f4").tobytes() + image(decoded, 0, 1)
