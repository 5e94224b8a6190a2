"""A network as a chain of plain layers, so the atlas's image viewer can run it in the browser.

CNN Explainer shows every layer's maps for any input by running the network in the page. The
atlas does the same for every image it shows: the viewer reads the image's pixels (embedded
once for the whole site) and this chain (the weights, layer by layer) and computes the maps,
the probabilities and a saliency map in plain JavaScript.

Only a network that is one chain of known leaf modules can be written this way (a Conv2d,
Linear, ReLU, max-pool ... each reading the output of the one before). ``export_chain`` traces
a forward pass, writes the chain, runs the chain again with torch's functional layers and
compares the result with the network's own output; anything it cannot write, or a chain that
does not reproduce the network, gives ``None`` and a reason, and the viewer then shows the
numbers computed here instead of maps.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mapscope.inspect.taps import evaluation_mode, find_layer, module_device


@dataclass
class Chain:
    """Steps in run order; ``ends[layer]`` is the index of the step whose output is that
    atlas layer's output."""

    steps: list[dict[str, Any]]
    ends: dict[str, int]
    input_shape: tuple[int, ...]  # one image, as the network reads it: (C, H, W) or (F,)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # step weights by key

    def to_json(self) -> dict[str, Any]:
        """Steps with their arrays as base64 little-endian float32 (what the page reads)."""
        return {
            "steps": self.steps,
            "ends": self.ends,
            "input_shape": list(self.input_shape),
            "arrays": {
                k: {"shape": list(v.shape), "data": float32_base64(v)}
                for k, v in self.arrays.items()
            },
        }


def float32_base64(array: np.ndarray) -> str:
    """An array as base64 of little-endian float32, the form the page decodes."""
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return base64.b64encode(data).decode("ascii")


def _pair(value) -> list[int]:
    return [value, value] if isinstance(value, int) else [int(v) for v in value]


def _step(module: nn.Module, key: str, arrays: dict[str, np.ndarray]) -> dict[str, Any] | str:
    """One leaf as a step, or a string saying why it cannot be one."""

    def keep(name: str, tensor: torch.Tensor | None) -> str | None:
        if tensor is None:
            return None
        arrays[f"{key}.{name}"] = tensor.detach().float().cpu().numpy()
        return f"{key}.{name}"

    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or _pair(module.dilation) != [1, 1]:
            return "a grouped or dilated convolution"
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            return "a convolution with named or non-zero padding"
        return {
            "op": "conv",
            "weight": keep("weight", module.weight),
            "bias": keep("bias", module.bias),
            "stride": _pair(module.stride),
            "padding": _pair(module.padding),
        }
    if isinstance(module, nn.Linear):
        return {
            "op": "linear",
            "weight": keep("weight", module.weight),
            "bias": keep("bias", module.bias),
        }
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        if isinstance(module, nn.MaxPool2d) and _pair(module.dilation) != [1, 1]:
            return "a dilated max-pool"
        if module.ceil_mode:
            return "a pool with ceil_mode"
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        if _pair(module.padding) != [0, 0]:
            return "a padded pool"
        return {
            "op": "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool",
            "kernel": kernel,
            "stride": stride,
        }
    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        if module.running_mean is None:
            return "a batch norm without running statistics"
        scale = 1 / torch.sqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -module.running_mean * scale
        if module.bias is not None:
            shift = shift + module.bias
        return {"op": "affine", "scale": keep("scale", scale), "shift": keep("shift", shift)}
    if isinstance(module, nn.ELU):
        return {"op": "elu", "alpha": float(module.alpha)}
    if isinstance(module, nn.SELU):
        return {"op": "selu"}
    if isinstance(module, nn.LeakyReLU):
        return {"op": "leaky", "slope": float(module.negative_slope)}
    simple = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Flatten: "flatten"}
    for kind, op in simple.items():
        if isinstance(module, kind):
            return {"op": op}
    if isinstance(module, nn.Identity | nn.Dropout):
        return {"op": "identity"}
    return f"a {type(module).__name__}"


