"""Autoencoders: spec and network, training into a run, the latent study, samplers, judging,
image folders; through the API and the command line, on real MNIST where it matters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mapscope.ae.build import build, decode_array, encode_array
from mapscope.ae.latent import ks_distance_to_normal, study
from mapscope.ae.samplers import SAMPLERS, MultivariateNormal, make_sampler
from mapscope.ae.spec import AESpec, load_spec
from mapscope.ae.train import AETrainConfig, train
from mapscope.errors import ConfigError, DataError, RunError, TrainingDiverged
from mapscope.runs import Run
from mapscope.workflows.autoencoder import generate, latent_study, reconstruct
from mapscope.workflows.judge import Judge, frechet_distance

# --- spec and network ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        AESpec(),
        AESpec(downsample="pool", upsample="upsample", batch_norm=True, loss="mse"),
        AESpec((3, 32, 32), latent=8, filters=(8, 16, 32)),
    ],
)
def test_network_mirrors_its_encoder_and_names_every_layer(spec):
    net = build(spec, seed=1).eval()
    x = torch.rand(3, *spec.input_shape)
    out = net(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1  # sigmoid output
    z = net.encode(x)
    assert z.shape == (3, spec.latent)
    assert torch.allclose(net.decode(z), out)  # encode then decode is the forward
    assert list(dict(net.named_children())["layers"]) == spec.layer_names
    assert spec.layer_names[:1] == ["Enc_Conv_1"] and spec.layer_names[-1] == "Dec_Output"
    assert "Latent" in spec.layer_names
    same = build(spec, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), same.parameters(), strict=True))


def test_spec_reports_every_problem_at_once(tmp_path):
    with pytest.raises(ConfigError) as caught:
        AESpec(latent=0, filters=(32, -1), loss="l1", downsample="conv").validate()
    message = str(caught.value)
    for part in ("latent must be", "filters must be", "loss 'l1'", "downsample 'conv'"):
        assert part in message
    with pytest.raises(ConfigError, match="divisible by 8"):
        AESpec((1, 28, 28), filters=(8, 16, 32)).validate()
    toml = tmp_path / "ae.toml"
    toml.write_text("latent = 4\nfilters = [8, 16]\nwidth = 3\n")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['width'\]"):
        load_spec(toml)
    toml.write_text("latent = 4\ninput_shape = [1, 28, 28]\n")
    with pytest.raises(ConfigError, match="taken from the dataset"):
        load_spec(toml)
    toml.write_text("latent = 4\nfilters = [8, 16]\nbatch_norm = true\n")
    assert load_spec(toml) == AESpec(latent=4, filters=(8, 16), batch_norm=True)


# --- training on real MNIST -----------------------------------------------------------------

QUICK = AETrainConfig(
    epochs=1, max_train=1024, max_test=1000, batch_size=128, seed=3, schedule="none", threads=1
)


def test_training_writes_an_ae_run_that_reconstructs(ae_run, real_data):
    run = Run.open(ae_run)
    assert run.kind == "ae" and run.is_neural
    assert run.layer_names == AESpec(latent=8, filters=(16, 32)).layer_names
    history = json.loads(run.files["history"].read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["val_loss"] < history[0]["val_loss"] < 0.5  # BCE per pixel falls
    # and it rebuilds each image, not the mean training image, which is what an autoencoder
    # that has learned little gives back (a test loss barely below the mean image's)
    metrics = json.loads(run.files["metrics"].read_text())
    assert history[1]["val_loss"] < 0.8 * metrics["constant_loss"]
    config = json.loads(run.files["config"].read_text())
    assert config["net"]["input_shape"] == [1, 28, 28] and config["train"]["seed"] == 0
    assert "mnist/train-images-idx3-ubyte.gz" in config["data"]["checksums"]
    with pytest.raises(RunError, match="predicts no classes"):
        run.predictor()
    result = reconstruct(ae_run, [0, 1, 2], "test", real_data)
    expected = ((result.reconstructions - result.originals) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(result.mse, expected, rtol=1e-5)
    assert result.mse.mean() < 0.045  # the mean training image's error is 0.0675


def test_a_seed_reproduces_the_run_and_resume_continues_it_bit_for_bit(real_data, tmp_path):
    spec = AESpec(latent=4, filters=(8, 16))
    train(tmp_path / "a", QUICK, spec, data_root=real_data)
    train(tmp_path / "b", QUICK, spec, data_root=real_data)
    train(tmp_path / "a", QUICK, resume=True, data_root=real_data)
    train(
        tmp_path / "two",
        AETrainConfig(**{**QUICK.__dict__, "epochs": 2}),
        spec,
        data_root=real_data,
    )
    nets = {name: Run.open(tmp_path / name).module().state_dict() for name in ("a", "b", "two")}
    once = Run.open(tmp_path / "b")
    assert json.loads(once.files["history"].read_text())[0]["epoch"] == 1
    assert all(torch.equal(nets["a"][k], nets["two"][k]) for k in nets["two"])
    b_initial = once.module().state_dict()
    assert all(torch.equal(b_initial[k], nets["b"][k]) for k in b_initial)
    first = json.loads((tmp_path / "a" / "epochs/0002/history.json").read_text())[0]
    again = json.loads(once.files["history"].read_text())[0]
    assert first["loss"] == again["loss"]  # same seed, same first epoch


def test_divergence_stops_before_anything_is_written(real_data, tmp_path):
    config = AETrainConfig(epochs=1, max_train=512, optimizer="sgd", lr=1e30, schedule="none")
    with pytest.raises(TrainingDiverged):
        train(tmp_path / "r", config, data_root=real_data)
    assert not (tmp_path / "r").exists() and list(tmp_path.iterdir()) == []


# --- the latent study and the samplers -------------------------------------------------------


def test_latent_study_measures_the_thin_shell_and_the_empty_space():
    """A cloud away from the origin in 64 dimensions: a uniform box draws a thin shell that
    misses it, the fitted normals land where the data is."""
    rng = np.random.default_rng(0)
    d = 64
    mean = np.full(d, 2.0)
    codes = mean + rng.standard_normal((5000, d))
    test = mean + rng.standard_normal((500, d))
    labels = (codes[:, 0] > 2).astype(int)
    samplers = {n: make_sampler(n, b=1.5, components=2).fit(codes) for n in SAMPLERS}
    drawn = {n: s.sample(1000, seed=[0, k]) for k, (n, s) in enumerate(samplers.items())}
    result = study(codes, labels, test, drawn, ("low", "high"))
    assert result.mean_norm == pytest.approx(16.0, rel=0.02)  # |(2, ..., 2)| = 2 * sqrt(64)
    assert result.origin_mahalanobis == pytest.approx(16.0, rel=0.05)
    shell = np.median(result.radii["uniform"])
    assert shell == pytest.approx(1.5 * np.sqrt(d / 3), rel=0.05)  # the thin shell
    assert np.quantile(result.radii["uniform"], 0.95) < 1.2 * shell
    frag = result.fragmentation()
    assert frag["uniform"]["share_in_empty_space"] == 1.0
    assert frag["mnd"]["share_in_empty_space"] < 0.05
    assert frag["gmm"]["relative_to_test"] < 1.2 < frag["uniform"]["relative_to_test"]
    assert result.ks_distance.max() < 0.05  # every component normal
    assert set(result.class_coverage["mnd"]) == {"low", "high"}
    json.dumps(result.to_dict())  # finite, plain JSON


def test_samplers_reproduce_the_statistics_they_were_fitted_to():
    rng = np.random.default_rng(1)
    covariance = np.array([[4.0, 1.5, 0.0], [1.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
    codes = rng.multivariate_normal([1.0, -2.0, 3.0], covariance, 20000)
    for name in ("mnd", "gmm"):
        z = make_sampler(name, components=3).fit(codes).sample(20000, seed=5)
        np.testing.assert_allclose(z.mean(0), codes.mean(0), atol=0.06)
        np.testing.assert_allclose(np.cov(z, rowvar=False), covariance, atol=0.12)
    normal = make_sampler("normal").fit(codes).sample(20000, seed=5)
    assert abs(np.corrcoef(normal, rowvar=False)[0, 1]) < 0.03  # independent components
    truncated = MultivariateNormal(truncate=1.0).fit(codes)
    z = truncated.sample(2000, seed=2) - truncated.mean_
    radius = np.sqrt(np.einsum("ni,ij,nj->n", z, np.linalg.inv(truncated.covariance_), z))
    assert radius.max() <= 1.0 + 1e-4 and radius.mean() > 0.5
    box = make_sampler("uniform", b=0.5).fit(codes).sample(1000)
    assert np.abs(box).max() <= 0.5
    assert np.array_equal(
        make_sampler("gmm").fit(codes).sample(50, 7), make_sampler("gmm").fit(codes).sample(50, 7)
    )
    with pytest.raises(ConfigError, match="sampler 'vae' unknown"):
        make_sampler("vae")


def test_frechet_distance_agrees_with_the_matrix_square_root():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.random((200, 6)), rng.random((200, 6)) ** 2
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    m1, m2 = a.mean(0), b.mean(0)
    reference = (m1 - m2) @ (m1 - m2) + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_ks_distance_is_scipys_statistic():
    from scipy import stats

    values = np.random.default_rng(0).standard_t(4, size=(500, 3))
    values[:, 2] = np.random.default_rng(1).normal(size=500)
    expected = [stats.kstest(values[:, i], "norm").statistic for i in range(3)]
    np.testing.assert_allclose(ks_distance_to_normal(values), expected, rtol=1e-12)


def test_latent_study_of_a_trained_autoencoder(ae_run, real_data):
    result = latent_study(ae_run, n=300, data_root=real_data)
    s = result.study
    assert result.codes.shape == (4096, 8) and s.latent == 8  # the images it trained on
    assert set(s.radii) == {"data", *SAMPLERS} and len(s.radii["uniform"]) == 300
    frag = s.fragmentation()
    assert frag["gmm"]["share_in_empty_space"] < frag["normal"]["share_in_empty_space"]
    assert result.manifold is None  # only for a 2-D latent space
    assert "8-D autoencoder" in result._repr_html_() and "data:image/png" in result._repr_html_()


# --- generation, judged by a CNN --------------------------------------------------------------


def test_generation_is_judged_against_real_images(ae_run, cnn_run, real_data):
    gen = generate(ae_run, n=200, judge=cnn_run, data_root=real_data, between=[(0, 1)])
    assert set(gen.images) == set(SAMPLERS)
    assert gen.images["gmm"].shape == (200, 1, 28, 28)
    table = {row["source"]: row for row in gen.table()}
    assert list(table) == ["real training", "reconstructions", *SAMPLERS]
    real = table["real training"]
    assert real["mean_top_probability"] > 0.85 and real["classes_covered"] == 10
    assert real["frechet_distance"] < table["uniform"]["frechet_distance"]
    assert sum(table["mnd"]["class_histogram"].values()) == 200
    card = gen._repr_html_()
    assert "Fréchet distance" in card and "real training" in card and "data:image/png" in card
    assert gen.interpolations[0].shape == (10, 1, 28, 28)
    endpoints = decode_array(
        Run.open(ae_run).module(),
        encode_array(
            Run.open(ae_run).module(),
            Run.open(ae_run).bundle(real_data).inputs("test", [0, 1], layout="nchw"),
        ),
    )
    np.testing.assert_allclose(gen.interpolations[0][[0, -1]], endpoints, atol=1e-5)


def test_the_judge_must_know_the_same_data(ae_run, tmp_path, real_data):
    fashion = tmp_path / "fashion"
    from mapscope.cnn.train import TrainConfig
    from mapscope.cnn.train import train as train_cnn

    train_cnn(
        fashion,
        TrainConfig(dataset="fashion-mnist", epochs=1, max_train=256, max_test=500),
        data_root=real_data,
    )
    with pytest.raises(ConfigError, match="trained on fashion-mnist"):
        generate(ae_run, n=10, judge=fashion, data_root=real_data)
    with pytest.raises(ConfigError, match="is an autoencoder"):
        generate(ae_run, n=10, judge=ae_run, data_root=real_data)


def test_judge_confidence_and_classes_on_known_scores():
    """A 'classifier' that reads the class from the image's mean brightness."""

    class Brightness(torch.nn.Module):
        layer_names = ("features", "scores")

        def __init__(self):
            super().__init__()
            self.features = torch.nn.Flatten()
            self.scores = torch.nn.Identity()

        def forward(self, x):
            f = self.features(x)
            m = f.mean(1, keepdim=True)
            return self.scores(torch.cat([-50 * (m - 0.25).abs(), -50 * (m - 0.75).abs()], 1))

    referee = Judge(Brightness(), lambda images: images, "features")
    dark, light = np.full((40, 1, 4, 4), 0.25, np.float32), np.full((40, 1, 4, 4), 0.75, np.float32)
    referee.fit(np.concatenate([dark, light]))
    verdict = referee.judge("dark", dark)
    assert verdict.class_counts.tolist() == [40, 0] and verdict.classes_covered() == 1
    assert verdict.mean_top_probability > 0.99


