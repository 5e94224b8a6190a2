"""The live app in a real browser: Debian's Chromium driven by Playwright, as the atlas test.

Draws with the mouse (a vertical stroke, a closed loop, a 7) and with touch at phone width,
starts from test image 1302, follows a unit to its page (the atlas's, or the app's own with its
OIP), moves an autoencoder's slider, and serves a user's own LeNet-5. Screenshots land in
$MAPSCOPE_SCREENSHOTS (default: the test's temporary folder); the README's picture is one.
Speed is measured by benchmarks/live.py, not here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from mapscope.inspect.inspection import Inspection
from mapscope.runs import Run

# the atlas these tests browse is built once, so xdist runs them all in one worker
pytestmark = pytest.mark.xdist_group(name="atlas")

VERTICAL = [(0.5, 0.18), (0.5, 0.82)]
LOOP = [(0.5 + 0.2 * math.sin(2 * math.pi * t / 24), 0.5 - 0.3 * math.cos(2 * math.pi * t / 24))
        for t in range(25)]  # fmt: skip
SEVEN = [(0.26, 0.24), (0.74, 0.24), (0.46, 0.82)]


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("MAPSCOPE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("live-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def cnn_server(cnn_run, atlas_site, real_data):
    server = Run.open(cnn_run).live(atlas=atlas_site[1], data_root=real_data, alike_images=2000)
    yield server
    server.stop()


class LivePage:
    """The drawing page, with every console error and failed request kept."""

    def __init__(self, browser, url: str, **context):
        options = {"viewport": {"width": 1280, "height": 900}, **context}
        self.context = browser.new_context(bypass_csp=True, **options)  # for wait_for_function
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", self._console)
        self.page.goto(url)
        self.page.wait_for_function("window.mapscopeLive && window.mapscopeLive.ready")
        self.settled()

    def _console(self, message):
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def settled(self):
        """Wait until the answer to the latest frame sent is on screen."""
        self.page.wait_for_function(
            "mapscopeLive.sent && mapscopeLive.painted === mapscopeLive.sent"
        )

    def stroke(self, points, touch: bool = False):
        box = self.page.locator("#pad").bounding_box()
        xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
        if touch:
            cdp = self.context.new_cdp_session(self.page)
            kinds = ["touchStart", *["touchMove"] * (len(xy) - 1)]
            for kind, (x, y) in zip(kinds, xy, strict=True):
                cdp.send(
                    "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]}
                )
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            mouse = self.page.mouse
            mouse.move(*xy[0])
            mouse.down()
            for x, y in xy[1:]:
                mouse.move(x, y, steps=6)
            mouse.up()
        self.settled()

    def predicted(self) -> str:
        return self.page.locator("#top-class").get_attribute("data-class")

    def clear(self):
        self.page.click("#clear")
        self.settled()

    def stats(self, name: str):
        return self.page.evaluate(f"window.mapscopeLive.{name}")


def test_draw_and_watch_the_cnn_think(browser, cnn_server, shots):
    live = LivePage(browser, cnn_server.url)
    page = live.page
    live.stroke(VERTICAL)
    assert live.predicted() == "1"
    live.clear()
    assert page.evaluate("document.getElementById('pad').getContext('2d')"
                         ".getImageData(0, 0, 280, 280).data.every((v, i) => i % 4 === 3 || v === 0)")  # fmt: skip
    live.stroke(LOOP)
    assert live.predicted() == "0"
    live.clear()
    live.stroke(SEVEN)
    assert live.predicted() == "7"
    # every layer answered with the prediction: seven grids and bars, drawn, not blank
    assert page.locator(".layer canvas.grid").count() == 7
    page.wait_for_function(  # the pause's answers: why this 7, and the images alike
        "mapscopeLive.explainedSeq === mapscopeLive.sent && mapscopeLive.alikeSeq === mapscopeLive.sent"
    )
    assert "Grad-CAM" not in page.inner_text("#why-note") or "class 7" in page.inner_text(
        "#why-note"
    )
    assert page.locator("#alike figure").count() == 8
    page.screenshot(path=str(shots / "live.png"))
    # start from test image 1302 (a 1) and edit it
    page.fill("#index", "1302")
    page.click("#load")
    page.wait_for_function("document.getElementById('origin').textContent.includes('1302')")
    live.settled()
    assert live.predicted() == "1" and not page.is_checked("#centre")
    explained = live.stats("explanations")
    page.select_option("#method", "ig")
    page.wait_for_function(f"mapscopeLive.explanations > {explained}")
    page.wait_for_function("document.getElementById('why-note').textContent.includes('integrated')")
    latencies = live.stats("latencies")  # the page times stroke -> repaint (benchmarks/live.py)
    assert latencies and all(item["roundTrip"] > 0 for item in latencies)
    # a unit of Conv2D_3 opens its atlas page; Back returns to the drawing
    grid = page.locator(".layer[data-layer=Conv2D_3] canvas.grid")
    tile = grid.evaluate("c => c.width / 16")
    grid.click(position={"x": 5 * tile + 3, "y": 3})
    page.wait_for_url("**/atlas/layers/Conv2D_3/units/5.html")
    assert "Conv2D_3" in page.title() and page.locator("img").count() > 0
    page.go_back()
    page.wait_for_function("window.mapscopeLive && window.mapscopeLive.ready")
    assert not live.problems, live.problems
    live.context.close()


def test_at_phone_width_with_touch(browser, cnn_server, shots):
    live = LivePage(
        browser,
        cnn_server.url,
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
        device_scale_factor=2,
    )
    live.stroke(VERTICAL, touch=True)
    assert live.predicted() == "1"
    width = live.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide at phone width"
    live.page.screenshot(path=str(shots / "live-phone.png"))
    assert not live.problems, live.problems
    live.context.close()


def test_a_users_lenet_and_its_unit_page(browser, lenet, real_data, shots):
    inspection = Inspection.from_module(
        lenet[0], "mnist", "normalize:0.1307/0.3081", (1, 28, 28), data_root=real_data
    )
    with inspection.live(alike_images=500) as server:
        live = LivePage(browser, server.url)
        page = live.page
        live.stroke(VERTICAL)
        assert live.predicted() == "1"
        first = page.locator(".layer canvas.grid").first
        name = page.locator(".layer").first.get_attribute("data-layer")
        first.click(position={"x": 3, "y": 3})
        page.wait_for_url(f"**/unit/{name}/0")
        page.wait_for_function(
            "window.mapscopeUnit && mapscopeUnit.mapShown && mapscopeUnit.oipLoaded"
        )
        assert page.evaluate("document.getElementById('oip').naturalWidth") == 28
        page.screenshot(path=str(shots / "live-unit.png"))
        assert not live.problems, live.problems
        live.context.close()


def test_an_autoencoders_sliders_move_its_decoded_image(browser, ae_run, real_data, shots):
    with Run.open(ae_run).live(data_root=real_data, alike_images=500) as server:
        live = LivePage(browser, server.url)
        page = live.page
        live.stroke(LOOP)
        assert page.is_visible("#ae-panel") and not page.is_visible("#prediction-panel")

        def picture():
            return page.evaluate("document.getElementById('recon').toDataURL()")

        before = picture()
        slider = page.locator("#axis-sliders input").first
        slider.evaluate("s => { s.value = 2.5; s.dispatchEvent(new Event('input')); }")
        page.wait_for_function("mapscopeLive.decoded > 0")
        assert picture() != before
        page.screenshot(path=str(shots / "live-autoencoder.png"))
        assert not live.problems, live.problems
        live.context.close()
