"""What the live app computes, as a Python object that works the same in a notebook.

``LiveModel(inspection)`` answers one input image at a time: every layer's output and the class
probabilities in one forward pass (``answer``), an attribution of the predicted class
(``explain``, through the same Captum methods as ``mapscope attribute``), the training images
nearest in the last hidden layer (``alike``), a unit's OIP (``unit_oip``), and for an
autoencoder the decoded image of any code (``decode``). The web app only moves these results
over the wire; it computes nothing of its own.

Each layer gets one fixed colour scale, measured once on test images, so that colours mean the
same from one stroke to the next; a drawing beyond what test images reach saturates.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mapscope.data.drawing import centre_like_mnist
from mapscope.errors import ConfigError
from mapscope.inspect.attribution import METHODS, attribute
from mapscope.inspect.inspection import Inspection
from mapscope.inspect.oip import OIPSettings, run_oip
from mapscope.inspect.oip.objectives import oip_target
from mapscope.inspect.oip.settings import settings_for
from mapscope.inspect.taps import (
    at_call,
    evaluation_mode,
    find_layer,
    layer_outputs,
    module_device,
)

# the methods a drawing is explained by while it pauses (occlusion is too slow to feel live)
LIVE_METHODS = ("saliency", "ig", "gradcam")
# layers that only reshape what the layer before them gave: shown once, not twice
RESHAPING = (nn.Flatten, nn.Unflatten)


@dataclass(frozen=True)
class LayerView:
    """A layer as the page draws it: maps (C, H, W) in a grid or units (N,) as bars, on one
    colour scale [lo, hi] (symmetric about 0 when the layer's outputs take both signs)."""

    name: str
    shape: tuple[int, ...]
    lo: float
    hi: float

    @property
    def kind(self) -> str:
        return "maps" if len(self.shape) == 3 else "units"

    @property
    def units(self) -> int:
        return self.shape[0]

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "kind": self.kind,
                "lo": self.lo, "hi": self.hi}  # fmt: skip


@dataclass
class LiveAnswer:
    """One input, answered: what the network saw, every layer and the probabilities."""

    raw: np.ndarray  # (H, W) or (H, W, C) uint8: the image after centring, before scaling
    seen: np.ndarray  # (H, W) float: the prepared input, channels averaged
    probabilities: np.ndarray | None  # (classes,) for a classifier, None for an autoencoder
    layers: dict[str, np.ndarray]  # name -> (C, H, W) or (N,) float32
    code: np.ndarray | None = None  # autoencoder: the latent code
    reconstruction: np.ndarray | None = None  # autoencoder: (H, W) in [0, 1]
    seconds: float = 0.0

    @property
    def predicted(self) -> int | None:
        return None if self.probabilities is None else int(self.probabilities.argmax())


@dataclass
class Explanation:
    method: str
    target: int  # the class whose score is explained (the predicted one)
    map: np.ndarray  # (H, W) at input resolution
    signed: bool


@dataclass
class Neighbours:
    """The training images nearest to an input in ``layer``'s space."""

    layer: str
    indices: np.ndarray  # positions in the training part
    labels: np.ndarray
    distances: np.ndarray
    images: np.ndarray  # (k, H, W[, C]) uint8


@dataclass
class LatentAxes:
    """An autoencoder's code space as sliders: each component's spread over the training
    codes, and the principal axes of those codes (``components`` rows are unit vectors)."""

    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray  # (k, latent)
    component_std: np.ndarray  # (k,) the spread of the codes along each axis
    explained: np.ndarray  # (k,) fraction of the codes' variance along each axis