CONFIG = Path(__file__).parent.parent / "configs" / "ae.toml"


# --- the command line ---------------------------------------------------------------------------


def test_cli_trains_a_2d_autoencoder_and_draws_its_manifold(cli, mapscope, tmp_path, cnn_run):
    run = tmp_path / "ae2"
    done = cli(
        "ae",
        "train",
        "--out",
        run,
        "--latent",
        "2",
        "--filters",
        "8,16",
        "--epochs",
        "1",
        "--max-train",
        "2048",
        "--max-test",
        "1000",
    )
    assert done.returncode == 0, done.stderr
    assert "(bce) on 1000 test images, 1 epoch on 2048 images" in done.stdout
    assert f"wrote {run / 'epochs' / '0001' / 'model.safetensors'}" in done.stdout
    code, out, err = mapscope(
        "ae", "latent", "--model", run, "--out", tmp_path / "lat", "--n", "200"
    )
    assert code == 0, err
    assert (tmp_path / "lat" / "manifold.png").is_file()
    saved = json.loads((tmp_path / "lat" / "latent.json").read_text())
    assert saved["latent"] == 2 and set(saved["radii"]) == {"data", *SAMPLERS}
    assert saved["settings"]["n"] == 200 and saved["data_checksums"]
    code, out, err = mapscope(
        "ae",
        "generate",
        "--model",
        run,
        "--out",
        tmp_path / "gen",
        "--n",
        "50",
        "--judge",
        cnn_run,
        "--sampler",
        "gmm",
        "--sampler",
        "uniform",
    )
    assert code == 0, err
    assert "Fréchet" in out and (tmp_path / "gen" / "judged.csv").is_file()
    assert (tmp_path / "gen" / "samples_gmm.png").is_file() and not (
        tmp_path / "gen" / "samples_mnd.png"
    ).exists()
    code, out, err = mapscope(
        "ae",
        "reconstruct",
        "--model",
        run,
        "--index",
        "0",
        "--index",
        "7",
        "--out",
        tmp_path / "rec.png",
    )
    assert code == 0 and (tmp_path / "rec.json").is_file()
    for args, message in [
        (
            ("ae", "generate", "--model", run, "--out", tmp_path / "g2", "--sampler", "vae"),
            "--sampler",
        ),
        (
            ("ae", "generate", "--model", run, "--out", tmp_path / "g2", "--judge", run),
            "autoencoder",
        ),
        (
            ("ae", "generate", "--model", run, "--out", tmp_path / "g2", "--between", "0,99999"),
            "--between index 99999",
        ),
        (
            ("ae", "latent", "--model", cnn_run, "--out", tmp_path / "g2"),
            "needs a run of kind 'ae'",
        ),
        (("evaluate", "--model", run, "--out", tmp_path / "ev"), "predicts no classes"),
        (("ae", "train", "--out", run, "--epochs", "1"), "--overwrite"),
        (("ae", "train", "--resume", run, "--latent", "3"), "--latent cannot be changed"),
        (("ae", "train", "--out", tmp_path / "x", "--dataset", "wifi"), "not a set of images"),
        (
            ("ae", "train", "--out", tmp_path / "x", "--config", CONFIG, "--latent", "3"),
            "--config describes the whole network; leave out --latent",
        ),
    ]:
        code, out, err = mapscope(*args)
        assert code == 2 and message in err, (args, err)
        assert err.count("\n") == 1


