"""One number, one place: a quantity that two commands or pages show comes from one function, so
``mapscope compare``, the Python API and the atlas agree to the last digit."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import mapscope
from mapscope.inspect.compare import class_separation
from mapscope.io import read_json
from mapscope.metrics import confusion_matrix, effect_size
from mapscope.runs import Run
from mapscope.workflows.compare import compare_classes

# the atlas these tests browse is built once, so xdist runs them all in one worker
pytestmark = pytest.mark.xdist_group(name="atlas")

ROOT = Path(mapscope.__file__).parent


def test_compare_the_api_and_the_atlas_class_page_report_the_same_effect_sizes(
    cnn_run, atlas_site, real_data, mapscope, tmp_path
):
    atlas, site = atlas_site
    profile = atlas.classes[4]
    other = profile["confuser"]
    assert other is not None  # the quick CNN takes some 4s for another class
    shown = dict((layer, plus + minus) for layer, plus, minus in profile["separation"])
    page = shown["Conv2D_3"]
    assert len(page) >= 5

    api = compare_classes(Run.open(cnn_run).inspection(real_data), "Conv2D_3", "test", 4, other)
    # its confused images are captioned as evaluate's galleries caption them
    four, confuser = api.class_names
    assert len(api.a_as_b) and api.confused_titles[: len(api.a_as_b)] == [
        f"#{i}\npred {confuser}\ntrue {four}" for i in api.a_as_b
    ]
    code, out, _ = mapscope(
        "compare",
        "--model",
        cnn_run,
        "--layer",
        "Conv2D_3",
        "--classes",
        f"4,{other}",
        "--out",
        tmp_path / "c",
    )
    assert code == 0
    ranking = {
        r["unit"]: r["effect_size"] for r in read_json(tmp_path / "c/separation.json")["ranking"]
    }
    html = (site / "classes/4.html").read_text()
    for unit, d in page:
        assert d == api.separation.effect_size[unit] == ranking[unit]  # to the last digit
        assert f"({d:+.2f})" in html
    printed = dict(re.findall(r"unit\s+(\d+): d = ([+-]\d\.\d\d)", out))
    assert printed and all(f"{ranking[int(u)]:+.2f}" == d for u, d in printed.items())
    # the units the page calls strongest either way are compare's strongest either way
    d = api.separation.effect_size
    assert [u for u, _ in page if d[u] > 0] == list(
        np.argsort(-d)[: len([v for _, v in page if v > 0])]
    )


def test_the_atlas_confusion_is_evaluates_confusion(
    cnn_run, atlas_site, real_data, mapscope, tmp_path
):
    atlas, _ = atlas_site
    code, _, _ = mapscope("evaluate", "--model", cnn_run, "--out", tmp_path / "e")
    assert code == 0
    evaluated = np.array(read_json(tmp_path / "e/confusion.json")["matrix"])
    np.testing.assert_array_equal(atlas.confusion(), evaluated)
    np.testing.assert_array_equal(
        atlas.confusion(), confusion_matrix(atlas.labels, atlas.predicted, len(atlas.class_names))
    )


def test_effect_size_is_cohens_d_with_the_pooled_sample_deviation():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 2.0, (40, 3)), rng.normal(0.0, 1.0, (25, 3))
    pooled = np.sqrt((39 * a.var(0, ddof=1) + 24 * b.var(0, ddof=1)) / 63)
    np.testing.assert_allclose(effect_size(a, b), (a.mean(0) - b.mean(0)) / pooled)
    assert effect_size(np.ones((3, 1)), np.ones((4, 1)))[0] == 0.0  # constant groups: no effect
    labels = np.array([0] * 40 + [1] * 25)
    sep = class_separation(np.concatenate([a, b]), labels, 0, 1)
    np.testing.assert_array_equal(sep.effect_size, effect_size(a, b))


@pytest.mark.parametrize(
    ("quantity", "pattern"),
    [
        ("Cohen's d", r"\.var\(.*ddof|pooled\s*="),
        ("confusion matrix", r"np\.add\.at\(\s*matrix"),
    ],
)
def test_each_quantity_has_one_definition(quantity, pattern):
    """grep finds one Cohen's d and one confusion matrix in the package: ``metrics.py``."""
    found = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if re.search(pattern, path.read_text())
    ]
    assert found == ["metrics.py"], f"{quantity} computed in {found}"


def test_the_atlas_pages_compute_no_statistics():
    """The atlas's page writer renders numbers; it never takes a deviation or an effect size
    (those come from the compute layer: ``atlas/build.py`` calling ``inspect`` and ``metrics``)."""
    offenders = []
    for path in [ROOT / "atlas" / "site.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("std", "var"):
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Name) and node.id in ("effect_size", "class_separation"):
                offenders.append(f"{path.name}:{node.lineno} {node.id}")
    assert not offenders, offenders
