import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from small_nets import SMALL_CNN

from mapscope.cnn.build import build, count_parameters
from mapscope.cnn.predict import predict_proba, read_drawing
from mapscope.cnn.spec import default_spec, load_spec, spec_from_dict
from mapscope.cnn.summary import summarize
from mapscope.errors import ConfigError, RunError, TrainingDiverged
from mapscope.io import read_json
from mapscope.runs import Run
from mapscope.training.schedules import learning_rate


def test_default_network_matches_reference():
    spec = default_spec()
    assert spec.layer_names == [
        "Conv2D_1",
        "Max_Pool_1",
        "Conv2D_2",
        "Max_Pool_2",
        "Conv2D_3",
        "Flatten",
        "Dense_1",
        "Dense_2",
    ]
    assert count_parameters(build(spec)) == 208_982
    rows = {r.name: r for r in summarize(spec)}
    assert rows["Conv2D_3"].receptive_field == 18 and rows["Conv2D_3"].stride == 4
    assert rows["Conv2D_3"].output_shape == (128, 3, 3)
    assert rows["Max_Pool_1"].receptive_field == 4


def test_toml_config_round_trip(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(
        'l2 = 0.001\n[[layers]]\ntype = "conv"\nname = "c1"\nfilters = 8\nactivation = "elu"\n'
        '[[layers]]\ntype = "pool"\nname = "p1"\nkind = "average"\n'
        '[[layers]]\ntype = "dense"\nname = "out"\nunits = 10\nactivation = "softmax"\n'
    )
    spec = load_spec(path)
    assert spec.layer_names == ["c1", "p1", "Flatten", "out"]
    assert spec.shapes[1] == (8, 13, 13)
    assert spec_from_dict(spec.to_dict()) == spec
    out = build(spec)(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"activation": "swish"}, "field 'activation' is 'swish'; allowed values: relu"),
        ({"kernel": 30}, "shrink the map below 1x1"),
        ({"filters": 0}, "field 'filters' must be a positive integer"),
    ],
)
def test_invalid_configs_name_the_field(change, message):
    raw = default_spec().to_dict()
    raw["layers"][0].update(change)
    with pytest.raises(ConfigError, match=message):
        spec_from_dict(raw)


def test_missing_field_and_bad_output():
    raw = default_spec().to_dict()
    del raw["layers"][2]["filters"]
    with pytest.raises(ConfigError, match=r"layers\[2\]: missing field"):
        spec_from_dict(raw)
    raw = default_spec().to_dict()
    raw["layers"][-1]["activation"] = "relu"
    with pytest.raises(
        ConfigError, match="last layer must be a dense layer with activation 'softmax'"
    ):
        spec_from_dict(raw)


def test_training_fast_path_equals_plain_forward():
    net = build(default_spec(), seed=3)
    x = torch.randn(4, 1, 28, 28)
    net.train()
    fast = net(x)
    net.eval()
    torch.testing.assert_close(fast, net(x))


def test_training_fast_path_gradients_equal_plain_torch(monkeypatch):
    from mapscope.cnn import conv_matmul, conv_pool, winograd

    net = build(default_spec(), seed=3).to(memory_format=torch.channels_last).train()
    x = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.arange(8)

    def gradients():
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        return {name: p.grad.clone() for name, p in net.named_parameters()}

    fused = gradients()
    monkeypatch.setattr(conv_pool, "applies", lambda *args: False)
    monkeypatch.setattr(conv_matmul, "applies", lambda *args: False)
    monkeypatch.setattr(winograd, "applies", lambda *args: False)
    plain = gradients()
    for name in plain:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def assert_sums_close(have: torch.Tensor, want: torch.Tensor, msg: str | None = None) -> None:
    """Gradients summed in another order: float32 rounding grows with the size of the terms."""
    scale = max(1.0, want.abs().max().item())
    torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5 * scale, msg=msg)


# Kernels are compiled per layer size and per ReLU folded in or not (numba, cached on disk;
# 2-5 s each on a first run): the reference sizes are tried as training compiles them (ReLU
# folded in), the ReLU left out on one odd size (5x5 kernels, 3x3 pool, 3 -> 5 channels), and
# the other cases share those sizes where the size is not what they test.
@pytest.mark.parametrize(
    ("n_in", "n_out", "kernel", "pool", "side", "padding", "size", "relu"),
    [
        (1, 32, 3, 2, 28, "valid", None, True),  # Conv2D_1 + Max_Pool_1 of the reference network
        (3, 5, 5, 3, 17, "same", None, False),  # another kernel, pool and channel count
        (1, 32, 3, 2, 15, 1, None, True),  # padding as the spec builds it (an int); same kernels
        (1, 32, 3, 2, 28, "valid", (12, 11), True),  # only the part the next layer reads
        (3, 5, 5, 3, 17, "same", (5, 4), False),
    ],
)
def test_fused_conv_max_pool_equals_torch(n_in, n_out, kernel, pool, side, padding, size, relu):
    from mapscope.cnn.conv_pool import applies, conv_max_pool

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(n_in, n_out, kernel, padding=padding)
    max_pool = torch.nn.MaxPool2d(pool)
    x = torch.randn(5, n_in, side, side)
    assert applies(conv, max_pool, x)
    expected = max_pool(conv(x))
    expected = torch.relu(expected) if relu else expected
    if size is not None:
        expected = expected[:, :, : size[0], : size[1]]
    got = conv_max_pool(x, conv, max_pool, size, relu)
    torch.testing.assert_close(got, expected)
    upstream = torch.randn_like(expected)
    want = torch.autograd.grad(expected, (conv.weight, conv.bias), upstream)
    have = torch.autograd.grad(got, (conv.weight, conv.bias), upstream)
    for w, h in zip(want, have, strict=True):
        assert_sums_close(h, w)


