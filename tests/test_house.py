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

# cli -> workflows -> runs -> models / inspect -> training -> data / report -> io / errors
LAYERS = {
    6: ("mapscope.cli", "mapscope.__main__", "mapscope.live"),
    5: ("mapscope.workflows", "mapscope.atlas", "mapscope.sweep"),
    4: ("mapscope.runs",),  # the Run handle and the kind registry
    3: ("mapscope.cnn", "mapscope.mlp", "mapscope.cluster", "mapscope.ae", "mapscope.inspect"),
    2: ("mapscope.training",),
    1: (
        "mapscope.data",
        "mapscope.report",
        "mapscope.device",
        "mapscope.runs.folder",  # writing a run folder: below the models that write runs
        "mapscope.runs.lock",
        "mapscope.runs.epochs",
    ),
    0: (
        "mapscope",
        "mapscope.io",
        "mapscope.errors",
        "mapscope.metrics",
        "mapscope.checks",
        "mapscope.weights",
        "mapscope.history",
        "mapscope.progress",
    ),
}
# the model packages import nothing from each other: what two share lives below both
MODELS = LAYERS[3]
ROOT = Path(mapscope.__file__).parent


def _owner(module: str) -> tuple[int, str]:
    """(layer, package prefix) of a module: its longest prefix in LAYERS."""
    found = [
        (len(p), level, p)
        for level, prefixes in LAYERS.items()
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    if not found:
        raise AssertionError(f"{module} has no layer in LAYERS")
    _, level, prefix = max(found)
    return level, prefix


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions too
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mapscope"):
            for alias in node.names:  # ``from mapscope.runs import epochs`` imports a module
                name = f"{node.module}.{alias.name}"
                yield name if _is_module(name) else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("mapscope"))


def _modules():
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# ``Inspection.live()`` and ``Run.live()`` start the web app from a notebook, as pandas'
# ``DataFrame.plot`` reaches its plotting layer: an import inside the method, never at load
DOORS = {
    ("mapscope.inspect.inspection", "mapscope.live"),
    ("mapscope.runs.run", "mapscope.live"),
}


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mapscope"):
            found.add(node.module)
    return found


