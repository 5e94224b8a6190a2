"""Which input pixels a class score depends on: saliency, integrated gradients, Grad-CAM and
occlusion, computed by Captum on any ``nn.Module``: one method per module, one verb,
``attribute``, and one registry, ``METHODS`` (name -> ``AttributionMethod``).

Every method answers for the score of ``target`` (the logit of a class) and returns one map per
image at input resolution, so the pictures of all methods line up. The baseline that integrated
gradients and occlusion compare against is a blank image in the network's own input scale,
not the number 0 (which after standardisation is a grey image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mapscope.errors import ConfigError
from mapscope.inspect.attribution.gradcam import GRADCAM, last_map_layer
from mapscope.inspect.attribution.integrated_gradients import INTEGRATED_GRADIENTS
from mapscope.inspect.attribution.method import AttributionMethod, Problem
from mapscope.inspect.attribution.occlusion import OCCLUSION
from mapscope.inspect.attribution.saliency import SALIENCY
from mapscope.inspect.taps import evaluation_mode, module_device

METHODS: dict[str, AttributionMethod] = {
    m.name: m for m in (SALIENCY, INTEGRATED_GRADIENTS, GRADCAM, OCCLUSION)
}

__all__ = [
    "METHODS",
    "AttributionMethod",
    "Attributions",
    "attribute",
    "check_methods",
    "last_map_layer",
    "signed_methods",
]


@dataclass
class Attributions:
    method: str
    maps: np.ndarray  # (N, H, W) at input resolution
    targets: np.ndarray  # (N,) class whose score is explained
    layer: str | None = None  # Grad-CAM's layer


def check_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"attribution method(s) {unknown or methods} unknown; choose from {', '.join(METHODS)}."
        )
    return methods


def signed_methods() -> set[str]:
    """The methods whose maps have a sign worth showing (pictures draw them red and blue)."""
    return {name for name, m in METHODS.items() if m.signed}


def attribute(
    net: nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    method: str,
    baseline: np.ndarray,
    image_shape: tuple[int, int, int],
    layers: list[str] | None = None,
    gradcam_layer: str | None = None,
    steps: int = 50,
) -> Attributions:
    """Attributions of ``method`` for prepared ``inputs`` (NCHW, or flat for an MLP).

    ``baseline`` is one prepared blank input; ``image_shape`` (C, H, W) is how a flat input is
    drawn; ``layers`` are the names Grad-CAM may choose its default layer from.
    """
    check_methods([method])
    device = module_device(net)
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(device)
    base = torch.from_numpy(np.ascontiguousarray(baseline, dtype=np.float32)).to(device)
    problem = Problem(
        net=net,
        inputs=x,
        targets=torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device),
        baseline=base.expand_as(x).contiguous(),
        image_shape=image_shape,
        layers=layers or [],
        layer=gradcam_layer if method == "gradcam" else None,
        steps=steps,
    )
    with evaluation_mode(net):
        result = METHODS[method].compute(problem)
    result = result.detach().float().reshape(len(x), -1, *image_shape[1:]).sum(1)
    return Attributions(method, result.cpu().numpy(), np.asarray(targets), problem.layer)
