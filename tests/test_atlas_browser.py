"""The atlas in a real browser: headless Chromium (Debian's package) driven by Playwright.

Follows links model -> layer -> unit -> image and back, checks on every page visited that each
<img> loaded, that no link points at a missing file and that the console stayed clean, sorts
a layer page, and looks at a unit page at phone width. Screenshots of every page kind land in
$MAPSCOPE_SCREENSHOTS (default: the test's temporary folder). In CI this test must run: a
missing browser is a failure with the command that installs it, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse


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


def test_browse_the_atlas(atlas_site, browser, tmp_path):
    atlas, site = atlas_site
    shots = Path(os.environ.get("MAPSCOPE_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    visit = Visit(browser, shots)
    page = visit.page

    page.goto((site / "index.html").as_uri())
    assert "accuracy" in page.inner_text("main")
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
    page.select_option("#filter", "dead")
    assert len(_tile_order(page)) == int(atlas.layers["Conv2D_3"].stats.dead.sum())
    page.select_option("#filter", "all")
    visit.check("2-layer-sorted")

    page.click("#unit-28")  # layer -> unit
    assert page.url.endswith("layers/Conv2D_3/units/28.html")
    assert page.locator(".rf").count() == 9
    visit.check("3-unit")
    page.click("a[rel=next]")
    assert page.url.endswith("units/29.html")
    page.go_back()

    page.goto((site / "layers/Dense_2/units/3.html").as_uri())
    visit.check("3-unit-dense")
    page.click(".examples a[href*='images/']")  # unit -> image (its best example has a page)
    assert "/images/" in page.url
    assert page.locator("figcaption", has_text="integrated gradients").count() == 1
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

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto((site / "layers/Conv2D_3/units/28.html").as_uri())
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the unit page is {overflow}px wider than a phone screen"
    visit.check("7-unit-phone")
    page.close()
    assert len(list(shots.glob("*.png"))) == 10
