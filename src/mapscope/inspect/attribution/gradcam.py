"""Grad-CAM: a map layer's channels weighted by their mean gradient, kept where positive and
scaled up to the input (Selvaraju et al. 2017). Coarse, at the map's resolution: where in the
image the evidence for the class sits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mapscope.errors import ConfigError
from mapscope.inspect.attribution.method import AttributionMethod, Problem
from mapscope.inspect.taps import evaluation_mode, find_layer, forward_to


def map_layers(net: nn.Module, layers: list[str], x: torch.Tensor) -> list[str]:
    """The layers whose output is a map (N, C, H, W), in order."""
    with torch.no_grad(), evaluation_mode(net):
        outputs = forward_to(net, x[:1], layers, stop_early=False)
    return [name for name in layers if outputs[name].dim() == 4]


def last_map_layer(net: nn.Module, layers: list[str], x: torch.Tensor) -> str:
    """The deepest layer whose output is a map: Grad-CAM's default layer."""
    maps = map_layers(net, layers, x)
    if not maps:
        raise ConfigError(
            "Grad-CAM needs a layer whose output is a map (a conv or pool layer); this network "
            "has none (an MLP): use saliency, ig or occlusion."
        )
    return maps[-1]


def _gradcam(problem: Problem):
    from captum.attr import LayerGradCam

    net, x = problem.net, problem.inputs
    if problem.layer is None:
        problem.layer = last_map_layer(net, problem.layers, x)
    elif problem.layer not in (maps := map_layers(net, problem.layers, x)):
        raise ConfigError(
            f"--layer {problem.layer}: Grad-CAM weighs the channels of a map, and this layer's "
            f"output is not one; choose a conv or pool layer ({', '.join(maps) or 'none here'})."
        )
    maps = LayerGradCam(net, find_layer(net, problem.layer)).attribute(
        x, target=problem.targets, relu_attributions=True
    )
    size = problem.image_shape[1:]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


GRADCAM = AttributionMethod("gradcam", "Grad-CAM", signed=False, compute=_gradcam)
