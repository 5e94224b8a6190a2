"""A network together with its exact inputs: what every inspection starts from.

``Inspection`` knows nothing of run folders: build it from any ``nn.Module`` with
``Inspection.from_module(net, data="mnist", preprocess="unit")``, or from a run with
``Run.open(dir).inspection()``. mapscope's own CNN, MLP and autoencoder are cases of the same
thing: every tool after this point (activations, compare, OIPs, the atlas, match) reads layers
through forward hooks and never asks which class the network is.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mapscope.data.bundle import DataBundle
from mapscope.data.datasets import Dataset
from mapscope.data.prepare import SCALINGS, ChannelNormalizer, FunctionScaler, parse_preprocess
from mapscope.data.split import Split
from mapscope.device import INFERENCE_BATCH
from mapscope.errors import ConfigError
from mapscope.inspect.taps import evaluation_mode, layer_names, layer_outputs, module_device


@dataclass
class Inspection:
    net: nn.Module
    bundle: DataBundle
    source: str = "module"  # where the network came from: a run folder or a module's name
    config: dict[str, Any] = field(default_factory=dict)  # how it was built, for provenance

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        data: str | DataBundle | tuple = "mnist",
        preprocess: str | Callable | ChannelNormalizer = "unit",
        input_shape: tuple[int, int, int] | None = None,
        data_root: str | Path | None = None,
        source: str | None = None,
    ) -> Inspection:
        """Any ``nn.Module`` that maps images (N, C, H, W) to class scores (N, classes).

        ``data``: a dataset name (``mnist``, ``fashion-mnist``, ``folder:PATH`` ...), a
        ``DataBundle``, or arrays ``(images, labels)`` / ``(images, labels, class_names)`` with
        images uint8 (N, H, W) or (N, H, W, C); arrays are all "test" images.
        ``preprocess``: how the module expects its pixels: ``unit`` (torchvision's
        ``ToTensor``: [0, 1]), ``normalize:MEAN/STD`` (``ToTensor`` + ``Normalize``), ``standard``
        (per-pixel statistics of the training part), ``image``, ``none``, a
        ``ChannelNormalizer``, or a function of the [0, 1] (N, C, H, W) batch.
        ``input_shape``: (C, H, W) the module reads; image folders are read at that size and
        colour, other data must match it.
        """
        if not isinstance(module, nn.Module):
            raise ConfigError(f"expected a torch.nn.Module, got {type(module).__name__}.")
        scaling, scaler = _preprocess(preprocess)
        bundle = _bundle(
            data, "standard" if scaling == "standard" else "none", input_shape, data_root
        )
        if scaling != "standard":
            bundle = dataclasses.replace(bundle, scaling=scaling, scaler=scaler)
        elif bundle.scaler is None:
            raise ConfigError(
                "preprocess 'standard' fits per-pixel statistics on a training part, and these "
                "images have none; use unit, normalize:MEAN/STD or a function."
            )
        if not bundle.dataset.is_image:
            raise ConfigError(f"{bundle.dataset.name} holds tables, not images; give image data.")
        shape = bundle.dataset.image_shape
        if input_shape is not None and tuple(input_shape) != shape:
            raise ConfigError(
                f"the module reads {_shape_text(input_shape)} images but {bundle.dataset.name} "
                f"gives {_shape_text(shape)}; pass the matching --input or other data."
            )
        inspection = cls(
            module,
            bundle,
            source or type(module).__name__,
            {
                "module": type(module).__qualname__,
                "input_shape": list(shape),
                "preprocess": scaling if scaler is None else repr(scaler),
                "data": {k: v for k, v in bundle.config().items() if k != "checksums"},
            },
        )
        inspection.check_scores()
        return inspection

    def check_scores(self) -> None:
        """The module must turn two images into (2, classes) scores: found now, not mid-atlas."""
        x = torch.from_numpy(self.inputs("test", [0, min(1, len(self.bundle.split.test) - 1)]))
        names = self.bundle.dataset.class_names
        try:
            with torch.no_grad(), evaluation_mode(self.net):
                out = self.net(x.to(module_device(self.net)))
        except Exception as exc:  # the user's forward: say which input it was given
            raise ConfigError(
                f"{self.source} failed on a batch of shape {tuple(x.shape)} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "check --input and --preprocess."
            ) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), len(names)):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(
                f"{self.source} returned {got} for {len(x)} images; expected class scores of "
                f"shape ({len(x)}, {len(names)}) for the {len(names)} classes of "
                f"{self.bundle.dataset.name}."
            )

    @property
    def layer_names(self) -> list[str]:
        """The network's layers in the order a forward pass runs them (see ``taps``)."""
        return layer_names(self.net, torch.from_numpy(self.inputs("test", [0])))

    def inputs(self, part: str, indices=None) -> np.ndarray:
        """Prepared inputs in the layout the network reads (images: NCHW)."""
        layout = "nchw" if self.bundle.dataset.is_image else "flat"
        return self.bundle.inputs(part, indices, layout=layout)

    def activations(self, layer: str, part: str, indices) -> np.ndarray:
        return layer_outputs(self.net, self.inputs(part, indices), [layer])[layer]

    def titles(self, part: str, indices) -> list[str]:
        names = self.bundle.dataset.class_names
        return [
            f"{part} #{i}: {names[y]}"
            for i, y in zip(indices, self.bundle.labels(part, indices), strict=True)
        ]

    def predict_proba(self, part: str, indices=None, batch: int = INFERENCE_BATCH) -> np.ndarray:
        """Softmax of the module's scores (mapscope's networks return logits)."""
        x = self.inputs(part, indices)
        out = []
        with torch.no_grad(), evaluation_mode(self.net):
            for i in range(0, len(x), batch):
                scores = self.net(torch.from_numpy(x[i : i + batch]).to(module_device(self.net)))
                out.append(torch.softmax(scores.float(), 1).cpu().numpy())
        return np.concatenate(out)

    def predict(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        """The predictor interface of runs, so that ``evaluate`` takes a module too."""
        return self.predict_proba(part, indices).argmax(1)

    def live(self, port: int = 0, atlas: str | Path | None = None, **options):
        """Serve the live app (draw, and watch every layer answer) for this network from a
        background thread on 127.0.0.1; returns the running ``LiveServer``, which Jupyter shows
        inline. ``options`` go to ``LiveModel`` (``alike_images=5000``). Stop it with
        ``.stop()``."""
        from mapscope.live import start  # a door up to the web app (tests/test_house.py)

        return start(self, port, atlas, **options)


def _preprocess(preprocess) -> tuple[str, Any]:
    if isinstance(preprocess, ChannelNormalizer):
        return "normalize", preprocess
    if isinstance(preprocess, str):
        return parse_preprocess(preprocess)
    if callable(preprocess):
        return "custom", FunctionScaler(preprocess)
    raise ConfigError(
        f"preprocess must be one of {', '.join(SCALINGS)}, normalize:MEAN/STD or a function; "
        f"got {preprocess!r}."
    )


def _shape_text(shape) -> str:
    return "x".join(str(v) for v in shape)


def _bundle(data, scaling: str, input_shape, data_root) -> DataBundle:
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, str):
        size, colour = 64, "grey"
        if input_shape is not None:
            channels, height, width = input_shape
            if channels not in (1, 3) or height != width:
                raise ConfigError(
                    f"image folders are read as square grey (1) or rgb (3) images; --input "
                    f"{_shape_text(input_shape)} is neither."
                )
            size, colour = height, "rgb" if channels == 3 else "grey"
        return DataBundle.create(data, scaling, data_root=data_root, image_size=size, colour=colour)
    if isinstance(data, tuple | list) and len(data) in (2, 3):
        return _array_bundle(*data)
    raise ConfigError(
        "data must be a dataset name (mnist, fashion-mnist, folder:PATH), a DataBundle or "
        f"(images, labels[, class_names]); got {type(data).__name__}."
    )


def _array_bundle(images, labels, class_names=None) -> DataBundle:
    """Arrays a user holds: every image is a test image; no training part to fit a scaler on."""
    x, y = np.asarray(images), np.asarray(labels)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)) or len(x) != len(y):
        raise ConfigError(
            f"images must be (N, H, W) or (N, H, W, C) with C 1 or 3 and one label each; got "
            f"images {x.shape} and labels {y.shape}."
        )
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ConfigError("labels must be class numbers 0, 1, 2, ...")
    names = tuple(class_names) if class_names is not None else tuple(map(str, range(y.max() + 1)))
    if y.max() >= len(names):
        raise ConfigError(f"label {y.max()} has no name among {len(names)} class names.")
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes() + y.tobytes()).hexdigest()
    dataset = Dataset("arrays", x, y.astype(np.int64), names, None, Path("."), {"arrays": digest})
    split = Split("arrays", "canonical", None, np.zeros(0, dtype=np.int64), np.arange(len(y)))
    return DataBundle(dataset, split, "none", None)
