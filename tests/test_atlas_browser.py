"""The atlas in a real browser: headless Chromium (Debian's package) driven by Playwright.

Follows links model -> layer -> unit -> image and back, checks on every page visited that each
<img> loaded, that no link points at a missing file and that the console stayed clean, sorts
a layer page, and looks at a unit page at phone width. Screenshots of every page kind land in
$MAPSCOPE_SCREENSHOTS (default: the test's temporary folder). In CI this test must run: a
missing browser is a failure with the command that installs it, never a skip.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch

from mapscope.inspect.inspection import Inspection
from mapscope.runs import Run
from mapscope.workflows.attribute import attribute_images

# the atlas these tests browse is built once, so xdist runs them all in one worker
pytestmark = pytest.mark.xdist_group(name="atlas")


class Visit:
    """A page with every console error, page error and failed request recorded."""

    def __init__(self, browser, shots: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.shots = shots
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("requestfailed", self._failed)

    def _failed(self, request):
        # a click that leaves a page cancels what it still loads (ERR_ABORTED): not a fault
        if "ERR_ABORTED" not in (request.failure or ""):
            self.problems.append(f"failed: {request.url} ({request.failure})")

    def _console(self, message):
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def check(self, shot: str) -> None:
        """Every picture loaded, every link resolves, nothing went wrong; then a screenshot."""
        page = self.page
        page.wait_for_load_state("load")
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.getAttribute('src').slice(0, 80))"
        )
        assert not broken, f"{page.url}: images that did not load: {broken[:3]}"
        for href in page.evaluate("Array.from(document.links).map(a => a.href)"):
            url = urlparse(href)
            assert url.scheme == "file", f"{page.url}: a link leaves the site: {href}"
            assert Path(unquote(url.path)).is_file(), f"{page.url}: broken link {href}"
        assert not self.problems, self.problems
        page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)


def _tile_order(page) -> list[str]:
    return page.eval_on_selector_all("#tiles .tile:not([hidden])", "ts => ts.map(t => t.id)")


def test_browse_the_atlas(atlas_site, browser, tmp_path, cnn_run, real_data):
    atlas, site = atlas_site
    shots = Path(os.environ.get("MAPSCOPE_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    visit = Visit(browser, shots)
    page = visit.page

    page.goto((site / "index.html").as_uri())
    assert "accuracy" in page.inner_text("main")
    assert page.locator("#history").is_visible()  # one epoch: a table, not one-dot charts
    visit.check("1-model")

    page.click("header nav >> text=Conv2D_3")  # model -> layer
    assert page.url.endswith("layers/Conv2D_3/index.html")
    visit.check("2-layer")
    by_unit = _tile_order(page)
    assert by_unit[:3] == ["unit-0", "unit-1", "unit-2"]
    page.select_option("#sort", "mean")
    by_mean = _tile_order(page)
    assert sorted(by_mean) == sorted(by_unit) and by_mean != by_unit  # same tiles, new order
    means = atlas.layers["Conv2D_3"].stats.mean.mean(0)
    assert by_mean[0] == f"unit-{int(means.argmax())}"
    conv3 = atlas.layers["Conv2D_3"].stats
    page.select_option("#filter", "dead")
    assert len(_tile_order(page)) == int(conv3.dead.sum())
    page.select_option("#filter", "all")
    # by selectivity: units that rarely or never fire go last, whatever their index
    page.select_option("#sort", "selectivity")
    quiet = conv3.dead | conv3.rarely_fires()
    by_selectivity = [int(t.split("-")[1]) for t in _tile_order(page)]
    assert not quiet[by_selectivity[: int((~quiet).sum())]].any()
    # a preferred class and a minimum selectivity: the state goes into the address
    preferred = conv3.preferred_class(atlas.labels, 10)
    selectivity = conv3.selectivity(atlas.labels, 10)
    cls = int(preferred[np.argmax(np.where(quiet, -1, selectivity))])  # the most selective's
    page.select_option("#cls", str(cls))
    page.eval_on_selector(
        "#minsel", "e => { e.value = '0.2'; e.dispatchEvent(new Event('input')); }"
    )
    chosen = _tile_order(page)
    expected = np.flatnonzero((preferred == cls) & (selectivity >= 0.2))
    assert len(chosen) > 0 and sorted(int(t.split("-")[1]) for t in chosen) == sorted(expected)
    assert "sort=selectivity" in page.url and f"class={cls}" in page.url
    assert "minsel=0.2" in page.url
    visit.check("2-layer-sorted")
    page.click(f"#{chosen[0]}")  # open a unit and come back: the same tiles in the same order
    assert "/units/" in page.url
    page.go_back()
    page.wait_for_load_state("load")
    assert page.input_value("#sort") == "selectivity" and page.input_value("#cls") == str(cls)
    assert _tile_order(page) == chosen
    page.goto((site / "layers/Conv2D_3/index.html").as_uri())
    page.fill("#goto", "28")  # jump to a unit by its number
    page.press("#goto", "Enter")
    page.wait_for_url("**/layers/Conv2D_3/units/28.html")
    examples = page.locator(".examples").first
    assert examples.locator(".rf").count() == 9 and examples.locator("img.crop").count() == 9
    # one named measure: the examples, the OIP and the charts say which number they show
    assert "Measure on this page: peak" in page.inner_text(".measure")
    assert "99th percentile" in page.inner_text("figure >> nth=0")
    assert page.locator("svg[aria-label='histogram of peak'] text", has_text="images").count()
    visit.check("3-unit")
    page.keyboard.press("ArrowRight")  # arrow keys: next and previous unit
    page.wait_for_url("**/units/29.html")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/units/28.html")

    # a thumbnail without a page of its own opens the viewer, which runs the network here
    viewer = page.locator(".examples a.thumb[href*='view.html#']").first
    index = int(viewer.get_attribute("href").split("#")[1])
    viewer.click()
    page.wait_for_selector(f"body[data-ready='{index}']")
    visit.check("8-viewer")
    assert page.locator("#layers canvas").count() == sum(
        d.stats.units for d in atlas.layers.values()
    )
    logits = page.evaluate("Array.from(window.ATLAS_VIEW.seen.at(-1).output.data)")
    np.testing.assert_allclose(
        torch.softmax(torch.tensor(logits), 0).numpy(), atlas.probabilities[index], atol=1e-4
    )
    saliency = np.array(page.evaluate("Array.from(window.ATLAS_VIEW.saliency)"))
    run = Run.open(cnn_run)
    inspection = Inspection(run.module(), run.bundle(real_data))
    captum = attribute_images(inspection, [index], ["saliency"]).maps["saliency"][0]
    np.testing.assert_allclose(saliency.reshape(captum.shape), captum, rtol=1e-3, atol=1e-5)
    page.go_back()

    page.goto((site / "layers/Dense_2/units/3.html").as_uri())
    visit.check("3-unit-dense")
    page.click(".examples a[href*='images/']")  # unit -> image (its best example has a page)
    assert "/images/" in page.url
    assert page.locator("figcaption", has_text="integrated gradients").count() == 1
    # every attribution has a colour scale and shows more than a pixel or two (one extreme
    # pixel used to leave integrated gradients black)
    assert page.locator("figure .cscale").count() == page.locator("img.heat").count() == 4
    coloured = page.eval_on_selector_all(
        "img.heat",
        """images => images.map(img => {
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            const base = [d[0], d[1], d[2]];  // a corner: the colour of "nothing"
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                n += Math.abs(d[i] - base[0]) + Math.abs(d[i + 1] - base[1])
                    + Math.abs(d[i + 2] - base[2]) > 60 ? 1 : 0;
            return n;
        })""",
    )
    assert min(coloured) >= 20, coloured
    visit.check("4-image")
    page.go_back()  # and back
    assert page.url.endswith("layers/Dense_2/units/3.html")
    page.go_forward()
    page.click(".unitrow a.unitlink >> nth=0")  # image -> a unit it drives
    assert "/units/" in page.url
    visit.check("4-image-to-unit")

    page.goto((site / "index.html").as_uri())
    page.click("table.confusion td:not(.diag) a >> nth=0")  # a confusion cell -> its images
    assert "_as_" in page.url
    visit.check("5-confusion-gallery")
    page.click("main p a >> nth=1")  # gallery -> its true class
    assert page.url.split("/")[-1].split(".")[0].isdigit()
    visit.check("6-class")

    # first-layer units: distinct top images, read off the pages themselves (the examples are
    # in the page's HTML, so the files are read without a browser)
    conv1 = atlas.layers["Conv2D_1"].stats.units
    seen: dict[int, int] = {}
    for unit in range(conv1):
        html = (site / f"layers/Conv2D_1/units/{unit}.html").read_text(encoding="utf-8")
        top = html.split('<div class="examples">', 1)[1]
        for number in re.findall(r"<figcaption>#(\d+) ", top)[:3]:
            seen[int(number)] = seen.get(int(number), 0) + 1
    assert 4 * max(seen.values()) <= conv1, max(seen.values())
    page.goto((site / "layers/Conv2D_1/index.html").as_uri())
    assert "Why these examples skip the border" in page.inner_text("#border-note")
    dead = [(n, u) for n, d in atlas.layers.items() for u in np.flatnonzero(d.stats.dead)]
    assert dead, "the fixture's CNN has dead units (ReLU units that never fire)"
    page.goto((site / f"layers/{dead[0][0]}/units/{dead[0][1]}.html").as_uri())
    assert page.locator(".dead-line").is_visible() and page.locator(".examples").count() == 0

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto((site / "layers/Conv2D_3/units/28.html").as_uri())
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the unit page is {overflow}px wider than a phone screen"
    visit.check("7-unit-phone")
    page.close()
    assert len(list(shots.glob("*.png"))) == 11