@pytest.mark.parametrize(
    ("n_in", "n_out", "kernel", "pool", "side", "padding", "size", "bias", "relu"),
    [
        (32, 64, 3, 2, 12, "valid", None, 0.0, True),  # Conv2D_2 + Max_Pool_2 of the reference
        (32, 64, 3, 2, 12, "valid", None, -0.5, True),  # most pooled values below 0: sparser
        (32, 64, 3, 2, 15, 1, None, 0.0, True),  # padding as the spec builds it (an int)
        (32, 64, 3, 2, 28, "valid", (6, 5), 0.0, True),  # only the part the next layer reads
        # the odd sizes the tie-breaking test reads too: 5x5 kernels, a 3x3 pool, 3 -> 5 channels
        (3, 5, 5, 3, 17, "same", None, 0.0, False),
        (3, 5, 5, 3, 17, "same", None, -0.5, False),
        (3, 5, 5, 3, 17, "valid", (4, 3), 0.0, False),
    ],
)
def test_sparse_backward_equals_torch(n_in, n_out, kernel, pool, side, padding, size, bias, relu):
    from mapscope.cnn.conv_pool import applies, conv_max_pool

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(n_in, n_out, kernel, padding=padding).to(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        conv.bias.add_(bias)
    max_pool = torch.nn.MaxPool2d(pool)
    x = torch.randn(6, n_in, side, side).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    assert applies(conv, max_pool, x)
    expected = torch.relu(max_pool(conv(x)))
    if size is not None:
        expected = expected[:, :, : size[0], : size[1]]
    got = conv_max_pool(x, conv, max_pool, size, relu)
    got = got if relu else torch.relu(got)  # the ReLU in the kernels, or after them
    torch.testing.assert_close(got, expected)
    upstream = torch.randn_like(expected)
    params = (x, conv.weight, conv.bias)
    want = torch.autograd.grad(expected, params, upstream)
    have = torch.autograd.grad(got, params, upstream)
    for name, w, h in zip(("input", "weight", "bias"), want, have, strict=True):
        assert_sums_close(h, w, msg=name)
    assert have[1].stride() == conv.weight.stride()  # fused Adam steps weight and grad in one pass


@pytest.mark.parametrize("dense", [False, True], ids=["sparse-backward", "onednn-backward"])
@pytest.mark.parametrize(
    ("n_in", "n_out", "kernel", "pool", "side", "relu"),
    [
        (32, 64, 3, 2, 12, True),  # Conv2D_2 + Max_Pool_2 of the reference network
        (3, 5, 5, 3, 17, False),  # the odd sizes above (kernels compiled once for both tests)
    ],
)
def test_deeper_path_under_bf16_autocast_pools_what_torch_computes(
    n_in, n_out, kernel, pool, side, relu, dense, monkeypatch
):
    """The forward equals torch's autocast path bit for bit. The sparse backward (float32)
    equals an exact float32 backward through the same winning positions; the dense one, taken
    where oneDNN has AMX (forced here on any CPU), is oneDNN's bf16 backward, as torch's own.
    Torch's bf16 backward is the yardstick for both: how far it lies from the exact one depends
    on the CPU (AMX, native bf16 on AVX512-BF16, emulated on AVX2-only CPUs), so its tolerance
    is measured on this machine, not assumed."""
    from mapscope.cnn import conv_pool

    monkeypatch.setattr(conv_pool, "dense_backward_pays", lambda: dense)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(n_in, n_out, kernel).to(memory_format=torch.channels_last)
    max_pool = torch.nn.MaxPool2d(pool)
    x = torch.randn(6, n_in, side, side).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv_pool.applies(conv, max_pool, x)
        maps = conv(x)  # oneDNN's bf16 convolution
        expected, winners = F.max_pool2d(maps, pool, return_indices=True)
        expected = torch.relu(expected) if relu else expected
        got = conv_pool.conv_max_pool(x, conv, max_pool, relu=relu)
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
    upstream = torch.randn(expected.shape)
    params = (x, conv.weight, conv.bias)
    # exact: the pooled gradient (autograd hands a bf16 output a bf16-rounded gradient) scattered
    # to the same winners, then a float32 convolution backward
    rounded = upstream.bfloat16().float()
    passed = rounded * (expected.float() > 0) if relu else rounded
    grad_maps = F.max_unpool2d(passed, winners, pool, output_size=maps.shape[-2:])
    exact = (
        torch.nn.grad.conv2d_input(x.shape, conv.weight.detach(), grad_maps),
        torch.nn.grad.conv2d_weight(x.detach(), conv.weight.shape, grad_maps),
        grad_maps.sum(dim=(0, 2, 3)),
    )
    have = torch.autograd.grad(got.float(), params, upstream)
    torch_bf16 = torch.autograd.grad(expected.float(), params, upstream)  # torch: bf16 backward
    for name, e, h, t in zip(("input", "weight", "bias"), exact, have, torch_bf16, strict=True):
        assert h.dtype == torch.float32 and h.stride() == t.stride()
        if not dense:
            assert_sums_close(h, e, msg=name)
        # no worse than torch's own bf16 path on this CPU, as a fraction of the gradient's size
        torch_error = (t - e).abs().max().item()
        assert (h - e).abs().max().item() <= max(torch_error, 1e-5 * e.abs().max().item()), name


def test_dense_backward_is_taken_only_under_bf16_where_onednn_has_amx(monkeypatch):
    """Which backward a deeper layer takes follows the rule, not the CPU the test runs on: the
    dense one under bf16 autocast where ``dense_backward_pays``, the sparse one otherwise."""
    from mapscope.cnn import conv_pool

    conv, max_pool = torch.nn.Conv2d(32, 64, 3), torch.nn.MaxPool2d(2)
    x = torch.randn(3, 32, 12, 12, requires_grad=True)
    taken, dense_backward = [], conv_pool._dense_backward

    def spied(ctx, grad):
        taken.append("dense")
        return dense_backward(ctx, grad)

    monkeypatch.setattr(conv_pool, "_dense_backward", spied)
    for amx in (False, True):
        monkeypatch.setattr(conv_pool, "dense_backward_pays", lambda amx=amx: amx)
        for dtype in (torch.float32, torch.bfloat16):
            taken.clear()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                out = conv_pool.conv_max_pool(x, conv, max_pool, relu=True)
            out.float().sum().backward()
            assert taken == (["dense"] if amx and dtype == torch.bfloat16 else []), (amx, dtype)


def test_onednn_uses_amx_only_where_the_cpu_has_it_and_nothing_holds_onednn_below(monkeypatch):
    from mapscope.device import onednn_uses_amx

    for amx, limit, uses in [
        (True, None, True),
        (True, "AVX512_CORE_AMX", True),
        (True, "avx10_1_512_amx", True),
        (True, "AVX512_CORE_BF16", False),
        (True, "AVX2", False),
        (False, None, False),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        if limit is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
        onednn_uses_amx.cache_clear()
        assert onednn_uses_amx() is uses, (amx, limit)
    onednn_uses_amx.cache_clear()


def test_sparse_backward_is_the_same_on_any_number_of_threads():
    import numba

    from mapscope.cnn.conv_pool import conv_max_pool

    torch.manual_seed(1)
    # the reference network's Conv2D_2 + Max_Pool_2: kernels compiled once for the whole suite
    conv, max_pool = torch.nn.Conv2d(32, 64, 3), torch.nn.MaxPool2d(2)
    x = torch.randn(9, 32, 14, 14, requires_grad=True)  # 9 images: uneven over the threads

    def gradients(threads):
        numba.set_num_threads(threads)
        try:
            out = conv_max_pool(x, conv, max_pool, relu=True)
            return torch.autograd.grad(out.square().sum(), (x, conv.weight, conv.bias))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    for one, many in zip(gradients(1), gradients(numba.config.NUMBA_NUM_THREADS), strict=True):
        assert torch.equal(one, many)


def test_fused_conv_max_pool_breaks_ties_like_torch():
    from mapscope.cnn.conv_pool import conv_max_pool

    # the sizes of a case above (kernels compiled once): 3 -> 5 channels, 5x5 kernels, 3x3 pool
    conv = torch.nn.Conv2d(3, 5, 5)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 2, 2] = 1.0  # every output = the centre pixel of channel 0
    x = torch.stack([torch.ones(13, 13), torch.randn(13, 13), torch.randn(13, 13)]).unsqueeze(0)
    max_pool = torch.nn.MaxPool2d(3)  # every window a tie
    # which pixel wins shows in the gradient of the weights that read channels 1 and 2
    want = torch.autograd.grad(max_pool(conv(x)).sum(), conv.weight)[0]
    have = torch.autograd.grad(conv_max_pool(x, conv, max_pool).sum(), conv.weight)[0]
    torch.testing.assert_close(have, want)
    # the sparse path (input with gradient) routes ties to the same pixel of the input gradient
    x.requires_grad_()
    want = torch.autograd.grad(max_pool(conv(x)).sum(), (x, conv.weight))
    have = torch.autograd.grad(conv_max_pool(x, conv, max_pool).sum(), (x, conv.weight))
    for w, h in zip(want, have, strict=True):
        torch.testing.assert_close(h, w)


def test_fused_gradient_has_the_weight_layout():
    from mapscope.cnn.conv_pool import conv_max_pool

    conv = torch.nn.Conv2d(3, 5, 5).to(memory_format=torch.channels_last)  # a case's sizes
    x = torch.randn(2, 3, 17, 17).contiguous(memory_format=torch.channels_last)
    out = conv_max_pool(x, conv, torch.nn.MaxPool2d(3))
    assert out.is_contiguous(memory_format=torch.channels_last)
    grad = torch.autograd.grad(out.sum(), conv.weight)[0]
    assert grad.stride() == conv.weight.stride()  # fused Adam steps weight and grad in one pass


def test_fused_path_only_where_exact():
    from mapscope.cnn.conv_pool import applies

    conv, max_pool = torch.nn.Conv2d(1, 4, 3), torch.nn.MaxPool2d(2)
    x = torch.randn(2, 1, 28, 28)
    assert applies(conv, max_pool, x)
    assert applies(conv, max_pool, x.clone().requires_grad_())  # deeper layers: sparse backward
    assert not applies(conv, max_pool, x.bfloat16())
    assert not applies(conv, max_pool, x.double())
    assert not applies(torch.nn.Conv2d(1, 4, 3, stride=2), max_pool, x)
    assert not applies(conv, torch.nn.MaxPool2d(2, stride=1), x)
    assert not applies(conv, torch.nn.AvgPool2d(2), x)
    assert not applies(torch.nn.Conv2d(1, 4, 4, padding="same"), max_pool, x)  # uneven padding


@pytest.mark.parametrize(
    ("n_in", "n_out", "side", "padding", "bias", "channels_last"),
    [
        (64, 128, 5, "valid", True, True),  # Conv2D_3 of the reference network
        (64, 128, 3, 1, True, True),  # padding as the spec builds it: 3x3 map
        (128, 64, 3, "same", False, False),  # "same" padding, no bias, NCHW input
    ],
)
def test_small_map_convolution_as_matmul_equals_torch(
    n_in, n_out, side, padding, bias, channels_last
):
    from mapscope.cnn.conv_matmul import applies, conv_matmul

    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    conv = torch.nn.Conv2d(n_in, n_out, 3, padding=padding, bias=bias)
    conv = conv.to(memory_format=layout)
    x = torch.randn(7, n_in, side, side).contiguous(memory_format=layout).requires_grad_()
    assert applies(conv, x)
    expected, got = conv(x), conv_matmul(x, conv)
    torch.testing.assert_close(got, expected)
    assert got.is_contiguous(memory_format=torch.channels_last)  # as oneDNN writes it
    upstream = torch.randn_like(expected)
    params = (x, conv.weight) + ((conv.bias,) if bias else ())
    want = torch.autograd.grad(expected, params, upstream)
    have = torch.autograd.grad(got, params, upstream)
    for name, w, h in zip(("input", "weight", "bias"), want, have, strict=False):
        assert_sums_close(h, w, msg=name)
    assert have[1].stride() == conv.weight.stride()  # fused Adam steps weight and grad in one pass


def test_small_map_convolution_as_matmul_under_bf16_autocast():
    """In training under bf16 autocast Conv2D_3 gets bf16 maps; the products run in bf16 as
    oneDNN's would, the filters' gradient comes back in float32. Compared with an exact float32
    computation from the same bf16-rounded numbers, its error stays within bf16 rounding (each
    value rounded at most twice) and within twice torch's own bf16 path on this CPU."""
    from mapscope.cnn.conv_matmul import applies, conv_matmul

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 128, 3).to(memory_format=torch.channels_last)
    x = torch.randn(7, 64, 5, 5).bfloat16().contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert applies(conv, x) and applies(conv, x.float())
        expected, got = conv(x), conv_matmul(x, conv)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected)  # bf16 tolerances: rounding of the sums
    upstream = torch.randn(expected.shape).bfloat16()
    params = (x, conv.weight, conv.bias)
    exact_x = x.detach().float().requires_grad_()
    weight, bias = (p.detach().bfloat16().float().requires_grad_() for p in params[1:])
    exact = torch.autograd.grad(F.conv2d(exact_x, weight, bias), (exact_x, weight, bias), upstream)
    have = torch.autograd.grad(got, params, upstream)
    torch_bf16 = torch.autograd.grad(expected, params, upstream)
    for name, e, h, t in zip(("input", "weight", "bias"), exact, have, torch_bf16, strict=True):
        assert h.dtype == params[("input", "weight", "bias").index(name)].dtype, name
        scale = e.abs().max().item()
        torch_error = (t.float() - e).abs().max().item()
        error = (h.float() - e).abs().max().item()
        assert error <= max(2 * torch_error, 2**-7 * scale), (name, error, torch_error, scale)


