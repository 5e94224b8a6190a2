"""Which input pixels a class score depends on: saliency, integrated gradients, Grad-CAM and
occlusion, computed by Captum (one verb, ``attribute``) on any ``nn.Module``.

Every method answers for the score of ``target`` (the logit of a class) and returns one map per
image at input resolution, so the pictures of all methods line up. The baseline that integrated
gradients and occlusion compare against is a blank image in the network's own input scale,
not the number 0 (which after standardisation is a grey image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mapscope.errors import ConfigError
from mapscope.inspect.taps import evaluation_mode, find_layer, forward_to, module_device

METHODS = {
    "saliency": "saliency (|gradient|)",
    "ig": "integrated gradients",
    "gradcam": "Grad-CAM",
    "occlusion": "occlusion",
}


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


def last_map_layer(net: nn.Module, layers: list[str], x: torch.Tensor) -> str:
    """The deepest layer whose output is a map (N, C, H, W): Grad-CAM's default layer."""
    with torch.no_grad(), evaluation_mode(net):
        outputs = forward_to(net, x[:1], layers, stop_early=False)
    maps = [name for name in layers if outputs[name].dim() == 4]
    if not maps:
        raise ConfigError(
            "Grad-CAM needs a layer whose output is a map (a conv or pool layer); this network "
            "has none (an MLP): use saliency, ig or occlusion."
        )
    return maps[-1]


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
    from captum.attr import IntegratedGradients, LayerGradCam, Occlusion, Saliency

    check_methods([method])
    device = module_device(net)
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(device)
    base = torch.from_numpy(np.ascontiguousarray(baseline, dtype=np.float32)).to(device)
    base = base.expand_as(x).contiguous()
    target = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device)
    used_layer = None
    with evaluation_mode(net):
        if method == "saliency":
            result = Saliency(net).attribute(x.requires_grad_(True), target=target, abs=True)
        elif method == "ig":
            result = IntegratedGradients(net).attribute(
                x, baselines=base, target=target, n_steps=steps, internal_batch_size=len(x) * steps
            )
        elif method == "occlusion":
            pixels = x.view(len(x), *image_shape)
            window = max(2, image_shape[1] // 7)

            def scores(images):
                return net(images.view(len(images), *x.shape[1:]))

            result = Occlusion(scores).attribute(
                pixels,
                sliding_window_shapes=(image_shape[0], window, window),
                strides=(image_shape[0], max(1, window // 2), max(1, window // 2)),
                baselines=base.view(len(x), *image_shape),
                target=target,
                perturbations_per_eval=64,
            )
        else:
            used_layer = gradcam_layer or last_map_layer(net, layers or [], x)
            maps = LayerGradCam(net, find_layer(net, used_layer)).attribute(
                x, target=target, relu_attributions=True
            )
            result = F.interpolate(maps, size=image_shape[1:], mode="bilinear", align_corners=False)
    result = result.detach().float().reshape(len(x), -1, *image_shape[1:]).sum(1)
    return Attributions(method, result.cpu().numpy(), np.asarray(targets), used_layer)