def _run(chain: Chain, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The chain with torch's functional layers: what the page computes, step by step."""

    def array(key):
        return None if key is None else torch.from_numpy(chain.arrays[key])

    outputs = []
    for step in chain.steps:
        op = step["op"]
        if op == "conv":
            x = F.conv2d(
                x, array(step["weight"]), array(step["bias"]), step["stride"], step["padding"]
            )
        elif op == "linear":
            x = F.linear(x, array(step["weight"]), array(step["bias"]))
        elif op in ("maxpool", "avgpool"):
            pool = F.max_pool2d if op == "maxpool" else F.avg_pool2d
            x = pool(x, step["kernel"], step["stride"])
        elif op == "affine":
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = x * array(step["scale"]).reshape(shape) + array(step["shift"]).reshape(shape)
        elif op == "flatten":
            x = x.flatten(1)
        elif op == "relu":
            x = F.relu(x)
        elif op == "sigmoid":
            x = torch.sigmoid(x)
        elif op == "tanh":
            x = torch.tanh(x)
        elif op == "elu":
            x = F.elu(x, step["alpha"])
        elif op == "selu":
            x = F.selu(x)
        elif op == "leaky":
            x = F.leaky_relu(x, step["slope"])
        outputs.append(x)
    return x, outputs


@torch.no_grad()
def export_chain(
    net: nn.Module, example: np.ndarray, layers: list[str]
) -> tuple[Chain | None, str]:
    """The network as a ``Chain`` ending each of ``layers``, checked against the network on
    ``example`` (a few prepared inputs); or None and why not."""
    leaves, handles = [], []
    owner = {m: n for n, m in net.named_modules()}

    def record(module, inputs, output):
        if torch.is_tensor(output) and inputs and torch.is_tensor(inputs[0]):
            leaves.append((module, inputs[0], output))

    for module in net.modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(record))
    x = torch.from_numpy(np.ascontiguousarray(example[:4], dtype=np.float32))
    x = x.to(module_device(net))
    try:
        with evaluation_mode(net):
            out = net(x)
    finally:
        for h in handles:
            h.remove()
    if not leaves or not torch.is_tensor(out):
        return None, "the network has no leaf modules to follow"
    steps, arrays, leaf_step, previous = [], {}, [], x
    for k, (module, given, output) in enumerate(leaves):
        if given.data_ptr() != previous.data_ptr() or given.numel() != previous.numel():
            return None, f"{owner[module]} does not read the output of the module before it"
        if given.shape != previous.shape:  # a reshape between modules (x.flatten(1))
            if given.dim() != 2:
                return None, f"{owner[module]} reads a reshaped input"
            steps.append({"op": "flatten"})
        step = _step(module, f"s{k}", arrays)
        if isinstance(step, str):
            return None, f"{owner[module]} is {step}, which the page cannot run"
        steps.append(step)
        leaf_step.append(len(steps) - 1)
        previous = output
    if out.data_ptr() != previous.data_ptr():
        return None, "the network's output is not its last module's output"
    ends = {}
    for name in layers:
        own = set(find_layer(net, name).modules())
        mine = [i for i, (m, _, _) in enumerate(leaves) if m in own]
        if not mine:
            return None, f"{name} runs no module of its own"
        ends[name] = leaf_step[mine[-1]]
    chain = Chain(steps, ends, tuple(int(v) for v in example.shape[1:]), arrays)
    again, _ = _run(chain, x.cpu())
    out = out.float().cpu()
    scale = float(out.abs().max()) or 1.0
    if again.shape != out.shape or float((again - out).abs().max()) > 1e-4 * scale:
        return None, "the chain of its modules does not reproduce the network's output"
    return chain, ""


def input_affine(bundle, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, b) with prepared = a * pixels + b for every pixel, both (C, H, W), when the run's
    scaling is that simple (per-pixel standardisation, /255, none); checked on ``sample``
    (raw images). None for per-image standardisation."""
    stored = bundle.dataset.x
    full = 255.0 if stored.dtype == np.uint8 else float(stored.max()) or 1.0
    shape = (1, *stored.shape[1:])
    b = bundle.prepare(np.zeros(shape, dtype=stored.dtype), "nchw")[0]
    a = (bundle.prepare(np.full(shape, full, dtype=stored.dtype), "nchw")[0] - b) / full
    prepared = bundle.prepare(sample, "nchw")
    pixels = np.asarray(sample, dtype=np.float32)
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)
    error = np.abs(a * pixels + b - prepared).max()
    if not error <= 1e-4 * max(float(np.abs(prepared).max()), 1.0):
        return None
    return a.astype(np.float32), b.astype(np.float32)