def test_convolution_as_matmul_only_where_it_pays():
    from mapscope.cnn.conv_matmul import applies

    conv = torch.nn.Conv2d(64, 128, 3)
    x = torch.randn(2, 64, 5, 5)
    assert applies(conv, x)
    assert not applies(conv, torch.randn(2, 64, 6, 6))  # a 4x4 map: oneDNN is faster
    assert not applies(torch.nn.Conv2d(32, 64, 3), torch.randn(2, 32, 5, 5))  # short patches
    assert not applies(conv, x.double())
    assert not applies(torch.nn.Conv2d(64, 128, 3, stride=2), torch.randn(2, 64, 7, 7))
    assert not applies(torch.nn.Conv2d(64, 128, 4, padding="same"), x)  # uneven padding
    assert not applies(conv, x.bfloat16())  # bf16 maps only under autocast


@pytest.mark.parametrize("m", [2, 3])
def test_winograd_transforms_give_the_convolution_exactly(m):
    """A^T [(G g) * (B^T d)] is the 1-D convolution of the tile d with the kernel g: the
    matrices are exact (up to float32's rounding of 1/6), for any numbers."""
    from mapscope.cnn.winograd_kernels import KERNEL, transforms

    output, filter_, data = (t.astype(np.float64) for t in transforms(m))
    rng = np.random.default_rng(0)
    for _ in range(20):
        tile, kernel = rng.normal(size=m + KERNEL - 1), rng.normal(size=KERNEL)
        want = np.correlate(tile, kernel, mode="valid")  # y_i = sum_k g_k d_(i+k), as conv2d
        np.testing.assert_allclose(output @ ((filter_ @ kernel) * (data @ tile)), want, atol=1e-6)
    assert set(np.unique(data)) <= set(range(-3, 4))  # B^T: small integers, no 1e-16 residue


