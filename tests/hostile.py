"""Valid files of every format mapscope reads, made from scratch, and the mutations a careless or
hostile user applies to them (for ``test_hostile_files.py``)."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from hypothesis import strategies as st

# --- a tiny Keras model, written as Keras 3 and Keras 2 write it ------------------------------

KERAS_LAYERS = [
    {"class_name": "InputLayer", "config": {"name": "input", "batch_shape": [None, 28, 28, 1]}},
    {
        "class_name": "Conv2D",
        "config": {
            "name": "conv",
            "filters": 2,
            "kernel_size": [3, 3],
            "strides": [1, 1],
            "padding": "valid",
            "activation": "relu",
            "use_bias": True,
        },
    },
    {"class_name": "Flatten", "config": {"name": "flat"}},
    {
        "class_name": "Dense",
        "config": {"name": "out", "units": 10, "activation": "softmax", "use_bias": True},
    },
]


def keras_config(layers: list | None = None) -> dict[str, Any]:
    return {
        "class_name": "Sequential",
        "config": {"name": "tiny", "layers": layers or KERAS_LAYERS},
    }


def keras_weights(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "conv": [rng.normal(0, 0.3, (3, 3, 1, 2)).astype("f4"), np.zeros(2, "f4")],
        "out": [rng.normal(0, 0.05, (26 * 26 * 2, 10)).astype("f4"), np.zeros(10, "f4")],
    }


def write_h5(path: Path, config: Any = None, weights: dict | None = None) -> Path:
    """A legacy Keras ``.h5``: ``model_config`` and ``model_weights/<layer>/<name>``."""
    weights = keras_weights() if weights is None else weights
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(keras_config() if config is None else config)
        h5.attrs["keras_version"] = "2.15.0"
        group = h5.create_group("model_weights")
        for layer, arrays in weights.items():
            g = group.create_group(layer)
            names = [
                f"{layer}/{('kernel', 'bias')[i] if i < 2 else f'extra{i}'}:0"
                for i in range(len(arrays))
            ]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for name, array in zip(names, arrays, strict=True):
                if isinstance(array, tuple):  # a declared shape with nothing stored
                    g.create_dataset(name, shape=array, dtype="f4", chunks=(1,) * len(array))
                else:
                    g.create_dataset(name, data=array)
    return path


def write_keras(path: Path, config: Any = None, members: dict[str, bytes] | None = None) -> Path:
    """A Keras 3 ``.keras`` zip: config.json, metadata.json and model.weights.h5."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for key, arrays in (("conv2d", keras_weights()["conv"]), ("dense", keras_weights()["out"])):
            group = h5.create_group(f"layers/{key}/vars")
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=array)
    files = {
        "config.json": json.dumps(keras_config() if config is None else config).encode(),
        "metadata.json": b'{"keras_version": "3.4.1"}',
        "model.weights.h5": buffer.getvalue(),
        **(members or {}),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


# --- mutations of a parsed file ---------------------------------------------------------------

ODD_VALUES = st.one_of(
    st.sampled_from(
        [None, True, False, 0, -1, 1, 2**31, 10**20, -(10**20), 1e308, -1e308, 0.5, "", "x", "fp8"]
    ),
    st.sampled_from([[], {}, [1], {"a": 1}, [None], "../../etc/passwd", "\x00", 3.5]),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.text(max_size=8),
)


def paths_in(value: Any, where: tuple = ()) -> list[tuple]:
    """Every place in a parsed file: the keys and indices leading to each value."""
    found = [where]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths_in(v, (*where, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths_in(v, (*where, i))
    return found


def _set(value: Any, path: tuple, new: Any, drop: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if drop and not rest:
        del copy[head]
        return copy
    copy[head] = _set(value[head], rest, new, drop)
    return copy


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated(draw, value: Any, hot: tuple[str, ...] = ()) -> tuple[Any, str]:
    """(``value`` changed in one place, what was done): a value swapped for one of another type
    or a huge, negative or odd one, a key dropped, a table turned into a list, an unknown key
    added. ``hot`` are key names whose places are drawn more often (where bugs were seen)."""
    places = paths_in(value)
    preferred = [p for p in places if p and p[-1] in hot]
    path = draw(st.sampled_from(preferred if preferred and draw(st.booleans()) else places))
    target = _get(value, path)
    choices = ["swap"]
    if path and isinstance(_get(value, path[:-1]), dict):
        choices.append("drop")
    if isinstance(target, dict):
        choices += ["as list", "add key"]
    if isinstance(target, list):
        choices += ["as table", "empty"]
    how = draw(st.sampled_from(choices))
    where = "/".join(map(str, path)) or "the whole file"
    if how == "drop":
        return _set(value, path, None, drop=True), f"dropped {where}"
    if how == "as list":
        return _set(value, path, list(target.values())), f"{where} as a list"
    if how == "as table":
        return _set(value, path, {str(i): v for i, v in enumerate(target)}), f"{where} as a table"
    if how == "empty":
        return _set(value, path, []), f"{where} emptied"
    if how == "add key":
        return _set(value, path, {**target, "surprise": 1}), f"unknown key in {where}"
    new = draw(ODD_VALUES)
    if isinstance(new, float) and math.isinf(new):
        new = 1e308
    return _set(value, path, new), f"{where} = {new!r}"
