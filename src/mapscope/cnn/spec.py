"""A CNN described as data: typed, validated, readable from TOML, writable to JSON.

Layer names are how every later tool (activations, compare, OIP) addresses a layer, so they
are part of the spec and must be unique.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mapscope.errors import ConfigError
from mapscope.schema import check_size, gib

ACTIVATIONS = ("relu", "sigmoid", "elu", "tanh", "selu", "linear", "softmax")
POOL_KINDS = ("max", "average")
PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class Conv:
    name: str
    filters: int
    kernel: int = 3
    stride: int = 1
    padding: str = "valid"
    activation: str = "relu"
    type: str = "conv"


@dataclass(frozen=True)
class Pool:
    name: str
    kind: str = "max"
    size: int = 2
    stride: int | None = None  # None: the pool size (non-overlapping windows, Keras' default)
    type: str = "pool"

    @property
    def step(self) -> int:
        return self.stride or self.size


@dataclass(frozen=True)
class Flatten:
    name: str = "Flatten"
    type: str = "flatten"


@dataclass(frozen=True)
class Dense:
    name: str
    units: int
    activation: str = "relu"
    type: str = "dense"


@dataclass(frozen=True)
class Dropout:
    """Zeroes a share ``rate`` of its inputs while training; passes everything at inference."""

    name: str
    rate: float = 0.5
    type: str = "dropout"


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over channels (maps) or features (after Flatten), with Keras'
    defaults: ``epsilon`` 1e-3 and a running average that keeps ``momentum`` of the old value."""

    name: str
    epsilon: float = 1e-3
    momentum: float = 0.99
    type: str = "batchnorm"


@dataclass(frozen=True)
class Activation:
    """An activation as a layer of its own (Keras' ``Activation``)."""

    name: str
    activation: str = "relu"
    type: str = "activation"


Layer = Conv | Pool | Flatten | Dense | Dropout | BatchNorm | Activation
_LAYER_TYPES = {
    "conv": Conv,
    "pool": Pool,
    "flatten": Flatten,
    "dense": Dense,
    "dropout": Dropout,
    "batchnorm": BatchNorm,
    "activation": Activation,
}
SHAPE_KEEPING = (Dropout, BatchNorm, Activation)  # elementwise or per channel: shape unchanged


@dataclass(frozen=True)
class NetSpec:
    layers: tuple[Layer, ...]
    input_shape: tuple[int, int, int] = (1, 28, 28)
    l1: float = 0.0  # kernel regularisation, like Keras' kernel_regularizer
    l2: float = 0.0
    shapes: tuple[tuple[int, ...], ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "l1": self.l1,
            "l2": self.l2,
            "layers": [asdict(layer) for layer in self.layers],
        }

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def n_classes(self) -> int:
        return self.layers[-1].units  # validated to be a softmax Dense layer


def default_spec() -> NetSpec:
    """The reference network of the original experiments (208,982 parameters)."""
    return validate(
        NetSpec(
            (
                Conv("Conv2D_1", 32),
                Pool("Max_Pool_1"),
                Conv("Conv2D_2", 64),
                Pool("Max_Pool_2"),
                Conv("Conv2D_3", 128),
                Flatten("Flatten"),
                Dense("Dense_1", 100),
                Dense("Dense_2", 10, "softmax"),
            )
        )
    )


