"""Your own model: any nn.Module through the inspection API and the CLI's --module.

Two networks written in plain PyTorch (``tests/user_nets.py``): LeNet-5 on real MNIST
(1 channel, 28x28) and a colour network on a folder of 3-channel 32x32 images made here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from mapscope.errors import ConfigError
from mapscope.inspect.inspection import Inspection
from mapscope.inspect.taps import layer_outputs

sys.path.insert(0, str(Path(__file__).parent))
from user_nets import ColourNet, LeNet5, fit  # noqa: E402

NETS = Path(__file__).parent / "user_nets.py"
SHAPES = ("square", "disc", "bar")


def draw_shapes(folder: Path, per_class: int = 40, size: int = 32, seed: int = 0) -> Path:
    """Coloured squares, discs and bars on noisy backgrounds: one sub-folder per class."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True)
        for i in range(per_class):
            background = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            image = Image.fromarray(background)
            draw = ImageDraw.Draw(image)
            colour = tuple(int(v) for v in rng.integers(80, 256, 3))
            x0, y0 = (int(v) for v in rng.integers(2, 14, 2))
            box = (x0, y0, x0 + 14, y0 + 14)
            if shape == "square":
                draw.rectangle(box, fill=colour)
            elif shape == "disc":
                draw.ellipse(box, fill=colour)
            else:
                draw.rectangle((x0, y0, x0 + 16, y0 + 4), fill=colour)
            image.save(folder / shape / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    """ColourNet trained on the shape folder (3-channel 32x32), its data name and weights."""
    folder = draw_shapes(tmp_path_factory.mktemp("shapes") / "shapes")
    data = f"folder:{folder}"
    inspection = Inspection.from_module(ColourNet(), data, "unit", (3, 32, 32))
    x = torch.from_numpy(inspection.inputs("train"))
    y = torch.from_numpy(inspection.bundle.labels("train"))
    net = fit(ColourNet(), x, y, epochs=40)  # 15 left it near chance on some thread counts
    weights = folder.parent / "colour.safetensors"
    save_file(net.state_dict(), weights)
    return net, data, weights


def lenet_session(lenet, real_data):
    return Inspection.from_module(
        lenet[0], "mnist", "normalize:0.1307/0.3081", (1, 28, 28), data_root=real_data
    )


def test_lenet_is_inspected_through_the_api(lenet, real_data, tmp_path):
    from mapscope.atlas import build_atlas, write_atlas
    from mapscope.workflows.compare import compare_classes
    from mapscope.workflows.oip import oip_layer

    inspection = lenet_session(lenet, real_data)
    assert inspection.layer_names[:3] == ["features.0", "features.1", "features.2"]
    accuracy = (
        inspection.predict(inspection.bundle, "test") == inspection.bundle.labels("test")
    ).mean()
    assert accuracy > 0.9  # the normalisation it was trained with is applied
    maps = inspection.activations("features.2", "test", [0, 1])
    assert maps.shape == (2, 6, 14, 14)
    nodes = inspection.activations("classifier.2", "test", [0])
    assert nodes.shape == (1, 120)
    separation = compare_classes(inspection, "features.3", "test", "4", "9", 8)
    assert "features.3" in separation.summary()
    oips = oip_layer(inspection, "features.3", [0, 1, 2], steps=30)
    assert oips.search.images.shape == (3, 28, 28)
    assert (oips.search.final_activation > oips.search.start_activation).all()
    atlas = build_atlas(
        inspection, layers=["features.1", "features.4", "classifier.5"], oip_steps=20, confused=2
    )
    # the same predictions, but for an image whose two best scores tie to float rounding (the
    # atlas's pass runs on a channels-last copy, whose sums round differently)
    assert atlas.kind == "module"
    assert atlas.accuracy == pytest.approx(accuracy, abs=1.5 / len(atlas.labels))
    site = write_atlas(atlas, tmp_path / "site")
    index = Path(site["index"]).read_text()
    assert "Your PyTorch module" in index and "features.4" in index
    # a chain of modules: the image viewer runs it in the page (tanh, average pooling)
    assert atlas.chain is not None, atlas.chain_reason
    assert (tmp_path / "site/images/model.js").is_file()


def test_a_colour_network_on_32x32_images_through_the_api(colour, tmp_path):
    from mapscope.atlas import build_atlas, write_atlas
    from mapscope.workflows.compare import compare_classes
    from mapscope.workflows.oip import oip_layer, write_oips

    net, data, _ = colour
    inspection = Inspection.from_module(net, data, "unit", (3, 32, 32))
    assert inspection.inputs("test", [0]).shape == (1, 3, 32, 32)
    accuracy = (
        inspection.predict(inspection.bundle, "test") == inspection.bundle.labels("test")
    ).mean()
    assert accuracy > 0.6  # three classes: chance is 1/3
    assert inspection.activations("conv2", "test", [0]).shape == (1, 16, 16, 16)
    assert "conv2" in compare_classes(inspection, "conv2", "test", "square", "bar", 4).summary()
    oips = oip_layer(inspection, "conv1", None, steps=25, scales=(3, 8, 16, 32))
    assert oips.search.images.shape == (8, 32, 32, 3)  # colour pictures, channels last
    write_oips(oips, tmp_path / "oip")
    atlas = build_atlas(inspection, oip_steps=15, confused=2)
    # in the order they run; the reused pooling module once per call
    assert list(atlas.layers) == ["conv1", "pool", "conv2", "pool@2", "fc"]
    assert atlas.layers["pool"].stats.shape == (8, 16, 16)
    assert atlas.layers["pool@2"].stats.shape == (16, 8, 8)
    assert atlas.layers["pool@2"].field.size == (10, 10)  # 3 + 2*1 + 2*2 ... through conv2
    assert atlas.layers["conv1"].oip["images"].shape == (8, 32, 32, 3)
    write_atlas(atlas, tmp_path / "site")
    assert (tmp_path / "site" / "index.html").exists()
    # ReLU called in forward: no chain of modules to run in the page, and the viewer says why
    assert atlas.chain is None and "does not read the output" in atlas.chain_reason
    assert atlas.chain_reason in (tmp_path / "site/images/view.html").read_text()
    assert not (tmp_path / "site/images/model.js").exists()


def test_arrays_as_data_and_preprocess_as_a_function(lenet, real_data):
    from mapscope.data.datasets import load_dataset

    mnist = load_dataset("mnist", real_data)
    images, labels = mnist.x[-300:], mnist.y[-300:]
    inspection = Inspection.from_module(lenet[0], (images, labels), lambda x: (x - 0.1307) / 0.3081)
    reference = lenet_session(lenet, real_data)
    np.testing.assert_allclose(
        inspection.inputs("test", [0, 299]), reference.inputs("test", [9700, 9999]), atol=1e-6
    )
    same = reference.predict(reference.bundle, "test", np.arange(9700, 10000))
    np.testing.assert_array_equal(inspection.predict(inspection.bundle, "test"), same)


def test_wrong_inputs_are_named_before_any_work(lenet, real_data):
    with pytest.raises(ConfigError, match="reads 3x32x32 images but mnist gives 1x28x28"):
        Inspection.from_module(lenet[0], "mnist", "unit", (3, 32, 32), data_root=real_data)
    with pytest.raises(ConfigError, match=r"expected class scores of shape \(2, 3\)"):
        Inspection.from_module(lenet[0], (np.zeros((4, 28, 28), np.uint8), np.arange(4) % 3))
    with pytest.raises(ConfigError, match="failed on a batch of shape"):
        Inspection.from_module(ColourNet(), "mnist", "unit", data_root=real_data)
    with pytest.raises(ConfigError, match="normalize:MEAN/STD"):
        Inspection.from_module(lenet[0], "mnist", "normalise", data_root=real_data)
    with pytest.raises(ConfigError, match="has no training part|none"):
        Inspection.from_module(
            lenet[0], (np.zeros((4, 28, 28), np.uint8), np.arange(4)), "standard"
        )


class Counting(torch.nn.Module):
    """Counts how often it runs: the layers after a tapped one must not."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_taps_on_an_early_layer_do_not_run_the_later_layers():
    deep = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        *[Counting(torch.nn.Conv2d(4, 4, 3, padding=1)) for _ in range(6)],
        torch.nn.Flatten(),
        Counting(torch.nn.Linear(4 * 26 * 26, 10)),
    )
    x = np.zeros((1200, 1, 28, 28), dtype=np.float32)
    out = layer_outputs(deep, x, ["1"], batch=500)  # three batches
    assert out["1"].shape == (1200, 4, 26, 26)
    calls = [m.calls for m in deep if isinstance(m, Counting)]
    assert calls == [3, 0, 0, 0, 0, 0, 0]
    layer_outputs(deep, x[:10], ["8"])
    assert [m.calls for m in deep if isinstance(m, Counting)] == [4, 1, 1, 1, 1, 1, 1]


def test_weights_in_every_format_and_never_code(lenet, tmp_path):
    from mapscope.runs.module_file import load_module, load_weights_into

    net, folder = lenet
    probe = torch.randn(3, 1, 28, 28)
    for name in ("lenet.safetensors", "lenet.pt", "lenet_script.pt"):
        loaded = load_weights_into(load_module(f"{NETS}:make_lenet"), folder / name)
        torch.testing.assert_close(loaded(probe), net(probe))

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"conv.weight": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="never loaded"):
        load_weights_into(LeNet5(), tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ConfigError, match="does not fit the module"):
        load_weights_into(ColourNet(), folder / "lenet.safetensors")
    with pytest.raises(ConfigError, match="callables defined there: .*LeNet5"):
        load_module(f"{NETS}:LeNet")
    with pytest.raises(ConfigError, match="forward hooks cannot reach"):
        layer_outputs(load_module(str(folder / "lenet_script.pt")), probe.numpy(), ["features.0"])


def test_lenet_and_the_colour_network_from_the_command_line(lenet, colour, mapscope, tmp_path):
    def ok(command: str, *args) -> str:
        """``command`` (words split on spaces) with ``args`` appended; its stdout."""
        code, out, err = mapscope(*command.split(), *args)
        assert code == 0, (command, err)
        return out

    _, folder = lenet
    module = ["--module", f"{NETS}:LeNet5", "--weights", folder / "lenet.pt"]
    mnist = [*module, "--input", "1x28x28", "--preprocess", "normalize:0.1307/0.3081"]
    ok("evaluate --out", tmp_path / "eval", *mnist)
    matrix = np.array(json.loads((tmp_path / "eval" / "confusion.json").read_text())["matrix"])
    assert np.trace(matrix) / matrix.sum() > 0.9 and matrix.sum() == 10000
    out = ok("summary", *module)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("feat")}
    assert rows["features.3"][-2:] == ["14x14", "2"]  # receptive field and stride of LeNet's C3
    assert "Total params: 61,706" in out
    script = ["--module", folder / "lenet_script.pt", "--preprocess", "normalize:0.1307/0.3081"]
    ok("evaluate --out", tmp_path / "eval_script", *script)
    ok("activations --layer features.1 --index 0 --out", tmp_path / "a.png", *mnist)
    ok("compare --layer features.4 --classes 4,9 --out", tmp_path / "c", *mnist)
    assert (tmp_path / "c" / "separation.png").exists()
    ok("oip --layer features.3 --maps 0,1 --steps 20 --out", tmp_path / "o", *mnist)
    assert (tmp_path / "o" / "oips.png").exists()
    site = "atlas --layers features.1,classifier.5 --oip-steps 10 --confused 1 --methods saliency"
    out = ok(f"{site} --out", tmp_path / "site", *mnist)
    assert (tmp_path / "site" / "layers").is_dir() and "index.html" in out

    _, data, weights = colour
    rgb = ["--module", f"{NETS}:ColourNet", "--weights", weights, "--input", "3x32x32"]
    rgb += ["--dataset", data]
    ok("activations --layer conv1 --index 0 --out", tmp_path / "rgb.png", *rgb)
    ok("compare --layer conv2 --classes square,disc --out", tmp_path / "rgb_c", *rgb)
    ok("oip --layer conv2 --maps 0,3 --steps 20 --out", tmp_path / "rgb_o", *rgb)
    ok("atlas --oip-steps 10 --confused 1 --out", tmp_path / "rgb_site", *rgb)
    code, out, err = mapscope(
        "evaluate", "--module", f"{NETS}:LeNet5", "--model", tmp_path, "--out", tmp_path / "x"
    )
    assert code == 2 and "either --model" in err
