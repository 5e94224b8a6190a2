"""Spec -> ``AutoEncoder``: an ``nn.Module`` whose children carry the spec's layer names.

The layers run in order from one ``nn.ModuleDict`` (like the CNN's ``Network``), so a forward
hook on any named layer sees what it hands on; ``encode`` runs up to ``Latent`` and ``decode``
from ``Dec_Dense`` on, which is all the latent study and the samplers need.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mapscope.ae.spec import AESpec
from mapscope.device import INFERENCE_BATCH

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
}


class Block(nn.Module):
    """A weighted layer, optional batch norm and the activation, addressable under one name."""

    def __init__(self, inner: nn.Module, activation: str | None, norm: nn.Module | None = None):
        super().__init__()
        self.inner = inner
        self.norm = norm if norm is not None else nn.Identity()
        self.act = _ACTIVATIONS[activation]() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.inner(x)))


class Upsampling(nn.Module):
    """Nearest-neighbour doubling followed by a same-size convolution (no checkerboard)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class AutoEncoder(nn.Module):
    def __init__(self, spec: AESpec):
        super().__init__()
        self.spec = spec.validate()
        channels, k, act = spec.input_shape[0], spec.kernel, spec.activation
        layers: dict[str, nn.Module] = {}
        for i, filters in enumerate(spec.filters, start=1):
            stride = 2 if spec.downsample == "stride" else 1
            conv = nn.Conv2d(channels, filters, k, stride=stride, padding=k // 2)
            layers[f"Enc_Conv_{i}"] = Block(conv, act, _norm(spec, filters))
            if spec.downsample == "pool":
                layers[f"Enc_Pool_{i}"] = nn.MaxPool2d(2)
            channels = filters
        code_map = spec.code_map
        flat = code_map[0] * code_map[1] * code_map[2]
        layers["Enc_Flatten"] = nn.Flatten()
        layers["Latent"] = Block(nn.Linear(flat, spec.latent), None)
        layers["Dec_Dense"] = Block(nn.Linear(spec.latent, flat), act)
        layers["Dec_Reshape"] = nn.Unflatten(1, code_map)
        # the exact mirror: each upsampling undoes one halving, the last one to the image
        widths = [*reversed(spec.filters[:-1]), spec.input_shape[0]]
        for i, filters in enumerate(widths, start=1):
            last = i == len(widths)
            if spec.upsample == "transpose":
                up = nn.ConvTranspose2d(channels, filters, k, 2, k // 2, output_padding=1)
            else:
                up = Upsampling(channels, filters, k)
            name = "Dec_Output" if last else f"Dec_Conv_{i}"
            norm = None if last else _norm(spec, filters)
            layers[name] = Block(up, "sigmoid" if last else act, norm)
            channels = filters
        self.layers = nn.ModuleDict(layers)
        assert list(self.layers) == spec.layer_names

    @property
    def layer_names(self) -> list[str]:
        return self.spec.layer_names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.layers.items():
            x = layer(x)
            if name == "Latent":
                return x
        raise AssertionError("no Latent layer")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        names = list(self.layers)
        for name in names[names.index("Dec_Dense") :]:
            z = self.layers[name](z)
        return z

    def kernels(self) -> list[torch.Tensor]:
        return [m.inner.weight for m in self.layers.values() if isinstance(m, Block)]


def _norm(spec: AESpec, channels: int) -> nn.Module | None:
    return nn.BatchNorm2d(channels) if spec.batch_norm else None


def build(spec: AESpec, seed: int = 0) -> AutoEncoder:
    """The network with torch's default initialisation drawn from a seeded generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoEncoder(spec)


@torch.no_grad()
def encode_array(net: AutoEncoder, inputs: np.ndarray, batch: int = INFERENCE_BATCH) -> np.ndarray:
    """Codes (N, latent) of prepared inputs (N, C, H, W), in eval mode, float32."""
    return _batched(net.encode, net, inputs, batch)


@torch.no_grad()
def decode_array(net: AutoEncoder, codes: np.ndarray, batch: int = INFERENCE_BATCH) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] drawn by the decoder from codes (N, latent)."""
    return _batched(net.decode, net, codes.astype(np.float32), batch)


def _batched(step, net: AutoEncoder, array: np.ndarray, batch: int) -> np.ndarray:
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        parts = [
            step(torch.from_numpy(np.ascontiguousarray(array[i : i + batch])).to(device))
            .float()
            .cpu()
            .numpy()
            for i in range(0, len(array), batch)
        ]
    finally:
        net.train(was_training)
    return np.concatenate(parts) if parts else np.empty((0,), np.float32)