@pytest.mark.parametrize(
    ("n_in", "n_out", "side", "padding", "bias", "channels_last"),
    [
        (64, 128, 5, "valid", True, True),  # Conv2D_3 of the reference network: one tile
        (64, 128, 3, 1, True, True),  # padding as the spec builds it: 3x3 map
        (8, 16, 8, "valid", False, False),  # 2x2 overlapping tiles, no bias, NCHW input
    ],
)
def test_winograd_convolution_equals_torch(n_in, n_out, side, padding, bias, channels_last):
    from mapscope.cnn.winograd import applies, conv_winograd

    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    conv = torch.nn.Conv2d(n_in, n_out, 3, padding=padding, bias=bias).to(memory_format=layout)
    x = torch.randn(7, n_in, side, side).contiguous(memory_format=layout).requires_grad_()
    assert applies(conv, x)
    expected, got = conv(x), conv_winograd(x, conv)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(expected)
    params = (x, conv.weight) + ((conv.bias,) if bias else ())
    want = torch.autograd.grad(expected, params, upstream)
    have = torch.autograd.grad(got, params, upstream)
    for name, w, h in zip(("input", "weight", "bias"), want, have, strict=False):
        assert_sums_close(h, w, msg=name)
    assert have[1].stride() == conv.weight.stride()  # fused Adam steps weight and grad in one pass


