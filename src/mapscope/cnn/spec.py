"""A CNN described as data: typed, validated, readable from TOML, writable to JSON.

Layer names are how every later tool (activations, compare, OIP) addresses a layer, so they
are part of the spec and must be unique.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mapscope.errors import ConfigError

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
    type: str = "pool"


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


Layer = Conv | Pool | Flatten | Dense
_LAYER_TYPES = {"conv": Conv, "pool": Pool, "flatten": Flatten, "dense": Dense}


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
    if not isinstance(raw, dict) or "layers" not in raw:
        raise ConfigError(
            f"{source}: missing field 'layers' (a list of conv/pool/flatten/dense tables)."
        )
    layers = []
    for i, entry in enumerate(raw["layers"]):
        where = f"{source}: layers[{i}]"
        if not isinstance(entry, dict) or entry.get("type") not in _LAYER_TYPES:
            raise ConfigError(f"{where}: field 'type' must be one of {', '.join(_LAYER_TYPES)}.")
        cls = _LAYER_TYPES[entry["type"]]
        known = set(cls.__dataclass_fields__)
        unknown = set(entry) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}."
            )
        try:
            layers.append(cls(**entry))
        except TypeError as exc:
            missing = [f for f in known if f not in entry and f in ("name", "filters", "units")]
            raise ConfigError(f"{where}: missing field(s) {missing or exc}.") from exc
    extra = set(raw) - {"layers", "input_shape", "l1", "l2"}
    if extra:
        raise ConfigError(
            f"{source}: unknown top-level field(s) {sorted(extra)}; allowed: layers, input_shape, l1, l2."
        )
    spec = NetSpec(
        tuple(layers),
        tuple(raw.get("input_shape", (1, 28, 28))),
        float(raw.get("l1", 0.0)),
        float(raw.get("l2", 0.0)),
    )
    return validate(spec, source)


def load_spec(path: str | Path) -> NetSpec:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from exc
    return spec_from_dict(raw, str(path))


def _positive_int(value: Any, where: str, field_name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(
            f"{where}: field '{field_name}' must be a positive integer, got {value!r}."
        )


def validate(spec: NetSpec, source: str = "config") -> NetSpec:
    """Check names, values and that every map keeps at least 1x1; fill in the output shapes."""
    if len(spec.input_shape) != 3:
        raise ConfigError(
            f"{source}: input_shape must be [channels, height, width], got {spec.input_shape}."
        )
    if spec.l1 < 0 or spec.l2 < 0:
        raise ConfigError(f"{source}: l1 and l2 must be >= 0.")
    names = [layer.name for layer in spec.layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: layer names must be unique; repeated: {duplicates}.")
    layers = list(spec.layers)
    if not layers or not isinstance(layers[-1], Dense) or layers[-1].activation != "softmax":
        raise ConfigError(
            f"{source}: the last layer must be a dense layer with activation 'softmax'."
        )
    if not any(isinstance(layer, Flatten) for layer in layers):
        first_dense = next(i for i, layer in enumerate(layers) if isinstance(layer, Dense))
        layers.insert(first_dense, Flatten("Flatten" if "Flatten" not in names else "Flatten_auto"))
    shape: tuple[int, ...] = tuple(spec.input_shape)
    shapes = []
    for i, layer in enumerate(layers):
        where = f"{source}: layer {layer.name!r}"
        flat = len(shape) == 1
        if isinstance(layer, Conv | Pool) and flat:
            raise ConfigError(
                f"{where}: a {layer.type} layer cannot follow a flatten or dense layer."
            )
        if isinstance(layer, Conv):
            for f in ("filters", "kernel", "stride"):
                _positive_int(getattr(layer, f), where, f)
            if layer.padding not in PADDINGS:
                raise ConfigError(
                    f"{where}: field 'padding' must be one of {PADDINGS}, got {layer.padding!r}."
                )
            pad = (layer.kernel - 1) // 2 if layer.padding == "same" else 0
            h = (shape[1] + 2 * pad - layer.kernel) // layer.stride + 1
            w = (shape[2] + 2 * pad - layer.kernel) // layer.stride + 1
            shape = (layer.filters, h, w)
        elif isinstance(layer, Pool):
            _positive_int(layer.size, where, "size")
            if layer.kind not in POOL_KINDS:
                raise ConfigError(
                    f"{where}: field 'kind' must be one of {POOL_KINDS}, got {layer.kind!r}."
                )
            shape = (shape[0], shape[1] // layer.size, shape[2] // layer.size)
        elif isinstance(layer, Flatten):
            shape = (shape[0] * shape[1] * shape[2],) if not flat else shape
        else:
            _positive_int(layer.units, where, "units")
            if not flat:
                raise ConfigError(f"{where}: dense layers need a flatten layer before them.")
            if layer.activation == "softmax" and i != len(layers) - 1:
                raise ConfigError(f"{where}: only the output layer may use 'softmax'.")
            shape = (layer.units,)
        activation = getattr(layer, "activation", None)
        if activation is not None and activation not in ACTIVATIONS:
            raise ConfigError(
                f"{where}: field 'activation' is {activation!r}; allowed values: {', '.join(ACTIVATIONS)}."
            )
        if len(shape) == 3 and (shape[1] < 1 or shape[2] < 1):
            raise ConfigError(
                f"{where}: output would be {shape[1]}x{shape[2]}; the layers shrink the map below 1x1. "
                "Use fewer or smaller kernels/pools, padding = 'same', or a larger input."
            )
        shapes.append(shape)
    return NetSpec(tuple(layers), tuple(spec.input_shape), spec.l1, spec.l2, tuple(shapes))
