"""The house rules: the import graph runs one way, the fast path lives outside the model,
inspection leaves the caller's module as it found it, and the run folder has one owner."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mapscope
from mapscope.cnn.build import Activated, build
from mapscope.cnn.fast import FusedConvPool, fast_path
from mapscope.cnn.spec import default_spec
from mapscope.inspect.oip import run_oip
from mapscope.inspect.taps import layer_outputs
from mapscope.runs import KINDS, Run

# cli -> workflows -> runs -> models / inspect -> data / report -> io / errors
LAYERS = [
    (5, ("mapscope.cli", "mapscope.__main__")),
    (
        4,
        (
            "mapscope.evaluate",
            "mapscope.inspect.compare_run",
            "mapscope.inspect.oip.run",
            "mapscope.inspect.match_runs",
            "mapscope.inspect.attribution_run",
            "mapscope.atlas",
            "mapscope.ae.workflows",
            "mapscope.sweep",
        ),
    ),
    (3, ("mapscope.runs",)),
    (2, ("mapscope.cnn", "mapscope.mlp", "mapscope.cluster", "mapscope.inspect", "mapscope.ae")),
    (1, ("mapscope.data", "mapscope.report", "mapscope.epochs")),
    (
        0,
        (
            "mapscope.io",
            "mapscope.errors",
            "mapscope.metrics",
            "mapscope.runfolder",
            "mapscope.runlock",
            "mapscope.checks",
            "mapscope.weights",
            "mapscope",
        ),
    ),
]


def _layer(module: str) -> int:
    for level, prefixes in LAYERS:  # the most specific prefixes come first in each level
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} has no layer in LAYERS")


def _imports(path: Path, module: str):
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions too
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mapscope"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("mapscope"))


def test_import_graph_runs_one_way():
    root = Path(mapscope.__file__).parent
    upward = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for target in _imports(path, module):
            if _layer(target) > _layer(module):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_evaluate_and_cli_know_no_run_kind():
    root = Path(mapscope.__file__).parent
    for folder in ("evaluate", "cli"):
        for path in (root / folder).glob("*.py"):
            text = path.read_text()
            if folder == "evaluate":
                assert not any(f'"{kind}"' in text for kind in KINDS), f"{path} branches on kind"
            for name in ("model.npz", "model.safetensors", "cluster_features.npz", "split.npz"):
                assert name not in text, f"{path} names the run file {name}"


def test_network_forward_is_plain_and_the_fast_path_swaps_back():
    torch.manual_seed(0)
    net = build(default_spec(), seed=3).train()
    x = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    plain = net(x)
    with fast_path(net):
        assert isinstance(net.layers["Conv2D_1"], FusedConvPool)
        fast = net(x)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    assert all(isinstance(net.layers[n], Activated) for n in ("Conv2D_1", "Conv2D_2", "Conv2D_3"))
    assert isinstance(net.layers["Max_Pool_1"], torch.nn.MaxPool2d)
    with pytest.raises(RuntimeError), fast_path(net):  # swapped back after an error too
        raise RuntimeError
    assert isinstance(net.layers["Conv2D_1"], Activated)


def test_training_restores_the_denormal_flag(real_data, tmp_path):
    from mapscope.cnn.train import TrainConfig, flushing_denormals, train

    torch.set_flush_denormal(False)
    train(tmp_path / "r", TrainConfig(epochs=1, max_train=256), data_root=real_data)
    assert not flushing_denormals()


def _state(module):
    return (
        [m.training for m in module.modules()],
        [p.requires_grad for p in module.parameters()],
        [p.stride() for p in module.parameters()],
        [p.clone() for p in module.parameters()],
    )


def test_inspection_leaves_the_callers_module_as_it_was():
    net = build(default_spec(), seed=1).train()  # a notebook's network, mid-training
    before = _state(net)
    x = np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)
    layer_outputs(net, x, ["Conv2D_2", "Dense_1"])
    run_oip(net, "Conv2D_3", [0, 1], steps=3, device="cpu")
    after = _state(net)
    assert before[:3] == after[:3]
    assert all(torch.equal(a, b) for a, b in zip(before[3], after[3], strict=True))
    loss = net(torch.from_numpy(x)).sum()
    loss.backward()  # it still learns
    assert net.layers["Conv2D_1"].inner.weight.grad is not None


def test_taps_stop_after_the_deepest_layer_asked_for():
    net = build(default_spec()).eval()
    calls = []
    net.layers["Dense_1"].register_forward_pre_hook(lambda *_: calls.append("Dense_1"))
    layer_outputs(net, np.zeros((3, 1, 28, 28), np.float32), ["Conv2D_1", "Max_Pool_1"])
    assert calls == []
    layer_outputs(net, np.zeros((3, 1, 28, 28), np.float32), ["Dense_1"])
    assert calls == ["Dense_1"]


def test_run_handle_for_every_kind(cnn_run, mlp_run, real_data):
    cnn, mlp = Run.open(cnn_run), Run.open(mlp_run)
    assert (cnn.kind, mlp.kind) == ("cnn", "mlp")
    assert {"config", "model", "split", "history", "checkpoint"} <= set(cnn.files)
    assert cnn.layer_names[0] == "Conv2D_1" and mlp.layer_names == ["Dense_1", "Dense_2", "Dense_3"]
    bundle = mlp.bundle(real_data)
    predicted = mlp.predictor().predict(bundle, "test", [0, 1, 2])
    # the MLP's torch view predicts what the numpy MLP predicts
    module = mlp.module()
    assert not module.training
    with torch.no_grad():
        scores = module(torch.from_numpy(bundle.inputs("test", [0, 1, 2])))
    assert scores.argmax(1).tolist() == predicted.tolist()
    acts = mlp.inspection(real_data).activations("Dense_1", "test", [0, 1])
    assert acts.shape == (2, 70)


def test_kind_mismatch_and_unknown_kind(cnn_run, tmp_path):
    from mapscope.errors import RunError

    with pytest.raises(
        RunError, match="holds a 'cnn' run; this command needs a run of kind 'kmeans'"
    ):
        Run.open(cnn_run, "kmeans")
    (tmp_path / "config.json").write_text(json.dumps({"kind": "rnn"}))
    with pytest.raises(RunError, match="unknown run kind 'rnn'"):
        Run.open(tmp_path)


def test_cli_max_train_trains_on_that_many_images(cli, tmp_path):
    done = cli("cnn", "train", "--out", tmp_path / "r", "--epochs", "1", "--max-train", "5000")
    assert done.returncode == 0, done.stderr
    assert "on 5000 images" in done.stdout
    config = json.loads((tmp_path / "r/config.json").read_text())
    metrics = json.loads(Run.open(tmp_path / "r").files["metrics"].read_text())
    assert config["train"]["max_train"] == 5000 and metrics["n_train"] == 5000
    assert f"wrote {tmp_path / 'r' / 'epochs' / '0001' / 'model.safetensors'}" in done.stdout


def test_outputs_get_the_users_umask(tmp_path):
    import os

    from mapscope.io import write_text

    old = os.umask(0o022)
    try:
        assert os.stat(write_text(tmp_path / "a.json", "{}")).st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert os.stat(write_text(tmp_path / "b.json", "{}")).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_starting_the_command_line_does_not_import_what_few_commands_need():
    """Every command pays for what ``mapscope.cli.main`` imports: Dask (sweeps only), the
    Gaussian mixture (ae latent/generate only), scikit-learn (KMeans runs and studies, about
    0.9 s) and numba (the training kernels) load in the commands that use them."""
    code = (
        "import sys, mapscope.cli.main; "
        "print([m for m in ('dask', 'distributed', 'sklearn', 'numba') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
