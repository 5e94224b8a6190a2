"""Keras models as mapscope CNNs, read with h5py and json alone: no TensorFlow, no Keras.

``read_keras(path)`` reads a Keras 3 ``.keras`` zip (``config.json`` + ``model.weights.h5``) or
a legacy ``.h5`` file (the ``model_config`` attribute + ``model_weights/``) into a
``KerasModel``: the layer configs in order and each layer's weight arrays. ``convert`` turns
a Sequential (or a functional chain) of ``Conv2D``, ``MaxPooling2D``, ``AveragePooling2D``,
``Flatten``, ``Dense``, ``Dropout``, ``BatchNormalization`` and ``Activation`` into a
``NetSpec`` and a PyTorch state_dict, layer names kept:

- kernels HWIO -> OIHW, dense kernels (in, out) -> (out, in);
- Keras flattens channels-last maps (h, w, c); PyTorch flattens (c, h, w). The first dense
  layer after ``Flatten`` (and any per-feature layer between them) is re-ordered so that the
  PyTorch network computes the same numbers;
- ``padding="same"`` is kept only where Keras pads symmetrically (odd kernel, stride 1);
- a final ``Activation("softmax")`` after a linear ``Dense`` is folded into that layer.

A layer or setting that cannot be converted is named in a ``ConfigError``, never dropped.
Nothing read from the file is executed: JSON is parsed, arrays are copied.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapscope.cnn.spec import (
    ACTIVATIONS,
    Activation,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    NetSpec,
    Pool,
    validate,
)
from mapscope.errors import ConfigError
from mapscope.io import expand_user
from mapscope.schema import LARGEST_INT, check_size, fields_of, shown, value_of

SUPPORTED = (
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "Flatten",
    "Dense",
    "Dropout",
    "BatchNormalization",
    "Activation",
)
IGNORED = ("InputLayer",)


@dataclass
class KerasModel:
    layers: list[dict[str, Any]]  # {"class_name", "config"} in order, InputLayer included
    weights: dict[str, list[np.ndarray]]  # layer name -> its arrays in Keras' order
    input_shape: tuple[int, ...] | None  # (H, W, C) channels-last, or as the model says
    source: str
    keras_version: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)


def read_keras(path: str | Path) -> KerasModel:
    """The model's layer configs and weights from a ``.keras`` zip or a legacy ``.h5`` file."""
    import h5py

    path = expand_user(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; give a Keras model saved as .keras or .h5.")
    if zipfile.is_zipfile(path):
        members = _zip_members(path, ("config.json", "model.weights.h5", "metadata.json"))
        if not {"config.json", "model.weights.h5"} <= set(members):
            raise ConfigError(
                f"{path}: a zip without config.json and model.weights.h5; not a Keras 3 "
                ".keras file."
            )
        config = _json(members["config.json"], path)
        metadata = _json(members["metadata.json"], path) if "metadata.json" in members else {}
        weights_bytes = members["model.weights.h5"]
        layers = _layers(config, path)
        with _damaged_hdf5(path), h5py.File(io.BytesIO(weights_bytes), "r") as h5:
            weights = _keras3_weights(h5, layers, path)
        version = str(metadata.get("keras_version", "3")) if isinstance(metadata, dict) else "3"
    else:
        try:
            h5 = h5py.File(path, "r")
        except OSError:
            raise ConfigError(f"{path}: neither a .keras zip nor an HDF5 (.h5) file.") from None
        with h5, _damaged_hdf5(path):
            if "model_config" not in h5.attrs:
                raise ConfigError(
                    f"{path}: an HDF5 file without a model config (weights only, from "
                    "save_weights?); save the whole model with model.save('model.h5')."
                )
            layers = _layers(_json(_text(h5.attrs["model_config"]), path), path)
            group = h5.get("model_weights", h5)
            weights = _legacy_weights(group, layers, path)
            version = _text(h5.attrs.get("keras_version", "2"))
    return KerasModel(layers, weights, _input_shape(layers, path), str(path), version)


def _json(data: bytes | str, path: Path) -> dict:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: the model config is not valid JSON ({exc}).") from None


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class KerasLayerConfig:
    """The schema of one layer in a Keras ``model_config`` (other keys are Keras' own)."""

    class_name: str
    config: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    inbound_nodes: Any = None


def _layers(config: Any, path: Path) -> list[dict[str, Any]]:
    """The layers of a Sequential model, or of a functional model that is a plain chain."""
    source = f"{path}: model_config"
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must be a table, got {shown(config)}.")
    kind = config.get("class_name")
    inner = config.get("config", {})
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if kind not in ("Sequential", "Functional", "Model") or not isinstance(layers, list):
        raise ConfigError(
            f"{path}: a Keras {kind!r}; only Sequential models and functional chains convert."
        )
    for i, layer in enumerate(layers):
        checked = fields_of(
            KerasLayerConfig, layer, source, f"layers[{i}]", ConfigError, ignore=None
        )
        layer["config"] = checked.get("config", {})
        layer["name"] = value_of(
            str,
            layer["config"].get("name", layer.get("name", f"layer_{i}")),
            f"layers[{i}].config.name",
            source,
            ConfigError,
        )
    if kind != "Sequential":
        for before, layer in zip(layers, layers[1:], strict=False):
            inbound = _inbound_names(layer.get("inbound_nodes", []))
            if inbound != [before["name"]]:
                raise ConfigError(
                    f"{path}: layer {layer['name']!r} takes {inbound or 'no input'}, not just "
                    f"the layer before it ({before['name']!r}); only chains of layers convert."
                )
    return layers


def _inbound_names(nodes) -> list[str]:
    """Layer names a functional layer reads, from Keras 2 (``[[name, 0, 0, {}]]``) or Keras 3
    (``{"args": [{"config": {"keras_history": [name, 0, 0]}}]}``) inbound nodes."""
    found: list[str] = []

    def walk(item):
        if isinstance(item, dict):
            history = item.get("keras_history")
            if isinstance(history, list) and history and isinstance(history[0], str):
                found.append(history[0])
                return
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            if len(item) >= 3 and isinstance(item[0], str) and isinstance(item[1], int):
                found.append(item[0])
                return
            for value in item:
                walk(value)

    walk(nodes)
    return found


def _input_shape(layers: list[dict], path: Path) -> tuple[int, ...] | None:
    for i, layer in enumerate(layers[:2]):
        config = layer["config"]
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if shape:
            where = f"layers[{i}].config.batch_shape"
            dims = value_of(list[int | None], shape, where, f"{path}: model_config", ConfigError)
            if any(d is None or d < 1 for d in dims[1:]):
                raise ConfigError(
                    f"{path}: model_config {where} is {dims}; mapscope needs a fixed image size "
                    "(H, W, C), like keras.Input((28, 28, 1))."
                )
            return tuple(dims[1:])
    return None


def snake_case(name: str) -> str:
    """Keras' automatic names: ``MaxPooling2D`` -> ``max_pooling2d``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_weights(h5, layers: list[dict], path: Path) -> dict[str, list[np.ndarray]]:
    """``layers/<key>/vars/<i>``: the key is the layer class in snake case with a counter
    (``conv2d``, ``conv2d_1``); newer files also name the layer in the group's attributes."""
    if "layers" not in h5:
        raise ConfigError(f"{path}: model.weights.h5 has no 'layers' group.")
    groups = h5["layers"]
    by_name = {}
    for key in groups:
        vars_group = groups[key].get("vars")
        if vars_group is not None and "name" in vars_group.attrs:
            by_name[_text(vars_group.attrs["name"])] = key
    counts: dict[str, int] = {}
    weights = {}
    for layer in layers:
        if layer.get("class_name") in IGNORED:
            continue
        base = snake_case(layer["class_name"])
        key = base if base not in counts else f"{base}_{counts[base]}"
        counts[base] = counts.get(base, 0) + 1
        key = by_name.get(layer["name"], key)
        group = groups.get(key, {}).get("vars") if key in groups else None
        arrays = []
        if group is not None:
            arrays = [_array(group, str(i), path) for i in range(len(group))]
        weights[layer["name"]] = arrays
    return weights


def _legacy_weights(group, layers: list[dict], path: Path) -> dict[str, list[np.ndarray]]:
    """``model_weights/<layer>``, arrays in the order of its ``weight_names`` attribute."""
    weights = {}
    for layer in layers:
        name = layer["name"]
        if layer.get("class_name") in IGNORED or name not in group:
            weights[name] = []
            continue
        names = [_text(n) for n in group[name].attrs.get("weight_names", [])]
        weights[name] = [_array(group[name], n, path) for n in names]
    return weights


def _array(group, key: str, path: Path) -> np.ndarray:
    """One weight array, read only once its shape fits the size budget (a damaged or hostile
    file can declare a terabyte-sized dataset that stores nothing)."""
    dataset = group.get(key) if hasattr(group, "get") else None
    shape = getattr(dataset, "shape", None)
    if shape is None:
        raise ConfigError(f"{path}: weight {key!r} of {group.name} is not an array.")
    check_size(16 * math.prod(shape), f"weight {group.name}/{key} of shape {shape}", str(path),
               ConfigError)  # fmt: skip
    array = np.asarray(dataset[()])
    if not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"{path}: weight {group.name}/{key} holds {array.dtype}, not numbers.")
    return array