@pytest.mark.parametrize(
    ("n_in", "n_out", "side", "padding", "relu"),
    [
        (32, 64, 12, "valid", True),  # Conv2D_2 + Max_Pool_2 as training cuts its input
        (32, 64, 13, "valid", True),  # an odd map (11x11): the pool drops the last row
        (3, 5, 10, 1, False),  # padding, few channels, no ReLU
    ],
)
def test_winograd_pools_what_torch_pools(n_in, n_out, side, padding, relu):
    """The pooled maps are torch's; each window position is torch's argmax, or, where float
    rounding may order two near-equal values otherwise, a position holding the same value."""
    from mapscope.cnn.conv_matmul import padded
    from mapscope.cnn.winograd import conv_max_pool, pools

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(n_in, n_out, 3, padding=padding).to(memory_format=torch.channels_last)
    x = torch.randn(6, n_in, side, side).contiguous(memory_format=torch.channels_last)
    x_padded = padded(x, conv)
    assert pools(x_padded, conv.weight, 2)
    with torch.no_grad():
        maps = conv(x)
        got, window = conv_max_pool(x_padded, conv.weight, conv.bias, relu)
    pooled, flat_at = F.max_pool2d(maps, 2, return_indices=True)
    expected = torch.relu(pooled) if relu else pooled
    torch.testing.assert_close(got, expected.permute(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    rows, cols = torch.meshgrid(
        torch.arange(pooled.shape[2]), torch.arange(pooled.shape[3]), indexing="ij"
    )
    at = (flat_at // maps.shape[3] - 2 * rows) * 2 + (flat_at % maps.shape[3] - 2 * cols)
    at = at.permute(0, 2, 3, 1).to(torch.int8)
    if relu:
        assert torch.equal(window == -1, expected.permute(0, 2, 3, 1) <= 0)
    on = window >= 0
    # (N, rows, cols, K, 4): each pooling window's values, in window-position order
    windows = maps.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2).permute(0, 2, 3, 1, 4)
    chosen = windows.gather(-1, window.clamp_min(0).long().unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(chosen[on], pooled.permute(0, 2, 3, 1)[on], rtol=1e-5, atol=1e-5)
    assert (window[on] == at[on]).float().mean() > 0.999


def test_winograd_only_where_it_applies():
    from mapscope.cnn.winograd import applies, pools

    conv = torch.nn.Conv2d(64, 128, 3)
    x = torch.randn(2, 64, 5, 5)
    assert applies(conv, x)
    assert applies(conv, torch.randn(2, 64, 11, 11))  # a 9x9 map: 3x3 blocks
    assert not applies(conv, torch.randn(2, 64, 6, 6))  # a 4x4 map is no whole 3x3 blocks
    assert not applies(torch.nn.Conv2d(64, 128, 5), torch.randn(2, 64, 7, 7))
    assert not applies(torch.nn.Conv2d(64, 128, 3, stride=2), torch.randn(2, 64, 7, 7))
    assert not applies(conv, x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 keeps the bf16 paths
        assert not applies(conv, x)
        assert not pools(torch.randn(2, 32, 12, 12), torch.randn(64, 32, 3, 3), 2)
    assert pools(torch.randn(2, 32, 12, 12), torch.randn(64, 32, 3, 3), 2)
    assert not pools(torch.randn(2, 32, 12, 12), torch.randn(64, 32, 3, 3), 3)
    assert not pools(torch.randn(2, 32, 12, 12), torch.randn(64, 32, 5, 5), 2)


def test_conv2d_2_takes_winograd_only_below_avx512(monkeypatch):
    """In a step, pooling by F(2x2, 3x3) beat oneDNN's float32 convolution held to AVX2 and
    lost to it with AVX-512: the deeper layer's forward follows torch's CPU capability."""
    from mapscope.cnn import conv_pool, winograd

    calls, real = [], winograd.conv_max_pool
    monkeypatch.setattr(winograd, "conv_max_pool", lambda *a: calls.append(a) or real(*a))
    conv = torch.nn.Conv2d(32, 64, 3).to(memory_format=torch.channels_last)
    x = torch.randn(2, 32, 12, 12).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    expected = torch.relu(F.max_pool2d(conv(x), 2))
    for capability, taken in [("AVX512", False), ("AVX2", True), ("DEFAULT", True)]:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        calls.clear()
        got = conv_pool.conv_max_pool(x, conv, torch.nn.MaxPool2d(2), None, True)
        assert bool(calls) == taken, capability
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_training_reads_only_what_later_layers_use():
    from mapscope.cnn.build import read_extents

    spec = default_spec()
    extents = dict(zip(spec.layer_names, read_extents(spec), strict=True))
    # 13x13 -> Conv2D_2 (11x11) -> floor 2x2 pool (5x5) reads 10x10, which needs 12x12 input
    assert extents["Max_Pool_1"] == (12, 12)
    assert extents["Conv2D_2"] == (10, 10)
    assert extents["Max_Pool_2"] is None and extents["Dense_1"] is None
    raw = spec.to_dict()
    raw["layers"][2]["padding"] = "same"
    padded = spec_from_dict(raw)
    assert dict(zip(padded.layer_names, read_extents(padded), strict=True))["Max_Pool_1"] is None


def test_auto_precision_is_bf16_only_where_bf16_products_are_faster(monkeypatch):
    from mapscope import device
    from mapscope.device import pick_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "onednn_uses_amx", lambda: False)
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda: 0.5)  # AVX512-BF16, half width
    assert pick_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda: 4.0)  # full-width bf16 units
    assert pick_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda: 0.5)
    monkeypatch.setattr(device, "onednn_uses_amx", lambda: True)
    assert pick_precision("auto", cpu) == "bf16"
    assert pick_precision("fp32", cpu) == "fp32"
    with pytest.raises(ConfigError, match="auto, fp32 or bf16"):
        pick_precision("fp16", cpu)


