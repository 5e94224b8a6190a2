import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError

from mapscope.cluster.analysis import analyze_k, suggest_k
from mapscope.cluster.kmeans_classifier import KMeansClassifier
from mapscope.cluster.saved import load_model, save_model
from mapscope.data.features import ClusterDistances
from mapscope.errors import ConfigError


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0], [6, 0], [0, 6], [6, 6]], dtype=float)
    labels = np.repeat(np.arange(4), 50)
    x = centers[labels] + rng.normal(scale=0.7, size=(200, 2))
    return x.astype(np.float32), labels


def test_classifier_agrees_with_direct_sklearn():
    x, y = _blobs()
    x[:10] = x[60:70]  # a few confusing samples
    ours = KMeansClassifier(6, n_init=10, random_state=3).fit(x, y)
    ref = KMeans(6, n_init=10, random_state=3).fit(x)
    clusters = ref.predict(x)
    expected_map = np.array([np.bincount(y[clusters == c], minlength=4).argmax() for c in range(6)])
    np.testing.assert_array_equal(ours.cluster_labels_, expected_map)
    np.testing.assert_array_equal(ours.predict(x), expected_map[clusters])
    sizes = np.bincount(clusters, minlength=6)
    np.testing.assert_allclose(ours.purity_, ours.label_counts_.max(1) / sizes)
    assert ours.label_counts_.sum() == 200


def test_hungarian_mapping_is_one_to_one():
    x, y = _blobs()
    model = KMeansClassifier(4, mapping="hungarian", random_state=0).fit(x, y)
    assert sorted(model.cluster_labels_.tolist()) == [0, 1, 2, 3]
    assert (model.predict(x) == y).mean() > 0.95


def test_save_load_and_errors(tmp_path):
    x, y = _blobs()
    model = KMeansClassifier(4, pca=2, random_state=0).fit(x, y)
    back = load_model(save_model(model, tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="is expecting 2 features"):
        model.predict(np.zeros((3, 5), np.float32))
    with pytest.raises(ConfigError, match="mapping='vote' unknown"):
        KMeansClassifier(4, mapping="vote").fit(x, y)
    with pytest.raises(NotFittedError):
        KMeansClassifier(4).predict(x)


def test_analysis_finds_four_blobs():
    x, _ = _blobs()
    rows = analyze_k(x, list(range(2, 9)), seed=0)
    assert suggest_k(rows)["silhouette"] == 4
    assert rows[0]["inertia"] > rows[-1]["inertia"]


def test_cluster_distances_are_standardised():
    x, _ = _blobs()
    features = ClusterDistances(5, seed=0).fit(x)
    z = features.transform(x)
    assert z.shape == (200, 5)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-3)


def test_wifi_classify_cli(cli, tmp_path):
    done = cli(
        "kmeans",
        "classify",
        "--clusters",
        "4,8",
        "--mode",
        "split",
        "--repeats",
        "2",
        "--out",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "classify.json").read_text())
    assert [r["clusters"] for r in result["table"]] == [4, 8]
    assert result["n_test"] == 500 and result["n_train"] == 1500
    for row in result["table"]:
        assert np.array(row["confusion"]).sum() == 500
        assert 0 < row["error"] < 0.1  # the rooms are well separated
    assert result["comparison"]["random_forest"]["error"] < 0.05
    assert (tmp_path / "confusion_k4.png").exists() and (
        tmp_path / "error_vs_clusters.png"
    ).exists()


def test_kmeans_run_evaluates_and_mlp_on_cluster_features(real_data, tmp_path):
    from mapscope.mlp.train import MLPConfig, train
    from mapscope.workflows.evaluate import evaluate

    metrics = train(
        tmp_path / "mlp",
        MLPConfig(epochs=10, max_train=20000, cluster_features=30, lr=5e-4),
        real_data,
    )
    config = json.loads((tmp_path / "mlp/config.json").read_text())
    assert config["model"]["layers"] == [30, 70, 30, 10]
    assert config["effective_l2"] == pytest.approx(0.1 * 30 / 784)
    assert metrics["test_accuracy"] > 0.8
    result = evaluate(tmp_path / "mlp", data_root=real_data)
    assert result.accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_cli_features_analyze_fit_pca(cli, tmp_path):
    def ok(*args):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ok(
        "kmeans",
        "features",
        "--k",
        "10,20",
        "--train-mlp",
        "--mlp-epochs",
        "10",
        "--silhouette-sample",
        "1000",
        "--max-train",
        "5000",
        "--out",
        str(tmp_path / "f"),
    )
    features = json.loads((tmp_path / "f/features.json").read_text())
    assert [r["k"] for r in features["rows"]] == [10, 20]
    assert all(r["test_accuracy"] > 0.5 and r["fit_seconds"] > 0 for r in features["rows"])
    assert features["pixels_784"]["test_accuracy"] > 0.75
    assert features["provenance"]["settings"]["max_train"] == 5000
    assert json.loads((tmp_path / "f/mlp_k10/metrics.json").read_text())["n_train"] == 5000
    out = ok("kmeans", "analyze", "--dataset", "wifi", "--k", "2..6", "--out", str(tmp_path / "a"))
    assert "suggested k" in out
    assert len(json.loads((tmp_path / "a/analyze.json").read_text())["rows"]) == 5
    ok("kmeans", "fit", "--dataset", "wifi", "--clusters", "8", "--out", str(tmp_path / "run"))
    out = ok("evaluate", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "e"))
    assert "room 4" in out
    confusion = json.loads((tmp_path / "e/confusion.json").read_text())
    assert np.array(confusion["matrix"]).sum() == 500 and confusion["accuracy"] > 0.9
    ok("pca", "--dataset", "wifi", "--out", str(tmp_path / "p"))
    ratio = json.loads((tmp_path / "p/pca.json").read_text())["explained_variance_ratio"]
    assert ratio[0] > ratio[1] > 0 and sum(ratio) == pytest.approx(1.0, abs=1e-6)