def test_inspection_works_on_encoder_and_decoder(ae_run, mapscope, tmp_path):
    for layer in ("Enc_Conv_1", "Latent", "Dec_Conv_1"):
        code, _, err = mapscope(
            "activations",
            "--model",
            ae_run,
            "--layer",
            layer,
            "--index",
            "0",
            "--out",
            tmp_path / f"{layer}.png",
        )
        assert code == 0, err
    code, _, err = mapscope(
        "oip",
        "--model",
        ae_run,
        "--layer",
        "Latent",
        "--maps",
        "0,1",
        "--steps",
        "20",
        "--out",
        tmp_path / "oip",
    )
    assert code == 0, err


# --- image folders and face sets -----------------------------------------------------------------


def draw_faces(folder, n=96, size=40, seed=0):
    """Simple synthetic faces: a head, two eyes, a mouth, at jittered places and shades."""
    rng = np.random.default_rng(seed)
    for person in ("ann", "bob"):
        (folder / person).mkdir(parents=True)
    for i in range(n):
        image = Image.new(
            "RGB", (size + int(rng.integers(0, 12)), size), tuple(rng.integers(0, 80, 3).tolist())
        )
        draw = ImageDraw.Draw(image)
        cx, cy = size / 2 + rng.normal(0, 2), size / 2 + rng.normal(0, 2)
        skin = tuple(int(v) for v in rng.integers(150, 255, 3))
        draw.ellipse((cx - 13, cy - 16, cx + 13, cy + 16), fill=skin)
        for dx in (-6, 6):
            draw.ellipse((cx + dx - 2, cy - 6, cx + dx + 2, cy - 2), fill=(20, 20, 20))
        draw.arc((cx - 7, cy + 2, cx + 7, cy + 10), 0, 180, fill=(120, 0, 0), width=2)
        suffix = ".png" if i % 3 else ".jpg"
        image.save(folder / ("ann" if i % 2 else "bob") / f"{i}{suffix}")


