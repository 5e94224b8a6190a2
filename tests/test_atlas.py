"""The atlas of a real trained CNN (and MLP): what its pages say, that every link and picture
resolves, that the HTML parses without error, that a rebuild reuses the cache."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import html5lib
import numpy as np
import pytest
from conftest import ATLAS_LAYERS, small_atlas

# the atlas these tests browse is built once, so xdist runs them all in one worker
pytestmark = pytest.mark.xdist_group(name="atlas")


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.refs.append(attrs[key])
        if "id" in attrs:
            self.ids.append(attrs["id"])


def _local_targets(page: Path) -> tuple[list[Path], list[str]]:
    parser = _References()
    parser.feed(page.read_text())
    targets = []
    for ref in parser.refs:
        url = urlparse(ref)
        if url.scheme == "data" or (not url.path and url.fragment):
            continue
        assert not url.scheme and not ref.startswith("/"), f"{page}: non-relative link {ref}"
        targets.append(Path(os.path.normpath(page.parent / unquote(url.path))))
    return targets, parser.ids


def test_dense_2_top_examples_are_images_of_their_own_class(atlas_site):
    """The fixture's CNN saw 6000 images for one epoch (95 %): nearly every top example is of
    the unit's class. (On a 2-epoch CNN all 90 are; benchmarks/atlas.py checks it.)"""
    atlas, _ = atlas_site
    dense_2 = atlas.layers["Dense_2"]
    assert dense_2.top.shape == (10, 9)
    own = atlas.labels[dense_2.top] == np.arange(10)[:, None]
    assert own.sum() >= 85, own.sum()
    assert (atlas.predicted[dense_2.top] == np.arange(10)[:, None]).mean() >= 0.95


def test_every_page_parses_and_every_link_and_picture_resolves(atlas_site):
    atlas, site = atlas_site
    pages = sorted(site.rglob("*.html"))
    units = sum(d.stats.units for d in atlas.layers.values())
    n_classes = len(atlas.class_names)
    # index + a page per layer and per unit + image pages + the image viewer + class pages +
    # confusion galleries
    galleries = int((atlas.confusion() > 0).sum())
    expected = 1 + len(ATLAS_LAYERS) + units + len(atlas.images) + 1 + n_classes + galleries
    assert len(pages) == expected
    strict = html5lib.HTMLParser(strict=True)
    for page in _one_of_each_kind(atlas, site, pages):
        strict.parse(page.read_text())  # raises on any HTML parse error
    files = {p for p in site.rglob("*") if p.is_file()}
    for page in pages:
        targets, ids = _local_targets(page)
        missing = [str(t) for t in targets if t not in files]
        assert not missing, f"{page}: broken links {missing[:3]}"
        assert len(ids) == len(set(ids)), f"{page}: duplicate ids"
    assert (site / "layers/Conv2D_3/units/28.html").is_file()  # a stable URL per unit
    assert 1302 in atlas.images and (site / "images/1302.html").is_file()


def _one_of_each_kind(atlas, site, pages):
    """Every page but the unit pages, and per layer its first, last and dead unit pages: unit
    pages of a layer come from one template, and html5lib reads about 40 pages a second."""
    chosen = [p for p in pages if "units" not in p.parts]
    for name, layer in atlas.layers.items():
        dead = np.flatnonzero(layer.stats.dead)
        for unit in {0, layer.stats.units - 1, *dead[:1].tolist()}:
            chosen.append(site / f"layers/{name}/units/{unit}.html")
    return chosen