@dataclass
class LiveModel:
    """The network of ``inspection`` made ready to answer single drawings quickly.

    ``alike_images``: how many training images the nearest-neighbour index holds (all by
    default); ``scale_images``: test images the colour scales are measured on;
    ``attribution_steps``: integrated gradients' steps; ``oip``: how unit OIPs are searched.
    """

    inspection: Inspection
    alike_images: int | None = None
    scale_images: int = 256
    attribution_steps: int = 32
    oip: OIPSettings = field(default_factory=lambda: OIPSettings(steps=200, device="cpu"))

    def __post_init__(self):
        net, bundle = self.inspection.net, self.inspection.bundle
        if not bundle.dataset.is_image:
            raise ConfigError(
                f"the live app draws images, and {bundle.dataset.name} holds tables; give a "
                "network trained on images."
            )
        self.net = net
        self.device = module_device(net)  # a network on a GPU answers there
        self.bundle = bundle
        self.input_shape = tuple(bundle.dataset.image_shape)
        self.class_names = tuple(bundle.dataset.class_names)
        self.autoencoder = callable(getattr(net, "encode", None)) and callable(
            getattr(net, "decode", None)
        )
        self.lock = threading.RLock()  # one forward pass at a time: hooks live on one module
        self._modules: dict[str, nn.Module] = {}  # layer name -> module, looked up once
        self._submodules = list(net.modules())
        names = [n for n in self.inspection.layer_names if not _reshapes(net, n)]
        n = min(self.scale_images, len(bundle.split.test))
        self._test_inputs = self.inspection.inputs("test", np.arange(n))  # scales, OIP starts
        with self.lock:
            outputs, _ = self._forward(self._test_inputs, names)
        self.layers = [_view(name, outputs[name]) for name in names]
        self._by_name = {view.name: view for view in self.layers}
        maps = [v.name for v in self.layers if v.kind == "maps"]
        self.gradcam_layer = None if self.autoencoder or not maps else maps[-1]
        self.alike_layer = self._alike_layer()
        self.blank = bundle.prepare(np.zeros((1, *bundle.dataset.x.shape[1:]), np.uint8), "nchw")
        self._index = None
        self._index_lock = threading.Lock()
        self.closed = threading.Event()  # set by close(): background work stops early
        self._features_kept = None
        self._features_lock = threading.Lock()
        self._oips: dict[tuple[str, int], np.ndarray] = {}
        self._oip_net: nn.Module | None = None  # made on the first OIP request
        self._oip_lock = threading.Lock()
        self._axes = None

    # --- one input ---------------------------------------------------------------------------

    def prepare(self, pixels: np.ndarray, centre: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(raw uint8 image, prepared (1, C, H, W) input) of an image in dataset convention."""
        raw = self.check_pixels(pixels)
        if centre and raw.ndim == 2:
            raw = centre_like_mnist(raw)
        return raw, self.bundle.prepare(raw[None], "nchw")

    def check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """The image as the dataset stores it: (H, W) grey or (H, W, 3) colour uint8; a grey
        drawing is repeated into each channel of a colour network."""
        pixels = np.asarray(pixels)
        channels, height, width = self.input_shape
        if pixels.shape[:2] != (height, width) or pixels.dtype != np.uint8:
            raise ConfigError(
                f"an input image must be {height}x{width} uint8 pixels (the model's input "
                f"size); got {'x'.join(map(str, pixels.shape))} {pixels.dtype}."
            )
        if channels == 3 and pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        if channels == 1 and pixels.ndim == 3:
            pixels = pixels.mean(axis=2).round().astype(np.uint8)
        return pixels

    def answer(self, pixels: np.ndarray, centre: bool = False) -> LiveAnswer:
        """Every layer's output and the class probabilities for one image, in one pass."""
        start = time.perf_counter()
        raw, x = self.prepare(pixels, centre)
        with self.lock:
            outputs, final = self._forward(x, [v.name for v in self.layers])
            code = None
            if self.autoencoder:
                with torch.no_grad(), evaluation_mode(self.net):
                    code = self.net.encode(torch.from_numpy(x).to(self.device))
                    code = code.float().cpu().numpy()[0]
        layers = {name: out[0] for name, out in outputs.items()}
        if self.autoencoder:
            probabilities, reconstruction = None, np.clip(final[0].mean(0), 0, 1)
        else:
            scores = torch.from_numpy(final).float()
            probabilities = torch.softmax(scores, 1).numpy()[0]
            reconstruction = None
        return LiveAnswer(
            raw,
            x[0].mean(0),
            probabilities,
            layers,
            code,
            reconstruction,
            time.perf_counter() - start,
        )

    def explain(self, pixels: np.ndarray, method: str, centre: bool = False) -> Explanation:
        """An attribution of the predicted class's score for one image."""
        if self.autoencoder:
            raise ConfigError("an autoencoder has no class scores to explain.")
        if method not in LIVE_METHODS:
            raise ConfigError(f"method {method!r} unknown here; choose {', '.join(LIVE_METHODS)}.")
        if method == "gradcam" and self.gradcam_layer is None:
            raise ConfigError("Grad-CAM needs a layer of maps; this network has none.")
        _, x = self.prepare(pixels, centre)
        with self.lock:
            _, final = self._forward(x, [])
            target = int(final[0].argmax())
            result = attribute(
                self.net,
                x,
                np.array([target]),
                method,
                self.blank,
                self.input_shape,
                [v.name for v in self.layers],
                self.gradcam_layer,
                steps=self.attribution_steps,
            )
        return Explanation(method, target, result.maps[0], METHODS[method].signed)

    def alike(self, pixels: np.ndarray, k: int = 8, centre: bool = False) -> Neighbours:
        """The ``k`` training images nearest to this one in the last hidden layer (the code of
        an autoencoder), by Euclidean distance."""
        if not 1 <= k <= 64:
            raise ConfigError(f"k must be 1..64 neighbours, got {k}.")
        _, x = self.prepare(pixels, centre)
        index, positions = self.alike_index()
        with self.lock:
            feature = self._features(x)
        distances, found = index.kneighbors(feature, n_neighbors=min(k, len(positions)))
        rows = positions[found[0]]
        return Neighbours(
            self.alike_layer,
            rows,
            self.bundle.labels("train", rows),
            distances[0],
            self.bundle.raw("train", rows),
        )

    # --- autoencoder codes -------------------------------------------------------------------

    def latent_axes(self) -> LatentAxes:
        """The spread of the training codes and their principal axes (fitted once)."""
        from sklearn.decomposition import PCA

        self._need_autoencoder()
        if self._axes is None:
            codes = self._training_features()[1]
            k = min(8, codes.shape[1], len(codes))
            pca = PCA(n_components=k, random_state=0).fit(codes)
            self._axes = LatentAxes(
                codes.mean(0),
                codes.std(0),
                pca.components_.astype(np.float32),
                np.sqrt(pca.explained_variance_).astype(np.float32),
                pca.explained_variance_ratio_.astype(np.float32),
            )
        return self._axes

    def decode(self, code: np.ndarray) -> np.ndarray:
        """(H, W) image in [0, 1] the decoder draws from ``code`` (latent,)."""
        self._need_autoencoder()
        code = np.asarray(code, dtype=np.float32)
        latent = self.latent_axes().mean.shape[0]
        if code.shape != (latent,) or not np.isfinite(code).all():
            raise ConfigError(f"a code must be {latent} finite numbers; got shape {code.shape}.")
        with self.lock, torch.no_grad(), evaluation_mode(self.net):
            image = self.net.decode(torch.from_numpy(code[None]).to(self.device))
            image = image.float().cpu().numpy()[0]
        return np.clip(image.mean(0), 0, 1)

    def code_from_axes(self, coefficients: np.ndarray) -> np.ndarray:
        """The code at ``coefficients`` (in standard deviations) along the principal axes."""
        axes = self.latent_axes()
        coefficients = np.asarray(coefficients, dtype=np.float32)
        if coefficients.shape != (len(axes.components),) or not np.isfinite(coefficients).all():
            raise ConfigError(
                f"principal-axis positions must be {len(axes.components)} finite numbers; got "
                f"shape {coefficients.shape}."
            )
        return axes.mean + (coefficients * axes.component_std) @ axes.components

    # --- units -------------------------------------------------------------------------------

    def view(self, layer: str) -> LayerView:
        if layer not in self._by_name:
            raise ConfigError(
                f"layer {layer!r} unknown; the layers are {', '.join(self._by_name)}."
            )
        return self._by_name[layer]

    def check_unit(self, layer: str, unit: int) -> LayerView:
        view = self.view(layer)
        if not 0 <= unit < view.units:
            raise ConfigError(f"{layer} has units 0..{view.units - 1}; got {unit}.")
        return view

    def unit_oip(self, layer: str, unit: int) -> np.ndarray:
        """The unit's OIP (the input that drives it hardest, grown from smooth noise or, where
        no noise wakes the unit, from the test image that drives it most), searched on first
        request and kept; (H, W) or (H, W, 3) in the network's input scale."""
        self.check_unit(layer, unit)
        key = (layer, unit)
        with self._oip_lock:
            if self._oip_net is None:  # copied between forward passes: no hook of theirs on it
                with self.lock:
                    self._oip_net = copy.deepcopy(self.net)
            if key not in self._oips:  # searches never touch the net that answers drawings
                result = run_oip(
                    self._oip_net,
                    oip_target(self._oip_net, layer),
                    [unit],
                    settings=settings_for(self._oip_net, self.oip),  # as the atlas does
                    input_shape=self.input_shape,
                    # a unit no noise wakes grows from the test image that drives it most
                    images=self._test_inputs,
                )
                image = result.images[0]
                self._oips[key] = image if image.ndim == 2 else image.transpose(1, 2, 0)
        return self._oips[key]

    # --- inside ------------------------------------------------------------------------------

    def _forward(self, x: np.ndarray, names: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """({layer: output}, the network's own output) of one forward pass; the hooks are
        removed again, so the caller's module is left as it was."""
        captured: dict[str, torch.Tensor] = {}

        def keep(name):
            return lambda output: captured.__setitem__(name, output)

        handles = [
            self._module(name).register_forward_hook(at_call(name, keep(name))) for name in names
        ]
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        try:
            with torch.no_grad():
                if any(m.training for m in self._submodules):  # the caller's flags come back
                    with evaluation_mode(self.net):
                        final = self.net(x)
                else:
                    final = self.net(x)
        finally:
            for handle in handles:
                handle.remove()
        outputs = {
            name: captured[name].float().reshape(len(x), *_shape(captured[name])).cpu().numpy()
            for name in names
        }
        return outputs, final.float().cpu().numpy()

    def _module(self, name: str) -> nn.Module:
        if name not in self._modules:
            self._modules[name] = find_layer(self.net, name)
        return self._modules[name]

    def _alike_layer(self) -> str:
        """The last hidden layer: the code of an autoencoder, else the last layer before the
        output (flattened when it is a map)."""
        names = [v.name for v in self.layers]
        if self.autoencoder and "Latent" in names:
            return "Latent"
        return names[-2] if len(names) >= 2 else names[-1]

    def _features(self, x: np.ndarray) -> np.ndarray:
        out = layer_outputs(self.net, x, [self.alike_layer])[self.alike_layer]
        return out.reshape(len(x), -1)

    def _training_features(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, last-hidden-layer features) of the training images searched; computed
        once, for the neighbour index and an autoencoder's principal axes alike."""
        with self._features_lock:
            if self._features_kept is None:
                self._features_kept = self._compute_training_features()
        return self._features_kept

    def _compute_training_features(self) -> tuple[np.ndarray, np.ndarray]:
        positions = self.bundle.first("train", self.alike_images)
        if len(positions) == 0:
            raise ConfigError(
                "these images have no training part to search for alike images; give a run "
                "or a dataset with one."
            )
        chunks = []
        for start in range(0, len(positions), 1000):  # the lock is let go between chunks, so
            if self.closed.is_set():  # drawings are answered while this runs
                raise ConfigError("the live model was closed while its index was being built.")
            part = positions[start : start + 1000]
            inputs = self.bundle.inputs("train", part, "nchw")
            with self.lock:
                chunks.append(self._features(inputs))
        return positions, np.concatenate(chunks)

    def alike_index(self):
        """The nearest-neighbour index over the training images (built once; the app builds
        it in the background at start)."""
        from sklearn.neighbors import NearestNeighbors

        with self._index_lock:
            if self._index is None:
                positions, features = self._training_features()
                index = NearestNeighbors(n_neighbors=8).fit(features)
                self._index = (index, positions)
        return self._index

    def build_index_in_background(self) -> threading.Thread:
        """Start building the nearest-neighbour index; ``close()`` stops it between chunks."""

        def build():
            with contextlib.suppress(ConfigError):
                self.alike_index()

        self._builder = threading.Thread(target=build, name="alike index", daemon=True)
        self._builder.start()
        return self._builder

    def close(self) -> None:
        """Stop background work (a process must not exit while torch computes in a thread)."""
        self.closed.set()
        builder = getattr(self, "_builder", None)
        if builder is not None:
            builder.join(timeout=30)

    def _need_autoencoder(self) -> None:
        if not self.autoencoder:
            raise ConfigError("codes and decoding need an autoencoder run (mapscope ae train).")


def _shape(output: torch.Tensor) -> tuple[int, ...]:
    """A layer's output per image as the page draws it: (C, H, W) maps, else flat units."""
    shape = tuple(output.shape[1:])
    return shape if len(shape) == 3 else (int(np.prod(shape)),)


def _reshapes(net: nn.Module, name: str) -> bool:
    try:
        return isinstance(find_layer(net, name), RESHAPING)
    except ConfigError:
        return False


def _view(name: str, outputs: np.ndarray) -> LayerView:
    """The layer's colour scale: 0.5th..99.5th percentile of its outputs on test images,
    symmetric about zero when they take both signs."""
    low, high = (float(v) for v in np.percentile(outputs, [0.5, 99.5]))
    if low < 0 < high:
        bound = max(-low, high)
        low, high = -bound, bound
    else:
        low = min(low, 0.0)
    if high - low < 1e-6:
        high = low + 1.0
    return LayerView(name, tuple(outputs.shape[1:]), round(low, 6), round(high, 6))