def test_a_face_folder_trains_and_is_studied_and_generated(mapscope, tmp_path):
    faces = tmp_path / "faces"
    draw_faces(faces)
    run = tmp_path / "face_ae"
    code, _, err = mapscope(
        "ae",
        "train",
        "--dataset",
        f"folder:{faces}",
        "--image-size",
        "32",
        "--colour",
        "rgb",
        "--latent",
        "8",
        "--filters",
        "8,16,32",
        "--epochs",
        "3",
        "--out",
        run,
    )
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["image"] == {"size": 32, "colour": "rgb"}
    assert config["net"]["input_shape"] == [3, 32, 32]
    bundle = Run.open(run).bundle()
    assert bundle.dataset.class_names == ("ann", "bob") and bundle.dataset.x.shape == (
        96,
        32,
        32,
        3,
    )
    assert len(bundle.split.test) == 24  # a seeded quarter
    for command in (("latent", "--n", "100"), ("generate", "--n", "20")):
        code, _, err = mapscope(
            "ae", command[0], "--model", run, "--out", tmp_path / command[0], *command[1:]
        )
        assert code == 0, err
    assert (tmp_path / "generate" / "samples_mnd.png").is_file()
    history = json.loads(Run.open(run).files["history"].read_text())
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    (faces / "ann" / "new.png").write_bytes((faces / "ann" / "1.png").read_bytes())
    code, _, err = mapscope("ae", "latent", "--model", run, "--out", tmp_path / "again")
    assert code == 2 and "differ from those the run" in err