def test_unit_page_content(atlas_site):
    atlas, site = atlas_site
    conv = atlas.layers["Conv2D_3"]
    assert conv.field.size == (18, 18) and conv.field.stride == (4, 4)
    unit = int(np.flatnonzero(~conv.stats.dead)[0])
    html = (site / f"layers/Conv2D_3/units/{unit}.html").read_text()
    top = html.split("drive it hardest")[1].split("drive it least")[0]
    assert top.count('class="rf"') == 9  # a receptive-field box on each top image
    assert top.count('class="px crop"') == 9  # and that field zoomed
    assert "Units that fire together" in html and f"oip_{unit}.png" in html
    assert "Measure on this page: peak" in html and "after its ReLU" in html
    assert "A sample across its range" in html and 'id="history"' not in html
    first = (site / "layers/Conv2D_1/units/0.html").read_text()
    assert "its kernel" in first and 'class="cscale"' in first  # a colour scale beside it
    dense = (site / "layers/Dense_1/units/0.html").read_text()
    assert "Strongest incoming weights" in dense and "Conv2D_3/units/" in dense
    assert "Strongest outgoing weights" in dense and "Dense_2/units/" in dense
    image = (site / "images/1302.html").read_text()
    for method in ("saliency", "integrated gradients", "Grad-CAM", "occlusion"):
        assert method in image
    index = (site / "index.html").read_text()
    assert "classes/4_as_9.html" in index or "_as_" in index
    facts = json.loads((site / "atlas.json").read_text())
    assert facts["layers"]["Dense_2"]["top_labels"][3] == [3] * 9
    assert facts["provenance"]["data_checksums"]  # the data the statistics ran over


def test_rebuild_reuses_the_cache(atlas_site, cnn_run, real_data):
    from mapscope.atlas.build import cache_folder

    atlas, site = atlas_site
    again = small_atlas(cnn_run, real_data, site)
    assert again.cached and again.seconds["OIPs"] < 0.5
    np.testing.assert_array_equal(again.layers["Conv2D_3"].top, atlas.layers["Conv2D_3"].top)
    np.testing.assert_array_equal(
        again.layers["Dense_1"].oip["images"], atlas.layers["Dense_1"].oip["images"]
    )
    assert cache_folder(site).is_dir() and list(cache_folder(site).glob("atlas-*.npz"))
    assert not any(p.name.endswith(".npz") for p in site.rglob("*"))  # the site is what ships
    assert sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) < 30e6


def test_cli_atlas_of_an_mlp_and_attribute(cli, mlp_run, cnn_run, tmp_path):
    out = tmp_path / "mlp_atlas"
    done = cli("atlas", "--model", mlp_run, "--out", out, "--oip-steps", "20", "--confused", "2")
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'index.html'}" in done.stdout
    facts = json.loads((out / "atlas.json").read_text())
    assert list(facts["layers"]) == ["Dense_1", "Dense_2", "Dense_3"]
    image = next((out / "images").glob("[0-9]*.html")).read_text()
    assert "integrated gradients" in image and "Grad-CAM" not in image  # no map layer in an MLP
    # the OIP's value is on the page's measure: after Dense_1's sigmoid, so at most 1
    unit = (out / "layers/Dense_1/units/0.html").read_text()
    assert "Measure on this page: value" in unit and "after its Sigmoid" in unit
    assert 0 < float(re.search(r"its value ([0-9.e+-]+)", unit).group(1)) <= 1
    assert "its weights laid out as the image" in unit
    index = (out / "index.html").read_text()
    assert index.count('class="curve"') >= 2 and ">epoch</text>" in index  # 8 epochs: charts

    png = tmp_path / "why.png"
    done = cli("attribute", "--model", cnn_run, "--index", "1302", "--index", "7", "--out", png)
    assert done.returncode == 0, done.stderr
    assert png.stat().st_size > 10_000 and "Grad-CAM on layer Conv2D_3" in done.stdout

    done = cli("attribute", "--model", cnn_run, "--index", "1", "--method", "lime", "--out", png)
    assert done.returncode == 2 and "lime" in done.stderr


