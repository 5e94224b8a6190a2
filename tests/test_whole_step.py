"""The training step by hand (``cnn/whole_step.py``) against autograd's step through the same
fast path (the same bits) and against plain torch layers (up to float rounding)."""

import pytest
import torch

from mapscope.cnn import whole_step as whole_step_module
from mapscope.cnn.build import build
from mapscope.cnn.fast import fast_path
from mapscope.cnn.spec import Conv, Dense, Dropout, Flatten, NetSpec, Pool, default_spec, validate
from mapscope.cnn.whole_step import whole_step
from mapscope.training.losses import smoothed_cross_entropy

# Every kind of stage and its edge: a padded deeper convolution whose pool reads only part of
# its map (its input gradient is cropped and padded back), a 5x5 small-map convolution with no
# activation before Flatten, and two hidden dense layers. The conv-pool kernels have the
# reference network's sizes, so nothing new is compiled.
VARIED = validate(
    NetSpec(
        (
            Conv("Conv2D_1", 32),
            Pool("Max_Pool_1"),
            Conv("Conv2D_2", 64, padding="same"),
            Pool("Max_Pool_2"),
            Conv("Conv2D_3", 64, kernel=5, activation="linear"),
            Flatten("Flatten"),
            Dense("Dense_1", 40),
            Dense("Dense_2", 30),
            Dense("Dense_3", 10, "softmax"),
        )
    )
)


# The first convolution and pool straight into Flatten and a dense layer: under bf16 the
# gradient reaching the first layer's kernels comes from a bf16 product
SHALLOW = validate(
    NetSpec(
        (
            Conv("Conv2D_1", 32),
            Pool("Max_Pool_1"),
            Flatten("Flatten"),
            Dense("Dense_1", 10, "softmax"),
        )
    )
)


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 28, 28, generator=generator)
    return x.contiguous(memory_format=torch.channels_last), torch.arange(n) % 10


def _autograd_step(net, x, y, smoothing):
    net.zero_grad(set_to_none=True)
    output = net(x)
    with torch.autocast("cpu", enabled=False):
        loss = smoothed_cross_entropy(output.float(), y, smoothing)
    loss.backward()
    return output.detach(), loss.detach()


def _grads(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Each parameter's gradient, by its name outside the fast path (``params``, taken before
    it: the swapped-in modules hold the same parameters under other names)."""
    return {name: p.grad.clone() for name, p in params.items()}


@pytest.mark.parametrize(
    "spec", [default_spec(), VARIED, SHALLOW], ids=["reference", "varied", "shallow"]
)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_whole_step_gives_autograds_step_bit_for_bit(spec, precision):
    net = build(spec, seed=3).to(memory_format=torch.channels_last).train()
    params = dict(net.named_parameters())
    x, y = _images(8)
    bf16 = precision == "bf16"
    with fast_path(net), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        want_output, want_loss = _autograd_step(net, x, y, 0.1)
        want = _grads(params)
        step = whole_step(net, 0.1)
        assert step is not None
        net.zero_grad(set_to_none=True)
        output, loss = step(x, y)
    assert output.dtype == want_output.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert torch.equal(output, want_output) and torch.equal(loss, want_loss)
    for name, grad in _grads(params).items():
        assert torch.equal(grad, want[name]), name
        assert grad.stride() == want[name].stride(), name  # the parameter's layout


def test_whole_step_adds_to_gradients_already_there():
    net = build(default_spec(), seed=3).to(memory_format=torch.channels_last).train()
    params = dict(net.named_parameters())
    x, y = _images(4)
    with fast_path(net):
        step = whole_step(net, 0.0)
        net.zero_grad(set_to_none=True)
        step(x, y)
        once = _grads(params)
        step(x, y)
    for name, grad in _grads(params).items():
        torch.testing.assert_close(grad, 2 * once[name], msg=name)


def test_whole_step_equals_plain_torch_layers():
    """Against the network with no fast path at all: torch's convolutions, pools and autograd."""
    net = build(VARIED, seed=5).to(memory_format=torch.channels_last).train()
    params = dict(net.named_parameters())
    x, y = _images(8)
    want_output, want_loss = _autograd_step(net, x, y, 0.2)
    want = _grads(params)
    with fast_path(net):
        net.zero_grad(set_to_none=True)
        output, loss = whole_step(net, 0.2)(x, y)
    torch.testing.assert_close(output, want_output, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    for name, grad in _grads(params).items():
        scale = max(1.0, want[name].abs().max().item())
        torch.testing.assert_close(grad, want[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def _with(spec: NetSpec, **changes) -> NetSpec:
    from dataclasses import replace

    return validate(replace(spec, **changes))


@pytest.mark.parametrize(
    "spec",
    [
        _with(default_spec(), l2=1e-4),  # a penalty in the loss
        _with(
            default_spec(),
            layers=(
                *default_spec().layers[:6],
                Dropout("Dropout", 0.2),
                *default_spec().layers[6:],
            ),
        ),
        _with(
            default_spec(),
            layers=(Conv("Conv2D_1", 32, activation="sigmoid"), *default_spec().layers[1:]),
        ),
        # the convolution before Flatten on an 11x11 map: torch's, not products over patches
        _with(default_spec(), layers=(*default_spec().layers[:3], *default_spec().layers[5:])),
        # a deeper conv-pool after another: under bf16 its input would be bf16
        _with(
            default_spec(),
            layers=(
                *default_spec().layers[:4],
                Conv("Conv2D_4", 64, padding="same"),
                Pool("Max_Pool_4"),
                Flatten("Flatten"),
                *default_spec().layers[6:],
            ),
        ),
    ],
    ids=["l2", "dropout", "sigmoid", "large-map-before-flatten", "two-deeper-pools"],
)
def test_whole_step_only_where_it_covers_the_network(spec):
    net = build(spec, seed=0)
    with fast_path(net):
        assert whole_step(net, 0.0) is None


def test_training_takes_the_step_by_hand_and_trains_the_same_weights(
    real_data, tmp_path, monkeypatch
):
    """A default training runs the step by hand, and its weights are those of autograd's step."""
    from mapscope.cnn.train import TrainConfig, train
    from mapscope.runs import Run

    calls = []
    original = whole_step_module.WholeStep.__call__

    def counted(self, x, target):
        calls.append(len(x))
        return original(self, x, target)

    config = TrainConfig(epochs=1, max_train=512, max_test=256, label_smoothing=0.1, threads=1)
    monkeypatch.setattr(whole_step_module.WholeStep, "__call__", counted)
    by_hand = train(tmp_path / "by_hand", config, data_root=real_data)
    assert sum(calls) == 512
    monkeypatch.setattr("mapscope.cnn.train.whole_step", lambda net, smoothing: None)
    autograd = train(tmp_path / "autograd", config, data_root=real_data)
    assert sum(calls) == 512  # not called again
    assert by_hand["train_loss"] == autograd["train_loss"]
    weights = [Run.open(tmp_path / name).module().state_dict() for name in ("by_hand", "autograd")]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