def test_an_image_folder_is_read_once_and_bad_files_are_all_named(tmp_path, monkeypatch):
    from mapscope.data import folder as image_folder
    from mapscope.data.datasets import load_dataset

    monkeypatch.setenv("MAPSCOPE_CACHE", str(tmp_path / "cache"))
    faces = tmp_path / "faces"
    draw_faces(faces, n=12)
    first = load_dataset(f"folder:{faces}", image_size=16, colour="grey")
    assert first.x.shape == (12, 16, 16) and first.x.dtype == np.uint8 and first.is_image

    def no_decoding(*args):
        raise AssertionError("the cached array should have been used")

    monkeypatch.setattr(image_folder, "read_image", no_decoding)
    again = load_dataset(f"folder:{faces}", image_size=16, colour="grey")
    assert np.array_equal(again.x, first.x) and again.checksums == first.checksums
    monkeypatch.undo()
    monkeypatch.setenv("MAPSCOPE_CACHE", str(tmp_path / "cache"))
    (faces / "ann" / "notes.txt").write_text("not an image")
    (faces / "bob" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError) as caught:
        load_dataset(f"folder:{faces}", image_size=16)
    assert "2 of 14 files" in str(caught.value)
    assert "ann/notes.txt" in str(caught.value) and "bob/broken.jpg" in str(caught.value)
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