def test_bad_atlas_options_are_refused_before_any_work(cli, cnn_run, tmp_path):
    from mapscope.atlas import build_atlas
    from mapscope.errors import ConfigError

    for option, says in (
        ({"examples": 0}, "--examples"),
        ({"split": "valid"}, "--split"),
        ({"oip_steps": 0}, "--oip-steps"),
        ({"methods": ["lime"]}, "lime"),
        ({"layers": ["Conv9"]}, "Conv2D_1"),  # the message lists the valid names
    ):
        with pytest.raises(ConfigError, match=says):
            build_atlas(cnn_run, data_root=tmp_path / "no-data-needed", **option)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    done = cli("atlas", "--model", cnn_run, "--out", other)
    assert done.returncode == 2 and "not an earlier atlas" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and (other / "mine.txt").exists()


def test_first_layer_units_have_distinct_top_images_or_say_why(atlas_site):
    atlas, site = atlas_site
    for name, layer in atlas.layers.items():
        alive = ~layer.stats.dead
        top3 = layer.top[alive, :3]
        images, counts = np.unique(top3, return_counts=True)
        crowded = 4 * counts.max() > alive.sum()
        page = (site / f"layers/{name}/index.html").read_text()
        if crowded:  # the layer page names the image and says why
            assert 'id="border-note"' in page and f"#{images[counts.argmax()]}" in page, name
    conv1 = atlas.layers["Conv2D_1"]
    assert conv1.stats.inside is not None  # standardised MNIST: its border pixels are rare
    _, counts = np.unique(conv1.top[:, :3], return_counts=True)
    assert 4 * counts.max() <= conv1.stats.units, counts.max()
    # over every position one image would crowd them all: the page says which and why
    note = (site / "layers/Conv2D_1/index.html").read_text()
    assert "Why these examples skip the border" in note
    assert f"#{conv1.border['image']}" in note and conv1.border["units"] > conv1.stats.units / 4


def test_every_thumbnail_opens_a_page(atlas_site):
    """A thumbnail leads to the image's own page or to the viewer, and the viewer holds every
    image any page links it to; labels are on the page, not only in a tooltip."""
    atlas, site = atlas_site
    data = (site / "images/data.js").read_text()
    shown = set(json.loads(data[data.index("{") : data.rindex("}") + 1])["images"]["index"])
    thumbs = 0
    for page in site.rglob("*.html"):
        html = page.read_text()
        for anchor in re.findall(r'<a class="thumb" href="([^"]+)"', html):
            thumbs += 1
            path, _, index = anchor.partition("#")
            assert (page.parent / path).resolve().is_file(), f"{page}: {anchor}"
            if index:
                assert int(index) in shown, f"{page}: {anchor} is not in the viewer's data"
        for index in re.findall(r"view\.html#(\d+)", html):
            assert int(index) in shown, f"{page}: view.html#{index}"
        assert html.count('<a class="thumb"') == html.count('alt="test image'), page
    assert thumbs > 1000
    gallery = next(site.glob("classes/*_as_*.html")).read_text()
    assert gallery.count('<span class="cap">#') == gallery.count('<a class="thumb"') > 0


def test_dead_units_are_one_line_and_rare_ones_flagged(atlas_site):
    atlas, site = atlas_site
    dead = 0
    for name, layer in atlas.layers.items():
        units = json.loads(
            re.search(
                r'id="units-data">(.*?)</script>', (site / f"layers/{name}/index.html").read_text()
            ).group(1)
        )
        assert [u["rare"] for u in units] == layer.stats.rarely_fires().tolist()
        dead += int(layer.stats.dead.sum())
        for unit in np.flatnonzero(layer.stats.dead)[:2]:
            html = (site / f"layers/{name}/units/{unit}.html").read_text()
            assert "Never fires on the test split" in html
            assert "drive it hardest" not in html and "<svg" not in html
    assert dead > 0  # the fixture's CNN has some


def test_a_one_epoch_run_shows_a_table_not_charts(atlas_site):
    atlas, site = atlas_site
    assert len(atlas.history) == 1
    index = (site / "index.html").read_text()
    assert 'id="history"' in index and "too few for a chart" in index
    assert 'class="curve"' not in index
