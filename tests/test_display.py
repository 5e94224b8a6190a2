"""Results show themselves in Jupyter (``_repr_html_``, ``_repr_png_``), checked without a
notebook server: the repr methods are called and their content read."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from mapscope.report.display import html_card
from mapscope.runs import Run


def _pictures(html: str) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(data)))
        for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    ]


def test_a_card_escapes_what_it_shows():
    html = html_card("<b>run</b>", [("path", "a<b>&c")], None, (["x"], [["<i>"]]))
    assert "<b>run</b>" not in html and "&lt;b&gt;run&lt;/b&gt;" in html
    assert "a&lt;b&gt;&amp;c" in html and "&lt;i&gt;" in html


def test_a_run_shows_a_card_with_its_curves(cnn_run):
    html = Run.open(cnn_run)._repr_html_()
    assert "mapscope CNN run" in html and "test accuracy" in html and "mnist" in html
    (curves,) = _pictures(html)
    assert curves.width > 200  # the run's own curves.png


def test_results_show_their_figure_and_numbers(cnn_run, real_data):
    from mapscope.workflows.compare import compare_classes
    from mapscope.workflows.evaluate import evaluate
    from mapscope.workflows.oip import oip_layer

    run = Run.open(cnn_run)
    evaluation = evaluate(run, "test", data_root=real_data)
    html = evaluation._repr_html_()
    assert f"{evaluation.accuracy:.4f}" in html and "precision" in html
    assert html.count("<tr>") >= 11  # a row per class under the header
    (confusion,) = _pictures(html)
    assert confusion.width > 200
    assert evaluation._repr_png_()[:4] == b"\x89PNG"

    inspection = run.inspection(real_data)
    comparison = compare_classes(inspection, "Conv2D_3", "test", "4", "9")
    html = comparison._repr_html_()
    best = comparison.ranking()[0]
    assert "Conv2D_3: 4 against 9" in html and f"{best['effect_size']:+.2f}" in html
    assert len(_pictures(html)) == 1

    oips = oip_layer(inspection, "Conv2D_1", [0, 1, 2], steps=5, seed=0)
    html = oips._repr_html_()
    assert "OIPs of Conv2D_1" in html and "3 (0 dead" in html and len(_pictures(html)) == 1


def test_a_figure_left_as_a_cells_value_shows_as_a_picture():
    """mapscope draws without pyplot, so in a kernel it registers the PNG formatter that
    matplotlib's inline backend would have (else a notebook prints "<Figure size ...>")."""
    from IPython.core.interactiveshell import InteractiveShell

    from mapscope.report.figures import new_figure

    shell = InteractiveShell.instance()
    try:
        fig = new_figure(2, 1)
        fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
        shown, _ = shell.display_formatter.format(fig)
        assert shown["image/png"][:4] == b"\x89PNG"
    finally:
        InteractiveShell.clear_instance()


def test_clustering_results_show_their_figure_and_table(real_data):
    from mapscope.cluster.analysis import analyze
    from mapscope.cluster.classify import classify_sweep
    from mapscope.cluster.pca import pca_study
    from mapscope.workflows.feature_sweep import feature_sweep

    analysis = analyze("wifi", [2, 3, 4, 5], silhouette_sample=300, data_root=real_data)
    html = analysis._repr_html_()
    assert "How many clusters in wifi?" in html and "silhouette" in html
    assert html.count("<tr>") >= 1 + 2 + 4 and len(_pictures(html)) == 1

    sweep = classify_sweep("wifi", [4, 8], data_root=real_data)
    html = sweep._repr_html_()
    row = sweep.table[1]
    assert "KMeans as a classifier on wifi" in html and f"{row['error']:.4g}" in html
    assert "random_forest" in html and "knn" in html and len(_pictures(html)) == 1

    study = pca_study("wifi", data_root=real_data)
    html = study._repr_html_()
    ratio = study.components["explained_variance_ratio"]
    assert f"{ratio[0]:.3f}" in html and len(_pictures(html)) == 1

    features = feature_sweep([5, 10], silhouette_sample=300, max_train=2000, data_root=real_data)
    html = features._repr_html_()
    assert "KMeans distances as features" in html and html.count("<tr>") >= 2 + 3
    assert features._repr_png_()[:4] == b"\x89PNG"
