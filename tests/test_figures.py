"""Figures read at a glance: no two pieces of text on top of each other.

``overlapping_texts`` draws a figure and compares the window extents of every visible text
artist (titles, labels, tick labels, annotations); a pair that overlaps is a defect a person
would see, like the unit numbers that printed twice as "102102" in ``separation.png``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.text import Text

from mapscope.inspect.compare import class_separation
from mapscope.report import ae as ae_figures
from mapscope.report.compare import plot_separation
from mapscope.report.curves import plot_ae_history


def undrawn_tick_labels(fig) -> set[int]:
    """Tick labels whose tick lies outside its axis' view: matplotlib keeps them visible but
    does not draw them."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                location = tick.get_loc()
                if location is None or not low - span <= location <= high + span:
                    hidden.update((id(tick.label1), id(tick.label2)))
    return hidden


def overlapping_texts(fig, tolerance: float = 1.0) -> list[tuple[str, str]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = undrawn_tick_labels(fig)
    boxes = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in hidden:
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((text.get_text(), box.expanded(1, 1).padded(-tolerance)))
    return [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]


@pytest.fixture(scope="module")
def separation():
    rng = np.random.default_rng(0)
    acts = rng.random((200, 128, 3, 3)).astype(np.float32)
    labels = np.repeat([4, 9], 100)
    acts[labels == 4, :40] += 0.5  # units 0..39 separate the classes
    return class_separation(acts, labels, 4, 9)


@pytest.mark.parametrize("top", [16, 8, 1])
def test_separation_bars_and_maps_share_columns_without_overlapping_text(separation, top):
    fig = plot_separation(separation, ("4", "9"), "Conv2D_3", top)
    assert overlapping_texts(fig) == []
    bars = fig.axes[0]
    ticks = [t.get_text() for t in bars.get_xticklabels()]
    assert ticks == [str(u) for u in separation.units[:top]]  # each unit named once, under its bar
    first_map = fig.axes[1]
    column = first_map.get_position()
    centre = bars.transData.transform((0, 0))[0] / fig.bbox.width
    assert column.x0 < centre < column.x1  # bar 0 stands over map column 0
    scales = [
        ax.get_ylabel() for ax in fig.axes if ax.get_ylabel() in ("mean activation", "difference")
    ]
    assert scales == ["mean activation", "difference"]  # one for both class means, one for A - B


def test_autoencoder_figures_have_no_overlapping_text():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(500, 16))
    labels = rng.integers(0, 10, 500)
    names = tuple(str(i) for i in range(10))
    images = rng.random((12, 1, 28, 28))
    figures = [
        ae_figures.plot_components(codes, np.full(16, 0.02)),
        ae_figures.plot_radii(
            {"data": np.linalg.norm(codes, axis=1), "uniform": rng.random(100)}, 16
        ),
        ae_figures.plot_nearest({"test": rng.random(100), "gmm": rng.random(100)}, 0.9),
        ae_figures.plot_correlation(np.corrcoef(codes, rowvar=False)),
        ae_figures.plot_pca(np.full(16, 1 / 16), codes[:, :2], labels, names),
        ae_figures.plot_pairs(codes, labels, names, [(0, 1), (2, 3)]),
        ae_figures.plot_reconstructions(
            images[:5], images[5:10], [f"test #{i}: 7" for i in range(5)], np.full(5, 0.01)
        ),
        ae_figures.plot_strips(
            [images[:10], images[:10]], ["test #0 -> #1", "test #2 -> #3"], "interpolation"
        ),
        plot_ae_history([{"epoch": 1, "loss": 0.2, "val_loss": 0.1, "lr": 1e-3}]),
    ]
    for fig in figures:
        assert overlapping_texts(fig) == [], fig.axes[0].get_title()


def test_the_layout_check_sees_text_on_text():
    from mapscope.report.figures import new_figure

    fig = new_figure(3, 2)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title("102")
    ax.text(0.5, 1.0, "102", transform=ax.transAxes, ha="center", va="bottom")
    assert overlapping_texts(fig)
