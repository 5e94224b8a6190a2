"""The autoencoder's CPU fast path (ae.fast, ae.fast_conv) computes what the plain network does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mapscope.ae.build import Block, build
from mapscope.ae.fast import DenseToChannelsLast, FastConv, FlattenChannelsLast, fast_path
from mapscope.ae.fast_conv import (
    Workspace,
    _ImageTransposedConvFunction,
    _weight_and_bias_grads,
    convolve,
    image_layer,
    matrix_weight_grads,
)
from mapscope.ae.spec import AESpec

GEOMETRIES = [
    # (transposed, in, out, kernel, stride, padding, output_padding, input H x W)
    (False, 32, 64, 3, 2, 1, 0, (14, 14)),  # Enc_Conv_2 of the default autoencoder
    (False, 3, 5, 5, 2, 2, 0, (15, 13)),  # odd, non-square: the last window row is cut
    (True, 64, 32, 3, 2, 1, 1, (7, 7)),  # Dec_Conv_1
    (True, 4, 3, 5, 2, 2, 1, (8, 6)),
    (True, 6, 2, 3, 1, 1, 0, (5, 7)),  # stride 1
]


def _layer(transposed, n_in, n_out, kernel, stride, padding, output_padding):
    if transposed:
        return nn.ConvTranspose2d(n_in, n_out, kernel, stride, padding, output_padding)
    return nn.Conv2d(n_in, n_out, kernel, stride, padding)


def _case(geometry, dtype=torch.float32, seed=0):
    transposed, n_in, n_out, kernel, stride, padding, output_padding, hw = geometry
    torch.manual_seed(seed)
    conv = _layer(transposed, n_in, n_out, kernel, stride, padding, output_padding)
    x = torch.randn(4, n_in, *hw).contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(conv(x)).contiguous(memory_format=torch.channels_last)
    return conv, x.to(dtype), conv.weight.detach().to(dtype), grad.to(dtype)


def _aten_grads(conv, x, weight, grad):
    transposed = isinstance(conv, nn.ConvTranspose2d)
    output_padding = list(conv.output_padding) if transposed else [0, 0]
    _, dw, db = torch.ops.aten.convolution_backward(
        grad, x, weight, [conv.out_channels], list(conv.stride), list(conv.padding),
        [1, 1], transposed, output_padding, 1, [False, True, True],
    )  # fmt: skip
    return dw, db


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_kernel_gradients_as_matrix_products_equal_torch(geometry):
    conv, x, weight, grad = _case(geometry)
    transposed = isinstance(conv, nn.ConvTranspose2d)
    workspace = Workspace()
    dw, db = _weight_and_bias_grads(grad, x, weight, conv, transposed, workspace)
    again = _weight_and_bias_grads(grad * 2, x, weight, conv, transposed, workspace)  # reused
    torch.testing.assert_close(again[0], 2 * dw)
    want_dw, want_db = _aten_grads(conv, x, weight, grad)
    assert dw.shape == weight.shape
    torch.testing.assert_close(dw, want_dw, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(db, want_db, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("geometry", GEOMETRIES[:1] + GEOMETRIES[2:3])
def test_kernel_gradients_in_bf16_are_as_accurate_as_torchs(geometry):
    conv, x, weight, grad = _case(geometry, torch.bfloat16)
    truth = _aten_grads(conv, x.double(), weight.double(), grad.double())
    transposed = isinstance(conv, nn.ConvTranspose2d)
    ours = _weight_and_bias_grads(grad, x, weight, conv, transposed, Workspace())
    torchs = _aten_grads(conv, x, weight, grad)
    for mine, theirs, want in zip(ours, torchs, truth, strict=True):
        scale = want.abs().max()
        assert (mine.double() - want).abs().max() <= 1.5 * (theirs.double() - want).abs().max()
        assert (mine.double() - want).abs().max() < 0.01 * scale


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[0]])
def test_image_layer_by_matrix_products_equals_torchs_transposed_convolution(geometry):
    conv, x, _, grad = _case(geometry)
    x.requires_grad_(True)
    weight = conv.weight.detach().clone().requires_grad_(True)
    bias = conv.bias.detach().clone().requires_grad_(True)
    ours = _ImageTransposedConvFunction.apply(x, weight, bias, conv, Workspace())
    ours.backward(grad)
    mine = (ours.detach(), x.grad, weight.grad, bias.grad)
    x.grad = weight.grad = bias.grad = None
    plain = F.conv_transpose2d(x, weight, bias, conv.stride, conv.padding, conv.output_padding)
    plain.backward(grad)
    for have, want in zip(mine, (plain.detach(), x.grad, weight.grad, bias.grad), strict=True):
        torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-4)


def test_which_layers_take_the_matrix_forms():
    wide = nn.Conv2d(32, 64, 3, 2, 1)
    assert matrix_weight_grads(wide, torch.bfloat16)
    assert not matrix_weight_grads(wide, torch.float32)  # oneDNN is faster in float32
    assert not matrix_weight_grads(nn.Conv2d(1, 32, 3, 2, 1), torch.bfloat16)
    image = nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1)
    assert image_layer(image, torch.bfloat16) and not image_layer(image, torch.float32)
    assert not image_layer(nn.ConvTranspose2d(32, 16, 3, 2, 1, 1), torch.bfloat16)
    assert not image_layer(nn.ConvTranspose2d(32, 1, 3, 2, 0, 1), torch.bfloat16)  # op > padding


@pytest.mark.parametrize("relu", [True, False])
def test_convolve_folds_the_relu_in(relu):
    conv, x, weight, _ = _case(GEOMETRIES[0])
    y = convolve(x, weight, conv.bias.detach(), conv, relu, Workspace())
    want = conv(x).detach()
    torch.testing.assert_close(y, torch.relu(want) if relu else want, rtol=1e-5, atol=1e-5)


SPECS = [
    AESpec(),
    AESpec(input_shape=(3, 32, 32), filters=(8, 16, 32), kernel=5, loss="mse"),
    AESpec(batch_norm=True),
    AESpec(upsample="upsample", activation="elu"),
]


def _gradients(net, x, fast, precision):
    net.zero_grad()
    dtype = torch.float64 if precision == "fp64" else torch.float32
    net.to(dtype)
    with fast_path(net, enabled=fast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = net(x.to(dtype))
        F.binary_cross_entropy(out.double(), x.double()).backward()
    grads = {name: p.grad.double().clone() for name, p in net.named_parameters()}
    net.float()
    return out.detach().double(), grads


@pytest.mark.parametrize("spec", SPECS, ids=["default", "colour", "batch-norm", "upsample"])
def test_fast_path_in_float32_equals_the_plain_network(spec):
    net = build(spec, seed=1).to(memory_format=torch.channels_last).train()
    x = torch.rand(6, *spec.input_shape).contiguous(memory_format=torch.channels_last)
    plain_out, plain = _gradients(net, x, False, "fp32")
    fast_out, fast = _gradients(net, x, True, "fp32")
    torch.testing.assert_close(fast_out, plain_out, rtol=1e-5, atol=1e-6)
    for name, want in plain.items():  # a bias before batch norm has a gradient of 0 + rounding
        atol = max(1e-5 * want.abs().max().item(), 1e-6)
        torch.testing.assert_close(fast[name], want, rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize("spec", SPECS[:2], ids=["default", "colour"])
def test_fast_path_in_bf16_is_as_accurate_as_autocast(spec):
    """Against float64: the fast path's bf16 gradients err no more than autocast's own."""
    net = build(spec, seed=1).to(memory_format=torch.channels_last).train()
    torch.manual_seed(0)
    x = torch.rand(32, *spec.input_shape).contiguous(memory_format=torch.channels_last)
    _, truth = _gradients(net, x, False, "fp64")
    _, plain = _gradients(net, x, False, "bf16")
    _, fast = _gradients(net, x, True, "bf16")
    for name, want in truth.items():
        scale = want.abs().max()
        error = ((fast[name] - want).abs().max() / scale).item()
        autocast_error = ((plain[name] - want).abs().max() / scale).item()
        assert error <= 1.3 * autocast_error + 2e-3, (name, error, autocast_error)


def test_fast_path_swaps_its_modules_in_and_back_out():
    net = build(AESpec(batch_norm=True), seed=0)
    originals = dict(net.layers.items())
    with fast_path(net):
        layers = net.layers
        assert isinstance(layers["Enc_Conv_1"], FastConv)
        assert isinstance(layers["Dec_Output"], FastConv)
        assert isinstance(layers["Latent"], FlattenChannelsLast)
        assert isinstance(layers["Dec_Dense"], DenseToChannelsLast)
        assert isinstance(layers["Enc_Flatten"], nn.Identity)
        assert isinstance(layers["Dec_Reshape"], nn.Identity)
    assert dict(net.layers.items()) == originals
    with pytest.raises(RuntimeError), fast_path(net):  # swapped back after an error too
        raise RuntimeError
    assert dict(net.layers.items()) == originals
    assert all(isinstance(net.layers[n], Block) for n in ("Enc_Conv_1", "Latent", "Dec_Dense"))
    with fast_path(net, enabled=False):
        assert dict(net.layers.items()) == originals
