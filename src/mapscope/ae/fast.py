"""The CPU fast path of autoencoder training, as modules the trainer swaps in and back out.

As in ``cnn.fast``: ``AutoEncoder.forward`` stays plain, and ``fast_path(net)`` replaces layers in
``net.layers`` by modules that share their parameters and compute the same values up to float
rounding, restoring the originals on exit, also after an exception or Ctrl-C. Only the trainer's
own network, which has no hooks, goes through it.

- ``FastConv`` takes the place of each convolution block: the convolutions of ``ae.fast_conv``
  (a following ReLU folded into the convolution, the kernel gradients of the wide stride-2
  layers and the whole image layer as matrix products in bf16).
- ``FlattenChannelsLast`` and ``DenseToChannelsLast`` take the places of ``Latent`` and
  ``Dec_Dense``: they read and write the code map in channels-last order, the order the
  convolutions keep it in, with the dense weight's columns (rows) permuted to match. Plain
  ``Flatten`` reads NCHW order and so copies the map, and its gradient comes back NCHW into a
  channels-last ReLU, whose backward over two layouts is several times slower; ``Unflatten``
  hands the transposed convolution an NCHW map that oneDNN reorders first.

A bf16 step of the default MNIST autoencoder (batch 128, Zen 5, 2 threads) took 15.6 ms plain
and 11.9 ms through these modules, measured alternately in one process; the layout alone gave
about 1 ms of it. In float32 oneDNN's own kernels win, so there only the ReLU post-op and the
layout apply (``benchmarks/ae_train.py`` times whole epochs against a plain loop).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mapscope.ae.build import AutoEncoder, Block
from mapscope.ae.fast_conv import Workspace, convolve
from mapscope.training.swap import swapped


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """What autocast would run a convolution in here: its dtype inside an autocast block."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


@functools.cache
def _onednn_takes_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions on this CPU (it refuses without AVX-512); asked
    once per process, not at every layer of every step."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


class FastConv(nn.Module):
    """A ``Block`` around a (transposed) convolution, computed by ``fast_conv.convolve`` in the
    dtype autocast would pick."""

    def __init__(self, block: Block):
        super().__init__()
        self.block = block
        self.workspace = Workspace()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block, conv = self.block, self.block.inner
        dtype = _compute_dtype(x)
        if dtype == torch.bfloat16 and not _onednn_takes_bf16():
            return block(x)
        relu = isinstance(block.act, nn.ReLU) and isinstance(block.norm, nn.Identity)
        cast = (t.to(dtype) for t in (x, conv.weight, conv.bias))
        y = convolve(*cast, conv, relu, self.workspace)
        return y if relu else block.act(block.norm(y))

    @staticmethod
    def applies(block: nn.Module) -> bool:
        if not isinstance(block, Block) or not torch.backends.mkldnn.is_available():
            return False
        conv = block.inner
        return (
            isinstance(conv, nn.Conv2d | nn.ConvTranspose2d)
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.groups == 1
            and conv.dilation == (1, 1)
            and conv.bias is not None
        )


def channels_last_order(code_map: tuple[int, int, int]) -> torch.Tensor:
    """Position k of a channels-last flattened (C, H, W) map holds element ``order[k]`` of the
    NCHW-flattened one: the columns of ``Latent``'s weight and the rows of ``Dec_Dense``'s."""
    c, h, w = code_map
    return torch.arange(c * h * w).view(c, h * w).t().reshape(-1)


class FlattenChannelsLast(nn.Module):
    """``Latent(Flatten(map))`` reading the map in channels-last order: a view, not a copy."""

    def __init__(self, latent: Block, order: torch.Tensor):
        super().__init__()
        self.latent, self.order = latent, order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = self.latent.inner
        flat = x.permute(0, 2, 3, 1).reshape(len(x), -1)
        y = F.linear(flat, dense.weight[:, self.order], dense.bias)
        return self.latent.act(self.latent.norm(y))


class DenseToChannelsLast(nn.Module):
    """``Unflatten(Dec_Dense(z))`` writing the map in channels-last order."""

    def __init__(self, dense: Block, code_map: tuple[int, int, int], order: torch.Tensor):
        super().__init__()
        self.dense, self.code_map, self.order = dense, code_map, order

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.code_map
        linear = self.dense.inner
        y = F.linear(z, linear.weight[self.order], linear.bias[self.order])
        y = self.dense.act(self.dense.norm(y))
        return y.view(len(z), h, w, c).permute(0, 3, 1, 2)


def fast_layers(net: AutoEncoder) -> dict[str, nn.Module]:
    """The replacements for ``net.layers``, by layer name."""
    layers = net.layers
    swaps: dict[str, nn.Module] = {
        name: FastConv(layer) for name, layer in layers.items() if FastConv.applies(layer)
    }
    code_map = net.spec.code_map
    order = channels_last_order(code_map)
    swaps["Enc_Flatten"] = nn.Identity()
    swaps["Latent"] = FlattenChannelsLast(layers["Latent"], order)
    swaps["Dec_Dense"] = DenseToChannelsLast(layers["Dec_Dense"], code_map, order)
    swaps["Dec_Reshape"] = nn.Identity()
    return swaps


@contextlib.contextmanager
def fast_path(net: AutoEncoder, enabled: bool = True) -> Iterator[AutoEncoder]:
    """Swap the fast modules into ``net`` for the block; the originals come back afterwards."""
    with swapped(net.layers, fast_layers(net) if enabled else {}):
        yield net