def _zip_members(path: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """The ``wanted`` members of a zip, each read only after the archive passed: names that
    stay inside it (no ``..``, no absolute path), sizes within the budget, and every CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:
                name = info.filename
                if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
                    raise ConfigError(f"{path}: zip member {name!r} points outside the archive.")
            check_size(sum(i.file_size for i in infos), "the unpacked zip", str(path),
                       ConfigError)  # fmt: skip
            bad = archive.testzip()
            if bad is not None:
                raise ConfigError(f"{path}: zip member {bad!r} is damaged (CRC mismatch).")
            return {i.filename: archive.read(i) for i in infos if i.filename in wanted}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise ConfigError(f"{path}: a damaged zip ({exc}); save the model again.") from None


@contextlib.contextmanager
def _damaged_hdf5(path: Path):
    """h5py's errors while reading a damaged file, as one ConfigError naming it."""
    try:
        yield
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: a damaged HDF5 file or layer name ({exc}).") from None


# --- conversion -----------------------------------------------------------------------------


def _pair(value, what: str, where: str) -> int:
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ConfigError(
            f"{where}: {what} must be a whole number or a pair of them, got {value!r}."
        )
    if len(set(values)) != 1:
        raise ConfigError(f"{where}: {what} {values} is not square; mapscope's CNN needs n x n.")
    if not 1 <= values[0] <= LARGEST_INT:
        raise ConfigError(f"{where}: {what} must be at least 1, got {values[0]}.")
    return values[0]


def _number(config: dict, key: str, default: float, where: str) -> float:
    value = config.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}.")
    return float(value)


