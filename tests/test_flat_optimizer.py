"""The optimizers over one buffer of all parameters (training/flat.py) step as torch's own do,
and their checkpoints are torch's per-parameter format, read both ways."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from small_nets import SMALL_CNN

from mapscope.cnn.build import build
from mapscope.training.flat import FlatAdam, FlatSGD, can_flatten
from mapscope.training.optimizers import make_optimizer

PLAIN = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def _net():
    return build(SMALL_CNN, seed=3).to(memory_format=torch.channels_last)


def _settings(name):
    return {"lr": 1e-2, "fused": True, **({"momentum": 0.9} if name == "sgd" else {})}


def _steps(net, optimizer, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 1, 28, 28, generator=generator)
        y = torch.randint(0, 10, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_flat_optimizer_steps_as_torchs(name):
    flat_net, plain_net = _net(), _net()
    flat = make_optimizer(name, flat_net.parameters(), 1e-2, 0.9)
    assert isinstance(flat, FlatAdam if name == "adam" else FlatSGD)
    plain = PLAIN[name](plain_net.parameters(), **_settings(name))
    _steps(flat_net, flat, 5)
    _steps(plain_net, plain, 5)
    for (key, a), b in zip(
        flat_net.state_dict().items(), plain_net.state_dict().values(), strict=True
    ):
        # the same arithmetic; only the fused kernel's scalar tail may round a number apart
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=key)
    conv = flat_net.layers["Conv2D_1"].inner.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)  # the layout is kept
    assert conv.untyped_storage().data_ptr() == flat.flat_.untyped_storage().data_ptr()


@pytest.mark.parametrize("name", ["adam", "nadam", "adamax"])
def test_the_betas_reach_the_adam_family(name):
    """``beta1`` and ``beta2`` reach the optimizer, and the flat Adam steps with them as torch's
    Adam does."""
    net, plain_net = _net(), _net()
    optimizer = make_optimizer(name, net.parameters(), 1e-2, 0.9, beta1=0.8, beta2=0.95)
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.95)
    if name != "adam":
        return
    plain = torch.optim.Adam(plain_net.parameters(), lr=1e-2, betas=(0.8, 0.95), fused=True)
    default = make_optimizer(name, _net().parameters(), 1e-2, 0.9)
    assert default.param_groups[0]["betas"] == (0.9, 0.999)  # torch's default
    _steps(net, optimizer, 5)
    _steps(plain_net, plain, 5)
    for a, b in zip(net.parameters(), plain_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_zero_grad_zeroes_the_views_in_place():
    net = _net()
    optimizer = make_optimizer("adam", net.parameters(), 1e-2, 0.9)
    _steps(net, optimizer, 1)
    grads = [p.grad for p in net.parameters()]
    assert any(g.abs().sum() > 0 for g in grads)
    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is g and not g.any() for p, g in zip(net.parameters(), grads, strict=True))


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_checkpoints_cross_between_flat_and_plain(name):
    """A flat optimizer's state loads into torch's and the other way; both then step alike."""
    net = _net()
    flat = make_optimizer(name, net.parameters(), 1e-2, 0.9)
    _steps(net, flat, 3)
    saved = flat.state_dict()
    params = list(net.parameters())
    assert sorted(saved["state"]) == list(range(len(params)))
    for i, p in enumerate(params):
        for key, value in saved["state"][i].items():
            if key != "step":
                assert value.shape == p.shape and value.stride() == p.stride()

    plain_net = _net()
    plain_net.load_state_dict(net.state_dict())
    plain = PLAIN[name](plain_net.parameters(), **_settings(name))
    plain.load_state_dict(saved)
    again_net = _net()
    again_net.load_state_dict(net.state_dict())
    again = make_optimizer(name, again_net.parameters(), 1e-2, 0.9)
    again.load_state_dict(plain.state_dict())
    _steps(plain_net, plain, 2, seed=1)
    _steps(again_net, again, 2, seed=1)
    for a, b in zip(again_net.state_dict().values(), plain_net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    if name == "adam":  # every parameter counts its own steps
        steps = [plain.state[p]["step"].item() for p in plain_net.parameters()]
        assert steps == [5.0] * len(steps)


def test_a_state_for_other_parameters_is_refused():
    net = _net()
    optimizer = make_optimizer("adam", net.parameters(), 1e-2, 0.9)
    _steps(net, optimizer, 1)
    good = optimizer.state_dict()
    wrong_shape = {**good, "state": {**good["state"], 0: {**good["state"][0]}}}
    wrong_shape["state"][0]["exp_avg"] = torch.zeros(3)
    fewer = {**good, "state": {k: v for k, v in good["state"].items() if k}}
    other = {**good, "param_groups": [{**good["param_groups"][0], "params": [0, 1]}]}
    for bad in (wrong_shape, fewer, other, {"state": [], "param_groups": []}):
        with pytest.raises(ValueError):
            optimizer.load_state_dict(bad)


def test_only_dense_parameters_of_one_kind_are_flattened():
    dense = torch.nn.Parameter(torch.zeros(4, 3))
    assert can_flatten([dense, torch.nn.Parameter(torch.zeros(2, 3, 5, 5))])
    assert not can_flatten([dense, torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64))])
    assert not can_flatten([torch.nn.Parameter(torch.zeros(4, 6)[:, ::2])])  # gaps
    assert not can_flatten([])
    rmsprop = make_optimizer("rmsprop", [dense], 1e-2, 0.9)
    assert type(rmsprop) is torch.optim.RMSprop


def test_sgd_without_momentum_keeps_no_buffer():
    net = _net()
    optimizer = make_optimizer("sgd", net.parameters(), 1e-2, 0.0)
    _steps(net, optimizer, 2)
    saved = optimizer.state_dict()
    assert saved["param_groups"][0]["params"] == list(range(len(list(net.parameters()))))
    assert all(v is None for entry in saved["state"].values() for v in entry.values())
    before = [p.detach().clone() for p in net.parameters()]
    optimizer.load_state_dict(saved)
    _steps(net, optimizer, 1)  # and it still steps
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize(
    "settings", [{}, {"weight_decay": 0.01, "maximize": True}, {"amsgrad": True}]
)
def test_flat_adams_direct_step_is_torchs_own_step_bit_for_bit(settings):
    """FlatAdam.step calls the fused kernel itself; torch's Adam.step, on a twin, is the
    reference (settings the direct call does not cover, like amsgrad, go through it anyway)."""
    nets = _net(), _net()
    direct, reference = (
        FlatAdam(net.parameters(), lr=1e-2, fused=True, **settings) for net in nets
    )
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        x = torch.randn(8, 1, 28, 28, generator=generator)
        y = torch.randint(0, 10, (8,), generator=generator)
        for net, optimizer in zip(nets, (direct, reference), strict=True):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
        direct.step()
        torch.optim.Adam.step(reference)
    assert torch.equal(direct.flat_, reference.flat_)
    for key, value in direct.state[direct.flat_].items():
        assert torch.equal(value, reference.state[reference.flat_][key]), key


def test_flat_adam_runs_step_hooks_around_each_step():
    net = _net()
    optimizer = make_optimizer("adam", net.parameters(), 1e-2, 0.9)
    calls = []
    optimizer.register_step_pre_hook(lambda *_: calls.append("pre"))
    optimizer.register_step_post_hook(lambda *_: calls.append("post"))
    before = optimizer.flat_.clone()
    _steps(net, optimizer, 2)
    assert calls == ["pre", "post", "pre", "post"]
    assert not torch.equal(optimizer.flat_, before)


def test_a_training_with_flat_adam_never_imports_torch_dynamo():
    """torch's Optimizer imports torch._dynamo on the first call of its wrapped methods (seconds
    of a short CLI training); FlatAdam's make, step, checkpoint and resume stay clear of it."""
    script = """
import sys
import torch
from small_nets import SMALL_CNN
from mapscope.cnn.build import build
from mapscope.training.optimizers import make_optimizer
net = build(SMALL_CNN, seed=3)
optimizer = make_optimizer("adam", net.parameters(), 1e-2, 0.9)
for _ in range(2):
    optimizer.zero_grad()
    net(torch.randn(4, 1, 28, 28)).sum().backward()
    optimizer.step()
optimizer.load_state_dict(optimizer.state_dict())
print("torch._dynamo" in sys.modules)
"""
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False", "the training imported torch._dynamo"