def test_import_graph_runs_one_way():
    upward = [
        f"{module} -> {target}"
        for path, module in _modules()
        for target in _imports(path)
        if _owner(target)[0] > _owner(module)[0] and (module, target) not in DOORS
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_doors_up_to_the_web_app_open_only_when_called():
    for module, target in DOORS:
        path = ROOT.parent.joinpath(*module.split(".")).with_suffix(".py")
        assert target in set(_imports(path)), f"{module} no longer opens {target}: drop the door"
        assert target not in _module_level_imports(path), f"{module} imports {target} at load"


def test_no_imports_sideways_between_model_packages():
    sideways = [
        f"{module} -> {target}"
        for path, module in _modules()
        for target in _imports(path)
        if _owner(module)[1] in MODELS
        and _owner(target)[1] in MODELS
        and _owner(target)[1] != _owner(module)[1]
    ]
    assert not sideways, "imports between model packages:\n" + "\n".join(sideways)


def test_the_layer_rules_catch_what_they_forbid(tmp_path):
    """The checks above read real import statements: a sideways and an upward import are seen."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from mapscope.cnn.fast import fast_path\n"
        "def later():\n    from mapscope.runs import Run, epochs\n"
    )
    targets = list(_imports(source))
    assert targets == ["mapscope.cnn.fast", "mapscope.runs", "mapscope.runs.epochs"]
    assert _owner("mapscope.ae.train")[1] in MODELS and _owner(targets[0])[1] == "mapscope.cnn"
    assert _owner("mapscope.runs.epochs")[0] < _owner("mapscope.cnn.saved")[0]
    assert _owner(targets[1])[0] > _owner("mapscope.cnn.saved")[0]


def test_evaluate_and_cli_know_no_run_kind():
    for path in [ROOT / "workflows" / "evaluate.py", *(ROOT / "cli").glob("*.py")]:
        text = path.read_text()
        if path.parent.name == "workflows":
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
    from mapscope.cnn.train import TrainConfig, train
    from mapscope.training.trainer import flushing_denormals

    torch.set_flush_denormal(False)
    train(tmp_path / "r", TrainConfig(epochs=1, max_train=256, max_test=500), data_root=real_data)
    assert not flushing_denormals()


def test_a_compile_is_said_while_it_works_and_a_slow_load_is_not(capsys):
    """A first compile shows nothing else for seconds: the notice comes before it works and
    the time when it is done. Kernels loaded from the cache say nothing, however long the
    load takes (2 s on a slow CPU once read as "compiled ... in 2.0 s")."""
    from types import SimpleNamespace

    from mapscope.training import trainer

    said_during: list[str] = []

    class Task:
        def __init__(self, compiles: bool):
            self.will_compile = compiles

        def compiles(self, net, precision, on_cpu):
            return self.will_compile

        def warm_up(self, net, precision, on_cpu):
            said_during.append(capsys.readouterr().out)
            return 2.0

    state = SimpleNamespace(task=Task(True), net=None, precision="fp32", device=torch.device("cpu"))
    trainer.warm_up(state)
    assert "compiling the CPU training kernels" in said_during[0]
    assert "compiled the CPU training kernels in 2.0 s" in capsys.readouterr().out
    trainer.warm_up(SimpleNamespace(**{**vars(state), "task": Task(False)}))
    assert said_during[1] == ""
    assert capsys.readouterr().out == ""


def test_a_cnn_training_compiles_only_what_is_not_marked_compiled(monkeypatch):
    from types import SimpleNamespace

    from mapscope.cnn import background, precompile
    from mapscope.cnn.train import CNNTask

    task = CNNTask()
    net = SimpleNamespace(spec=default_spec())
    monkeypatch.setattr(background, "running", lambda: None)
    monkeypatch.setattr(precompile, "compiled_for", lambda spec, precision: True)
    assert not task.compiles(net, "fp32", on_cpu=True)
    monkeypatch.setattr(background, "running", lambda: 1234)  # a compile under way: waited for
    assert task.compiles(net, "fp32", on_cpu=True)
    monkeypatch.setattr(background, "running", lambda: None)
    monkeypatch.setattr(precompile, "compiled_for", lambda spec, precision: False)
    monkeypatch.setattr(precompile, "load_shipped", lambda spec, precision: False)
    assert task.compiles(net, "fp32", on_cpu=True)
    assert not task.compiles(net, "fp32", on_cpu=False)
    # shipped with the package for this CPU's level (kernel_cache): nothing left to compile
    monkeypatch.setattr(precompile, "load_shipped", lambda spec, precision: True)
    assert not task.compiles(net, "fp32", on_cpu=True)


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


def test_cli_max_train_and_max_test_train_and_validate_on_that_many_images(cli, tmp_path):
    done = cli(
        "cnn", "train", "--out", tmp_path / "r", "--epochs", "1", "--max-train", "5000",
        "--max-test", "1000",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "on 1000 test images" in done.stdout and "on 5000 images" in done.stdout
    config = json.loads((tmp_path / "r/config.json").read_text())
    run = Run.open(tmp_path / "r")
    metrics = json.loads(run.files["metrics"].read_text())
    assert config["train"]["max_train"] == 5000 and metrics["n_train"] == 5000
    assert config["train"]["max_test"] == 1000 and metrics["n_test"] == 1000
    # the validation ran over the first 1000 test images: the saved model scores the same there
    bundle = run.bundle()
    first = np.arange(1000)
    predicted = run.predictor().predict(bundle, "test", first)
    assert (predicted == bundle.labels("test", first)).mean() == pytest.approx(
        metrics["test_accuracy"]
    )
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
    """Every command pays for what ``mapscope.cli.main`` imports, and so do ``--help`` and a
    mistyped option: torch (2-3 s; the training settings, whose defaults the options show, are
    apart from the trainers), Dask (sweeps only), the Gaussian mixture (ae latent/generate
    only), scikit-learn (KMeans runs and studies, about 0.9 s), numba (the training kernels),
    SciPy (the MLP's activations and the studies' statistics, 0.4 s) and matplotlib (the
    commands that draw, 0.8 s) load in the commands that use them."""
    heavy = ("torch", "dask", "distributed", "sklearn", "numba", "scipy", "matplotlib")
    code = f"import sys, mapscope.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_command_is_listed_in_one_unbroken_sentence():
    """``mapscope --help`` lists each command with its help's first paragraph: typer keeps the
    line breaks of a docstring there, so a sentence wrapped in the source broke mid-line
    ("... in the order it runs: output shape," / "parameters, ...")."""
    from mapscope.cli.main import command

    def listed(group, path=""):
        for name, sub in group.commands.items():
            yield f"{path}{name}", sub.short_help
            if getattr(sub, "commands", None):
                yield from listed(sub, f"{path}{name} ")

    shown = dict(listed(command()))
    assert len(shown) > 20 and all(shown.values()), shown
    assert [name for name, text in shown.items() if "\n" in text] == []


def test_the_suites_workers_share_the_cores():
    """Under xdist each worker takes its share of the cores in torch, numba and the trainings it
    starts (conftest): a worker whose numba read NUMBA_NUM_THREADS before the share was set ran
    two kernel threads against the other worker's, and tests that call the kernels took twice
    their time in a fresh clone."""
    import os

    import numba

    from mapscope.device import THREADS_ENV

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        pytest.skip("the cores are shared out only among xdist's workers")
    share = max(1, (os.cpu_count() or 1) // workers)
    assert os.environ[THREADS_ENV] == str(share)
    assert torch.get_num_threads() == share
    assert share == numba.config.NUMBA_NUM_THREADS and numba.get_num_threads() == share