def spec_from_dict(raw: dict[str, Any], source: str = "config") -> NetSpec:
    """A spec from its dict form (TOML or config.json), every problem reported in one message."""
    if not isinstance(raw, dict) or not isinstance(raw.get("layers"), list):
        raise ConfigError(
            f"{source}: missing field 'layers' (a list of conv/pool/flatten/dense/dropout/"
            "batchnorm/activation tables)."
        )
    problems: list[str] = []
    extra = set(raw) - {"layers", "input_shape", "l1", "l2"}
    if extra:
        problems.append(
            f"unknown top-level field(s) {sorted(extra)}; allowed: layers, input_shape, l1, l2"
        )
    layers = []
    for i, entry in enumerate(raw["layers"]):
        where = f"layers[{i}]"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("type"), str)
            or (entry["type"] not in _LAYER_TYPES)
        ):
            problems.append(f"{where}: field 'type' must be one of {', '.join(_LAYER_TYPES)}")
            continue
        cls = _LAYER_TYPES[entry["type"]]
        known = set(cls.__dataclass_fields__)
        unknown = set(entry) - known
        if unknown:
            problems.append(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}"
            )
            continue
        try:
            layers.append(cls(**entry))
        except TypeError:
            missing = [f for f in ("name", "filters", "units") if f in known and f not in entry]
            problems.append(f"{where}: missing field(s) {missing}")
    input_shape = raw.get("input_shape", [1, 28, 28])
    if not isinstance(input_shape, list | tuple) or not all(_is_count(v) for v in input_shape):
        problems.append(
            f"input_shape must be [channels, height, width] of whole numbers >= 1, "
            f"got {input_shape!r}"
        )
        input_shape = (1, 28, 28)
    penalties = {}
    for name in ("l1", "l2"):
        value = raw.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
            problems.append(f"{name} must be a finite number >= 0, got {value!r}")
            value = 0.0
        penalties[name] = float(value)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems) + ".")
    spec = NetSpec(tuple(layers), tuple(input_shape), penalties["l1"], penalties["l2"])
    return validate(spec, source)


def load_spec(path: str | Path) -> NetSpec:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"--config {path} is a folder; give a TOML file like configs/reference.toml."
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"--config file {path} not found.") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text (TOML) file.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from exc
    return spec_from_dict(raw, str(path))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _reserved_names() -> set[str]:
    """Names a layer cannot have: the layers live in an ``nn.ModuleDict``, whose own
    attributes (``keys``, ``forward``, ``training`` ...) cannot be shadowed."""
    from torch import nn

    return set(dir(nn.ModuleDict()))


def validate(spec: NetSpec, source: str = "config") -> NetSpec:
    """Check names, values and that every map keeps at least 1x1; fill in the output shapes.
    Every problem is collected and reported in one message."""
    problems: list[str] = []
    if len(spec.input_shape) != 3 or not all(_is_count(v) for v in spec.input_shape):
        problems.append(f"input_shape must be [channels, height, width], got {spec.input_shape}")
    if not (0 <= spec.l1 < 1e6 and 0 <= spec.l2 < 1e6):
        problems.append(f"l1 and l2 must be finite and >= 0, got {spec.l1} and {spec.l2}")
    names = [layer.name for layer in spec.layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"layer names must be unique; repeated: {duplicates}")
    reserved = _reserved_names()
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or name in reserved:
            problems.append(
                f"layer name {name!r} must be a Python identifier like Conv2D_1 and not a "
                "reserved torch attribute name"
            )
    layers = list(spec.layers)
    if not layers or not isinstance(layers[-1], Dense) or layers[-1].activation != "softmax":
        problems.append("the last layer must be a dense layer with activation 'softmax'")
    shape: tuple[int, ...] | None = None if problems else tuple(spec.input_shape)
    if not problems and not any(isinstance(layer, Flatten) for layer in layers):
        first_dense = next(i for i, layer in enumerate(layers) if isinstance(layer, Dense))
        layers.insert(first_dense, Flatten("Flatten" if "Flatten" not in names else "Flatten_auto"))
    shapes = []
    for i, layer in enumerate(layers):
        where = f"layer {layer.name!r}"
        before = len(problems)
        _check_layer(layer, where, i == len(layers) - 1, problems)
        if shape is not None and len(problems) == before:
            shape = _output_shape(layer, shape, where, problems)
        else:
            shape = None  # shapes after a broken layer are unknown; keep checking the fields
        shapes.append(shape)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems) + ".")
    check_training_size(layers, tuple(spec.input_shape), shapes, source)
    return NetSpec(tuple(layers), tuple(spec.input_shape), spec.l1, spec.l2, tuple(shapes))


TRAINING_BATCH = 64  # the batch the size budget assumes: the default training's