def test_bf16_speedup_is_measured_once_and_zero_without_bf16_instructions(monkeypatch):
    from mapscope.device import bf16_matmul_speedup

    bf16_matmul_speedup.cache_clear()
    measured = bf16_matmul_speedup()
    assert measured >= 0 and bf16_matmul_speedup() == measured  # one measurement per process
    bf16_matmul_speedup.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert bf16_matmul_speedup() == 0.0
    bf16_matmul_speedup.cache_clear()


def test_emulated_bf16_is_told_by_one_product(monkeypatch):
    """Where bf16 products are emulated (the flag, but oneDNN held to AVX2: 150 times as slow
    as float32 ones), the speed-up is read off one timed product, not forty."""
    import time

    from mapscope.device import bf16_matmul_speedup

    mm, bf16_products = torch.mm, []

    def emulated(a, b):
        if a.dtype == torch.bfloat16:
            bf16_products.append(a.shape)
            time.sleep(0.25)  # far slower than 20 float32 products on any CPU
        return mm(a, b)

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch, "mm", emulated)
    bf16_matmul_speedup.cache_clear()
    try:
        assert bf16_matmul_speedup() < 0.5 and len(bf16_products) == 2  # warm-up, timed one
    finally:
        bf16_matmul_speedup.cache_clear()


def test_schedules():
    assert learning_rate("power", 1.0, 100, 1000, 1.0, 100) == pytest.approx(0.5)
    assert learning_rate("exponential", 1.0, 200, 1000, 0.5, 100) == pytest.approx(0.25)
    peak = max(learning_rate("onecycle", 1.0, s, 1000, 1, 1) for s in range(1000))
    assert peak == pytest.approx(1.0)
    assert learning_rate("onecycle", 1.0, 999, 1000, 1, 1) < 1e-3


def test_cnn_run_folder(cnn_run, mnist):
    files = Run.open(cnn_run).files
    metrics = read_json(files["metrics"])
    history = read_json(files["history"])
    assert metrics["test_accuracy"] > 0.9 and metrics["epochs"] == 1
    assert {"test_loss", "train_seconds", "seed", "versions", "data_checksums"} <= set(metrics)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(history[0])
    for role in ("model", "initial", "split", "scaler", "curves", "checkpoint", "epoch"):
        assert files[role].is_file(), role
    # the committed epoch's files live together in the folder the pointer names
    assert read_json(files["epoch"]) == {"epoch": 1}
    assert files["model"].parent == cnn_run / "epochs" / "0001" == files["history"].parent


def test_predict_probabilities(cnn_run, real_data):
    run = Run.open(cnn_run)
    net, bundle = run.module(), run.bundle(real_data)
    probs = predict_proba(net, bundle.inputs("test", [1302, 0, 4], layout="nchw"))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert probs.argmax(1).tolist() == [1, 7, 4]


def test_predict_drawing(cnn_run, real_data, tmp_path, mnist):
    from PIL import Image

    from mapscope.cnn.predict import predict_drawing

    ink_on_paper = 255 - mnist.x[60000 + 4]  # a 4, drawn dark on white and scaled up
    Image.fromarray(ink_on_paper).resize((112, 112)).save(tmp_path / "four.png")
    assert read_drawing(tmp_path / "four.png").shape == (1, 28, 28)
    probs = predict_drawing(
        Run.open(cnn_run).module(), Run.open(cnn_run).bundle(real_data), tmp_path / "four.png"
    )
    assert probs.argmax() == 4