def test_scikit_learn_face_sets_are_read_through_scikit_learn(monkeypatch, tmp_path):
    import sklearn.datasets
    from sklearn.utils import Bunch

    from mapscope.data.datasets import load_dataset

    rng = np.random.default_rng(0)
    calls = {}

    def fake_olivetti(data_home, **options):
        calls["data_home"] = data_home
        return Bunch(
            images=rng.random((20, 64, 64)).astype(np.float32), target=np.repeat(np.arange(4), 5)
        )

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fake_olivetti)
    faces = load_dataset("olivetti-faces", tmp_path, image_size=32)
    assert faces.x.shape == (20, 32, 32) and faces.x.dtype == np.uint8
    assert faces.n_classes == 4 and calls["data_home"] == str(tmp_path / "scikit_learn_data")
    assert len(faces.checksums["olivetti-faces"]) == 64

    def offline(data_home, **options):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_people", offline)
    with pytest.raises(DataError, match="could not download lfw-people"):
        load_dataset("lfw-people", tmp_path)


def test_the_shipped_config_is_the_default_autoencoder():
    assert load_spec(CONFIG) == AESpec()


def test_atlas_of_the_encoder(ae_run, real_data, tmp_path):
    """An autoencoder gives no class scores: its atlas shows the encoder up to the code, with
    class means and top images but no accuracy, confusions or attributions."""
    from mapscope.atlas import build_atlas, write_atlas

    atlas = build_atlas(ae_run, oip_steps=20, images=[1302], data_root=real_data)
    assert not atlas.classifier and atlas.accuracy is None
    assert list(atlas.layers) == ["Enc_Conv_1", "Enc_Conv_2", "Latent"]
    assert list(atlas.images) == [1302] and not atlas.images[1302]["attributions"]
    latent = atlas.layers["Latent"]
    assert latent.top.shape == (8, 9) and latent.incoming is not None  # from Enc_Conv_2's maps
    site = write_atlas(atlas, tmp_path / "site")["index"].parent
    index = (site / "index.html").read_text()
    assert "no class scores" in index and "Confusion matrix" not in index
    assert (site / "layers/Latent/units/7.html").is_file() and (site / "classes/9.html").is_file()


def test_a_run_is_measured_against_the_mean_training_image(real_data, tmp_path, capsys):
    """metrics.json's ``constant_loss`` is the test loss of the best guess that ignores the
    input, for an autoencoder the mean training image; a run that does barely better than it
    (8 steps: every image rebuilt as that blur) says so when it ends, a trained one does not."""
    from mapscope.ae.train import targets
    from mapscope.data.bundle import DataBundle

    config = AETrainConfig(epochs=1, max_train=256, max_test=500, seed=0, threads=1)
    metrics = train(
        tmp_path / "short", config, AESpec(latent=2, filters=(4, 8)), data_root=real_data
    )
    bundle = DataBundle.create("mnist", "unit", data_root=real_data)
    train_images = targets(bundle, "train", np.arange(256)).astype(np.float64)
    test_images = targets(bundle, "test", np.arange(500)).astype(np.float64)
    mean = (train_images.sum(0) + 0.5) / (len(train_images) + 1)  # half an image of smoothing
    bce = -(test_images * np.log(mean) + (1 - test_images) * np.log(1 - mean))
    assert metrics["constant_loss"] == pytest.approx(bce.mean(), rel=1e-4)
    said = capsys.readouterr().out
    assert metrics["test_loss"] > 0.8 * metrics["constant_loss"]
    assert "has learned little yet" in said and "the mean training image" in said
    assert "train for more steps" in said