def _activation(value, where: str) -> str:
    if isinstance(value, dict):  # Keras 3 may store {"class_name": ..., "config": ...}
        inner = value.get("config")
        value = (inner.get("name") if isinstance(inner, dict) else None) or value.get("class_name")
    name = "linear" if value is None else value
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(
            f"{where}: activation {value!r} has no equivalent here; supported: "
            f"{', '.join(ACTIVATIONS)}."
        )
    return name


def _pytorch_order(height: int, width: int, channels: int) -> np.ndarray:
    """Where each flattened Keras feature goes in PyTorch's flattening: PyTorch's feature
    (c, y, x) is Keras's (y, x, c). Built only once the layer's weights matched that many
    features: a model file may declare any input size."""
    order = np.arange(height * width * channels).reshape(height, width, channels)
    return order.transpose(2, 0, 1).ravel()


def convert(model: KerasModel) -> tuple[NetSpec, dict[str, torch.Tensor]]:
    """A mapscope spec and state_dict that compute what the Keras model computes."""
    shape = model.input_shape
    if shape is None or len(shape) != 3:
        raise ConfigError(
            f"{model.source}: the model has no image input shape (H, W, C); build it with "
            "keras.Input((28, 28, 1)) or input_shape=."
        )
    channels_first = any(
        layer["config"].get("data_format") == "channels_first" for layer in model.layers
    )
    c, h, w = shape if channels_first else (shape[2], shape[0], shape[1])
    layers: list = []
    state: dict[str, torch.Tensor] = {}
    map_shape = (c, h, w)  # what flows through, channels first; None after Flatten
    features = 0  # the width of what flows through after Flatten
    # the (height, width, channels) Keras flattened, until the next layer's weights are reordered
    flattened: tuple[int, int, int] | None = None
    kept = [x for x in model.layers if x.get("class_name") not in IGNORED]
    for i, layer in enumerate(kept):
        kind, config, name = layer.get("class_name"), layer["config"], layer["name"]
        where = f"{model.source}: layer {name!r} ({kind})"
        arrays = model.weights.get(name, [])
        if kind not in SUPPORTED:
            raise ConfigError(
                f"{where} cannot be converted; supported layers: {', '.join(SUPPORTED)}."
            )
        if kind == "Conv2D":
            if map_shape is None:
                raise ConfigError(f"{where}: a convolution after Flatten.")
            kernel = _pair(config.get("kernel_size"), "kernel_size", where)
            stride = _pair(config.get("strides", 1), "strides", where)
            if _pair(config.get("dilation_rate", 1), "dilation_rate", where) != 1:
                raise ConfigError(f"{where}: dilated convolutions do not convert.")
            if config.get("groups", 1) != 1:
                raise ConfigError(f"{where}: grouped convolutions do not convert.")
            padding = config.get("padding", "valid")
            if padding == "same" and (kernel % 2 == 0 or stride != 1):
                raise ConfigError(
                    f"{where}: padding 'same' with kernel {kernel} and stride {stride} pads "
                    "unevenly in Keras; only odd kernels with stride 1 convert."
                )
            expected = (kernel, kernel, map_shape[0], config.get("filters"))
            kernel_array, bias = _kernel_and_bias(arrays, config, where, expected)
            filters = kernel_array.shape[3]
            layers.append(
                Conv(
                    name,
                    filters,
                    kernel,
                    stride,
                    padding,
                    _activation(config.get("activation"), where),
                )
            )
            state[f"layers.{name}.inner.weight"] = _tensor(kernel_array.transpose(3, 2, 0, 1))
            state[f"layers.{name}.inner.bias"] = _tensor(
                bias if bias is not None else np.zeros(filters)
            )
            pad = (kernel - 1) // 2 if padding == "same" else 0
            size = [(v + 2 * pad - kernel) // stride + 1 for v in map_shape[1:]]
            map_shape = (filters, *size)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            size = _pair(config.get("pool_size", 2), "pool_size", where)
            stride = _pair(config.get("strides") or size, "strides", where)
            if config.get("padding", "valid") != "valid":
                raise ConfigError(f"{where}: only padding 'valid' pools convert.")
            pool_kind = "max" if kind == "MaxPooling2D" else "average"
            layers.append(Pool(name, pool_kind, size, None if stride == size else stride))
            map_shape = (
                map_shape[0],
                *[(v - size) // stride + 1 for v in map_shape[1:]],
            )
        elif kind == "Flatten":
            layers.append(Flatten(name))
            if not channels_first:
                ch, hh, ww = map_shape
                flattened = (hh, ww, ch)
            features = math.prod(map_shape) if map_shape is not None else features
            map_shape = None
        elif kind == "Dense":
            if map_shape is not None:
                raise ConfigError(
                    f"{where}: a dense layer applied to maps (no Flatten before it) works per "
                    "position in Keras; only dense layers after Flatten convert."
                )
            kernel_array, bias = _kernel_and_bias(
                arrays, config, where, (features, config.get("units"))
            )
            units = kernel_array.shape[1]
            if flattened is not None:  # rows in PyTorch's flattening order
                kernel_array = kernel_array[_pytorch_order(*flattened)]
                flattened = None
            activation = _activation(config.get("activation"), where)
            following = kept[i + 1] if i + 1 < len(kept) else None
            if (
                activation == "linear"
                and following is not None
                and following.get("class_name") == "Activation"
                and following["config"].get("activation") == "softmax"
                and i + 2 == len(kept)
            ):
                activation = "softmax"  # Dense + Activation("softmax") as one output layer
            layers.append(Dense(name, units, activation))
            features = units
            state[f"layers.{name}.inner.weight"] = _tensor(kernel_array.T)
            state[f"layers.{name}.inner.bias"] = _tensor(
                bias if bias is not None else np.zeros(units)
            )
        elif kind == "Dropout":
            layers.append(Dropout(name, _number(config, "rate", 0.5, where)))
        elif kind == "BatchNormalization":
            axis = config.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            expected = (-1, 1) if map_shape is None else (1, -3) if channels_first else (-1, 3)
            if axis not in expected:
                raise ConfigError(
                    f"{where}: batch normalisation over axis {axis} does not convert."
                )
            channels = features if map_shape is None else map_shape[0]
            gamma, beta, mean, variance = _norm_weights(arrays, config, where, channels)
            if flattened is not None:  # per-feature after Flatten: Keras order -> PyTorch order
                order = _pytorch_order(*flattened)
                gamma, beta, mean, variance = (v[order] for v in (gamma, beta, mean, variance))
            layers.append(
                BatchNorm(
                    name,
                    _number(config, "epsilon", 1e-3, where),
                    _number(config, "momentum", 0.99, where),
                )
            )
            prefix = f"layers.{name}"
            state[f"{prefix}.weight"] = _tensor(gamma)
            state[f"{prefix}.bias"] = _tensor(beta)
            state[f"{prefix}.running_mean"] = _tensor(mean)
            state[f"{prefix}.running_var"] = _tensor(variance)
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)
        elif kind == "Activation":
            activation = _activation(config.get("activation"), where)
            last_dense_folded = (
                activation == "softmax"
                and i + 1 == len(kept)
                and layers
                and isinstance(layers[-1], Dense)
                and layers[-1].activation == "softmax"
            )
            if not last_dense_folded:
                layers.append(Activation(name, activation))
    spec = NetSpec(tuple(layers), (c, h, w))
    return validate(spec, model.source), state


def _kernel_and_bias(arrays, config: dict, where: str, expected: tuple):
    """A Conv2D's or Dense's kernel, and its bias (None with ``use_bias=False``), each of the
    shape the layer's config and its input say (``expected``: the kernel's)."""
    use_bias = config.get("use_bias", True)
    count = 2 if use_bias else 1
    if len(arrays) != count:
        raise ConfigError(f"{where}: expected {count} weight arrays, found {len(arrays)}.")
    kernel = arrays[0]
    if tuple(kernel.shape) != expected:
        raise ConfigError(
            f"{where}: the kernel has shape {tuple(kernel.shape)}; the layer's config and its "
            f"input say {expected}."
        )
    if use_bias and tuple(arrays[1].shape) != (expected[-1],):
        raise ConfigError(
            f"{where}: the bias has shape {tuple(arrays[1].shape)}, expected ({expected[-1]},)."
        )
    return kernel, (arrays[1] if use_bias else None)


def _norm_weights(arrays, config: dict, where: str, channels: int):
    """gamma, beta, moving mean, moving variance, one per channel; Keras leaves out gamma
    (``scale=False``) and beta (``center=False``)."""
    scale, center = config.get("scale", True), config.get("center", True)
    expected = 2 + int(bool(scale)) + int(bool(center))
    if len(arrays) != expected:
        raise ConfigError(f"{where}: expected {expected} weight arrays, found {len(arrays)}.")
    if any(tuple(a.shape) != (channels,) for a in arrays):
        raise ConfigError(
            f"{where}: the normalisation weights have shapes {[tuple(a.shape) for a in arrays]}, "
            f"expected ({channels},) each."
        )
    arrays = list(arrays)
    gamma = arrays.pop(0) if scale else np.ones_like(arrays[-1])
    beta = arrays.pop(0) if center else np.zeros_like(arrays[-1])
    return gamma, beta, arrays[0], arrays[1]


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