def test_corrupt_and_foreign_model_files(cnn_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cnn_run, broken)
    (broken / "epochs/0001/model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(RunError, match="not a readable safetensors model file"):
        Run.open(broken)
    with pytest.raises(RunError, match="no config.json"):
        Run.open(tmp_path)


def test_resume_continues_with_optimizer_state(real_data, tmp_path):
    from mapscope.cnn.train import TrainConfig, train

    short = {"max_train": 320, "max_test": 1000, "schedule": "power", "decay_steps": 10}
    cfg = TrainConfig(epochs=1, threads=2, **short)
    train(tmp_path / "r", cfg, data_root=real_data)
    train(tmp_path / "r", TrainConfig(epochs=1), resume=True, data_root=real_data)
    history = read_json(Run.open(tmp_path / "r").files["history"])
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["lr"] < history[0]["lr"]  # the schedule went on from step 10, not from 0
    # same seed, same machine: an uninterrupted 2-epoch run gives the same weights, bit for bit
    train(tmp_path / "s", TrainConfig(epochs=2, threads=2, **short), data_root=real_data)
    whole_history = read_json(Run.open(tmp_path / "s").files["history"])
    assert [{**h, "seconds": 0} for h in whole_history] == [{**h, "seconds": 0} for h in history]
    resumed, whole = (Run.open(tmp_path / run).module().state_dict() for run in ("r", "s"))
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[name], whole[name]) for name in resumed)


def test_resume_keeps_the_precision_the_run_started_in(real_data, tmp_path, monkeypatch):
    from mapscope import device
    from mapscope.cnn.train import TrainConfig, train

    monkeypatch.setattr(device, "onednn_uses_amx", lambda: False)
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda: 4.0)
    short = TrainConfig(epochs=1, max_train=256, max_test=500)
    first = train(tmp_path / "r", short, SMALL_CNN, data_root=real_data)
    assert first["precision"] == "bf16"
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda: 0.5)  # "auto" now says fp32
    again = train(tmp_path / "r", TrainConfig(epochs=1), resume=True, data_root=real_data)
    assert again["precision"] == "bf16" and again["epochs"] == 2


def test_diverging_run_stops_without_a_model(real_data, tmp_path):
    from mapscope.cnn.train import TrainConfig, train

    with pytest.raises(TrainingDiverged, match="lower --lr"):
        train(
            tmp_path / "d",
            TrainConfig(epochs=1, max_train=3200, lr=1e6, optimizer="sgd", schedule="none"),
            data_root=real_data,
        )
    assert not (tmp_path / "d").exists()  # a new run appears only with its first epoch
    assert not list(tmp_path.iterdir())  # no staging folder or lock left behind


def test_shipped_reference_config_is_the_default_network():
    from pathlib import Path

    path = Path(__file__).parent.parent / "configs" / "reference.toml"
    assert load_spec(path) == default_spec()


def test_ctrl_c_keeps_the_last_finished_epoch(real_data, tmp_path):
    from mapscope.cnn.train import TrainConfig, train

    def interrupt_after_first(history):
        if len(history) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            tmp_path / "i",
            TrainConfig(epochs=3, max_train=640, max_test=2000),
            SMALL_CNN,  # what is kept is the question here, not the network
            data_root=real_data,
            callbacks=[interrupt_after_first],
        )
    kept = Run.open(tmp_path / "i")
    history = read_json(kept.files["history"])
    assert [h["epoch"] for h in history] == [1]
    bundle = kept.bundle(real_data)  # the model kept is the one epoch 1 scored
    first = np.arange(2000)  # validated on the first 2000 test images
    predicted = kept.predictor().predict(bundle, "test", first)
    assert (predicted == bundle.labels("test", first)).mean() == pytest.approx(
        history[0]["val_accuracy"]
    )
    assert not list((tmp_path / "i").rglob(".*.tmp"))  # no temp file left behind
    train(tmp_path / "i", TrainConfig(epochs=1), resume=True, data_root=real_data)
    assert len(read_json(Run.open(tmp_path / "i").files["history"])) == 2


