"""`mapscope attribute` as Python functions: ``attribute_images`` explains the predictions of
chosen images by several methods and returns an ``ImageAttributions``; ``write_attributions``
draws it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mapscope.errors import ConfigError
from mapscope.inspect.attribution import (
    METHODS,
    attribute,
    check_methods,
    last_map_layer,
    signed_methods,
)
from mapscope.inspect.inspection import Inspection
from mapscope.report.attribution import plot_attributions
from mapscope.report.figures import save_figure


@dataclass
class ImageAttributions:
    split: str
    indices: list[int]
    raw: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray  # (N, classes)
    targets: np.ndarray  # class explained per image
    maps: dict[str, np.ndarray]  # method -> (N, H, W)
    class_names: tuple[str, ...]
    gradcam_layer: str | None

    def titles(self) -> list[str]:
        names = self.class_names
        return [
            f"#{i}: {names[y]} -> {names[t]} ({p[t]:.2f})"
            for i, y, t, p in zip(
                self.indices, self.labels, self.targets, self.probabilities, strict=True
            )
        ]

    def summary(self) -> str:
        lines = [f"{self.split} {t}" for t in self.titles()]
        lines.append(f"methods: {', '.join(METHODS[m].title for m in self.maps)}")
        if self.gradcam_layer:
            lines.append(f"Grad-CAM on layer {self.gradcam_layer}")
        return "\n".join(lines)


def attribute_images(
    inspection: Inspection,
    indices: list[int],
    methods: list[str] | None = None,
    split: str = "test",
    target: int | None = None,
    gradcam_layer: str | None = None,
) -> ImageAttributions:
    """Attributions of ``methods`` (default all) for the class each image is predicted as, or
    for ``target`` when given."""
    methods = check_methods(list(methods or METHODS))
    if not indices:
        raise ConfigError("--index is needed: which images to explain, e.g. --index 1302.")
    dataset = inspection.bundle.dataset
    if not dataset.is_image:
        raise ConfigError("attributions need an image dataset; this run was trained on tables.")
    n_classes = len(dataset.class_names)
    if target is not None and not 0 <= target < n_classes:
        raise ConfigError(f"--target must be a class 0..{n_classes - 1}, got {target}.")
    inputs = inspection.inputs(split, indices)
    net = inspection.net
    with torch.no_grad():
        probabilities = torch.softmax(net(torch.from_numpy(inputs)).float(), 1).numpy()
    targets = np.full(len(indices), target) if target is not None else probabilities.argmax(1)
    if "gradcam" in methods:
        gradcam_layer = gradcam_layer or last_map_layer(
            net, inspection.layer_names, torch.from_numpy(inputs[:1])
        )
    raw = inspection.bundle.raw(split, indices)
    blank = inspection.bundle.prepare(np.zeros_like(raw[:1]), "nchw")
    maps = {
        m: attribute(
            net,
            inputs,
            targets,
            m,
            blank,
            dataset.image_shape,
            inspection.layer_names,
            gradcam_layer,
        ).maps
        for m in methods
    }
    return ImageAttributions(
        split,
        list(indices),
        raw,
        inspection.bundle.labels(split, indices),
        probabilities,
        targets,
        maps,
        tuple(dataset.class_names),
        gradcam_layer if "gradcam" in methods else None,
    )


def write_attributions(result: ImageAttributions, out: str | Path) -> list[Path]:
    names = {name: method.title for name, method in METHODS.items()}
    figure = plot_attributions(result.raw, result.maps, result.titles(), names, signed_methods())
    return [save_figure(figure, out)]