def check_training_size(
    layers: list[Layer], input_shape: tuple[int, ...], shapes: list, source: str
) -> None:
    """The size budget of a network, from its spec alone: its parameters with their gradients
    and two optimizer moments (16 bytes each), and every layer's output for a batch of
    ``TRAINING_BATCH`` images, kept for the backward pass with its gradient (8 bytes each). The
    layer that asks the most is named. Nothing is built before this passes."""
    needs, before = [], input_shape
    for layer, shape in zip(layers, shapes, strict=True):
        params = 0
        if isinstance(layer, Conv):
            params = before[0] * layer.kernel**2 * layer.filters + layer.filters
        elif isinstance(layer, Dense):
            params = math.prod(before) * layer.units + layer.units
        elif isinstance(layer, BatchNorm):
            params = 4 * before[0]
        needs.append((16 * params + 8 * TRAINING_BATCH * math.prod(shape), layer.name))
        before = shape
    largest, name = max(needs)
    check_size(
        sum(n for n, _ in needs) + 8 * TRAINING_BATCH * math.prod(input_shape),
        f"the network (its largest layer {name!r} alone {gib(largest)})",
        source,
        ConfigError,
    )


def _check_layer(layer: Layer, where: str, last: bool, problems: list[str]) -> None:
    """The fields of one layer, each against its allowed values."""
    counts = {Conv: ("filters", "kernel", "stride"), Pool: ("size",), Dense: ("units",)}
    for name in counts.get(type(layer), ()):
        if not _is_count(getattr(layer, name)):
            problems.append(
                f"{where}: field '{name}' must be a positive integer, got {getattr(layer, name)!r}"
            )
    if isinstance(layer, Pool) and layer.stride is not None and not _is_count(layer.stride):
        problems.append(f"{where}: field 'stride' must be a positive integer, got {layer.stride!r}")
    checks = {
        (Dropout, "rate"): (0.0, 1.0, "a number in [0, 1)"),
        (BatchNorm, "epsilon"): (0.0, 1.0, "a number in (0, 1)"),
        (BatchNorm, "momentum"): (0.0, 1.0, "a number in [0, 1)"),
    }
    for (cls, name), (low, high, text) in checks.items():
        if isinstance(layer, cls):
            value = getattr(layer, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not low <= value < high or (name == "epsilon" and value <= 0):
                problems.append(f"{where}: field '{name}' must be {text}, got {value!r}")
    if isinstance(layer, Conv) and layer.padding not in PADDINGS:
        problems.append(
            f"{where}: field 'padding' must be one of {PADDINGS}, got {layer.padding!r}"
        )
    if isinstance(layer, Pool) and layer.kind not in POOL_KINDS:
        problems.append(f"{where}: field 'kind' must be one of {POOL_KINDS}, got {layer.kind!r}")
    activation = getattr(layer, "activation", None)
    if activation is not None and activation not in ACTIVATIONS:
        problems.append(
            f"{where}: field 'activation' is {activation!r}; allowed values: {', '.join(ACTIVATIONS)}"
        )
    if activation == "softmax" and not last:
        problems.append(f"{where}: only the output layer may use 'softmax'")
    if isinstance(layer, Activation) and activation == "softmax":
        problems.append(
            f"{where}: softmax belongs to the output dense layer, not an activation layer"
        )


def _output_shape(
    layer: Layer, shape: tuple[int, ...], where: str, problems: list[str]
) -> tuple[int, ...] | None:
    flat = len(shape) == 1
    if isinstance(layer, Conv | Pool) and flat:
        problems.append(f"{where}: a {layer.type} layer cannot follow a flatten or dense layer")
        return None
    if isinstance(layer, Conv):
        pad = (layer.kernel - 1) // 2 if layer.padding == "same" else 0
        h = (shape[1] + 2 * pad - layer.kernel) // layer.stride + 1
        w = (shape[2] + 2 * pad - layer.kernel) // layer.stride + 1
        shape = (layer.filters, h, w)
    elif isinstance(layer, Pool):
        shape = (
            shape[0],
            (shape[1] - layer.size) // layer.step + 1,
            (shape[2] - layer.size) // layer.step + 1,
        )
    elif isinstance(layer, SHAPE_KEEPING):
        return shape
    elif isinstance(layer, Flatten):
        shape = (shape[0] * shape[1] * shape[2],) if not flat else shape
    else:
        if not flat:
            problems.append(f"{where}: dense layers need a flatten layer before them")
            return None
        shape = (layer.units,)
    if len(shape) == 3 and (shape[1] < 1 or shape[2] < 1):
        problems.append(
            f"{where}: output would be {shape[1]}x{shape[2]}; the layers shrink the map below "
            "1x1. Use fewer or smaller kernels/pools, padding = 'same', or a larger input"
        )
        return None
    return shape