def test_cli_train_predict_summary(cli, tmp_path):
    import json

    def cnn(*args):
        return cli("cnn", *args)

    run = tmp_path / "run"
    done = cnn(
        "train",
        "--epochs",
        "1",
        "--max-train",
        "2000",
        "--optimizer",
        "rmsprop",
        "--lr",
        "1e-3",
        "--schedule",
        "power",
        "--resplit",
        "--seed",
        "5",
        "--out",
        str(run),
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {Run.open(run).files['curves']}" in done.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["split_mode"] == "resplit" and config["train"]["optimizer"] == "rmsprop"
    done = cnn("predict", "--model", str(run), "--index", "1302", "--index", "7", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["source"] for r in results] == ["test[1302]", "test[7]"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in results)
    done = cnn("summary", "--model", str(run))
    assert "208,982" in done.stdout and "18x18" in done.stdout
    bad = cnn("train", "--optimizer", "adagrad", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "optimizer 'adagrad' unknown" in bad.stderr


def test_threads_default_to_the_cores_free_at_the_start(monkeypatch):
    import os

    from mapscope import device

    monkeypatch.delenv(device.THREADS_ENV, raising=False)  # the suite's workers set it
    assert device.pick_threads(3) == 3  # given: taken as is
    cores = os.cpu_count()
    assert 0.0 <= device._busy_cores(0.05) <= cores + 0.01  # measured from /proc/stat
    monkeypatch.setattr(device, "_busy_cores", lambda window: 0.0)
    assert device.pick_threads() == min(cores, len(os.sched_getaffinity(0)))
    monkeypatch.setattr(device, "_busy_cores", lambda window: float(cores))
    assert device.pick_threads() == 1  # never fewer than one


def test_mapscope_threads_fixes_the_default_and_a_bad_value_is_named(monkeypatch):
    from mapscope import device

    monkeypatch.setattr(device, "_busy_cores", lambda window: 0.0)
    monkeypatch.setenv(device.THREADS_ENV, "3")
    assert device.pick_threads() == 3 and device.pick_threads(2) == 2  # an option still wins
    monkeypatch.setenv(device.THREADS_ENV, "")
    assert device.pick_threads() == min(os.cpu_count(), len(os.sched_getaffinity(0)))
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(device.THREADS_ENV, bad)
        with pytest.raises(ConfigError, match=f"MAPSCOPE_THREADS='{bad}' is not a thread count"):
            device.pick_threads()


def test_training_gives_the_thread_count_back(real_data, tmp_path):
    import torch

    from mapscope.cnn.train import TrainConfig, train

    before = torch.get_num_threads()
    metrics = train(
        tmp_path / "r",
        TrainConfig(epochs=1, max_train=256, max_test=500, threads=1),
        data_root=real_data,
    )
    assert metrics["threads"] == 1 and torch.get_num_threads() == before


def test_the_kernel_jobs_list_each_kernel_once_the_slowest_first_and_run_none():
    """A pass over the network inside ``recording()`` lists the kernels a training compiles,
    each signature once, the first layer's (unrolled, the slowest to compile) first, and runs
    none of them; outside it the factories hand out numba's kernels again."""
    import numba

    from mapscope.cnn import conv_pool_kernels
    from mapscope.cnn.kernel_jobs import recording
    from mapscope.cnn.precompile import jobs_of

    for precision in ("fp32", "bf16"):
        jobs = jobs_of(default_spec(), (precision,))
        assert len(set(jobs)) == len(jobs) >= 4
        assert [(job.factory, job.kernel) for job in jobs[:2]] == [
            ("first_layer_kernels", "forward"),
            ("first_layer_kernels", "backward"),
        ]
        assert jobs[0].args == (1, 32, 3, 2, True) and not any(job.slow for job in jobs[2:])
        assert any(job.factory == "deeper_layer_kernels" for job in jobs)  # Conv2D_2's
    out = np.full((1, 2, 2, 32), 7.0, np.float32)
    window = np.zeros((1, 2, 2, 32), np.int8)
    pixels, kernel = np.ones((1, 5, 5, 1), np.float32), np.ones((3, 3, 1, 32), np.float32)
    with recording() as jobs:
        kernels = conv_pool_kernels.first_layer_kernels(1, 32, 3, 2, True)
        kernels.forward(pixels, kernel, np.zeros(32, np.float32), out, window)
    assert (out == 7.0).all()  # not run
    assert jobs[0].signature[0] == ("array", "float32", 4, "C", True, True)
    forward = conv_pool_kernels.first_layer_kernels(1, 32, 3, 2, True).forward
    assert isinstance(forward, numba.core.registry.CPUDispatcher)


def test_precompile_covers_every_kernel_a_default_training_uses(real_data, tmp_path):
    """After ``python -m mapscope.cnn.precompile`` (``make setup`` runs it), a default training
    compiles nothing new: each kernel it calls already has its signature, whichever float32
    path ``Conv2D_2`` takes at the instruction set torch runs at."""
    from mapscope.cnn import conv_pool_kernels, winograd_kernels
    from mapscope.cnn.precompile import compile_kernels
    from mapscope.cnn.train import TrainConfig, train

    compile_kernels(every_isa=True)
    kernels = [*conv_pool_kernels.first_layer_kernels(1, 32, 3, 2, True)]
    kernels += [*conv_pool_kernels.deeper_layer_kernels(32, 64, 3, 2, True)]
    kernels += [*winograd_kernels.transform_kernels(3)]  # Conv2D_3 in float32
    # Conv2D_2 in float32: by Winograd below AVX-512, by oneDNN and the pool kernel above
    kernels += [
        *winograd_kernels.transform_kernels(2)[:2],
        winograd_kernels.pooling_kernel(2, True),
    ]
    before = {k: len(k.signatures) for k in kernels}
    assert all(before.values())
    assert before[kernels[2]] == 2  # the deeper max-pool: float32, and bf16's int16 bits
    for precision in ("fp32", "bf16"):
        config = TrainConfig(epochs=1, max_train=256, max_test=256, precision=precision)
        train(tmp_path / precision, config, data_root=real_data)
    assert {k: len(k.signatures) for k in kernels} == before


def test_a_classifier_is_measured_against_the_class_frequencies(real_data, tmp_path, capsys):
    """A classifier's ``constant_loss`` is the cross-entropy of always answering the training
    labels' frequencies; a run that has learned something stays quiet about it."""
    from mapscope.cnn.train import TrainConfig, train

    config = TrainConfig(epochs=1, max_train=640, max_test=500, threads=1)
    metrics = train(tmp_path / "r", config, SMALL_CNN, data_root=real_data)
    run = Run.open(tmp_path / "r")
    bundle = run.bundle()
    counts = np.bincount(bundle.labels("train", np.arange(640)), minlength=10)
    log_p = np.log(counts / counts.sum())
    expected = -log_p[bundle.labels("test", np.arange(500))].mean()
    assert metrics["constant_loss"] == pytest.approx(expected, rel=1e-4)
    assert read_json(run.files["metrics"])["constant_loss"] == metrics["constant_loss"]
    assert metrics["test_loss"] < 0.9 * metrics["constant_loss"]
    assert "learned little" not in capsys.readouterr().out
