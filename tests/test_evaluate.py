import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from mapscope.errors import ConfigError
from mapscope.io import read_json
from mapscope.metrics import confusion_matrix, gallery_indices, most_confused, per_class
from mapscope.runs import Run
from mapscope.workflows.evaluate import evaluate, write_evaluation


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    actual = rng.integers(0, 5, 400)
    predicted = np.where(rng.random(400) < 0.7, actual, rng.integers(0, 5, 400))
    predicted[predicted == 4] = 3  # a class never predicted: precision 0 without a warning
    matrix = confusion_matrix(actual, predicted, 5)
    np.testing.assert_array_equal(matrix, sk_confusion(actual, predicted, labels=range(5)))
    p, r, f, support = precision_recall_fscore_support(
        actual, predicted, labels=range(5), zero_division=0
    )
    reports = per_class(matrix, [str(k) for k in range(5)])
    for k, rep in enumerate(reports):
        assert rep.precision == pytest.approx(p[k])
        assert rep.recall == pytest.approx(r[k]) == pytest.approx(rep.tp / rep.an)
        assert rep.f1 == pytest.approx(f[k])
        assert rep.an == support[k] == rep.tp + rep.fn


def test_gallery_indices():
    actual = np.array([4, 4, 9, 4, 1, 9])
    predicted = np.array([4, 9, 4, 4, 4, 9])
    lists = gallery_indices(actual, predicted, 4)
    assert lists["true_positives"] == [0, 3]
    assert lists["false_positives"] == [2, 4]
    assert lists["false_negatives"] == [1]


def test_most_confused_lists_the_largest_mistakes_first():
    matrix = np.array([[50, 3, 7], [3, 40, 0], [1, 9, 60]])
    assert most_confused(matrix, 3) == [(2, 1, 9), (0, 2, 7), (0, 1, 3)]  # ties: row-major
    assert most_confused(matrix, 10)[-1] == (2, 0, 1)  # empty cells are never listed
    assert len(most_confused(matrix, 10)) == 5 and most_confused(matrix, 0) == []


@pytest.mark.parametrize("run_fixture", ["cnn_run", "mlp_run"])
def test_evaluate_runs_of_both_kinds(run_fixture, request, real_data, tmp_path):
    run = request.getfixturevalue(run_fixture)
    result = evaluate(run, "test", ["4"], real_data)
    write_evaluation(result, tmp_path)
    saved = read_json(tmp_path / "confusion.json")
    matrix = np.array(saved["matrix"])
    assert matrix.sum() == 10000
    assert matrix.sum(axis=1).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert saved["accuracy"] == pytest.approx(
        read_json(Run.open(run).files["metrics"])["test_accuracy"], abs=2e-3
    )
    assert result.accuracy > 0.9
    worst = result.most_confused(3)
    actual, predicted, count = worst[0]
    assert count == max(n for a, p, n in worst) == matrix[int(actual), int(predicted)] > 0
    assert result.gallery_figure("4", "false_positives").get_axes()
    with pytest.raises(ConfigError, match="no gallery of class '7'"):
        result.gallery_figure("7")
    gallery = read_json(tmp_path / "gallery_class4.json")
    assert gallery["counts"]["true_positives"] == matrix[4, 4]
    for name in (
        "confusion.png",
        "gallery_class4_true_positives.png",
        "gallery_class4_false_negatives.png",
    ):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
