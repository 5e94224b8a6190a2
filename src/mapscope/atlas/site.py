"""The atlas as a static website: Jinja2 templates filled from an ``Atlas``.

``write_atlas(atlas, out)`` builds the whole site in a temporary folder beside ``out`` and then
swaps it in, so a browser never sees half a site and a failed build leaves the old one. Links
are relative; the pages need no server, no network and no CDN. The cache of computed arrays
lives beside the site (``build.cache_folder``), so the folder holds only what one publishes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import zlib
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from mapscope import __version__
from mapscope.atlas import pictures
from mapscope.atlas.build import CACHE, RARE_REACH, Atlas, LayerData
from mapscope.atlas.network import float32_base64
from mapscope.inspect.attribution import METHODS
from mapscope.metrics import per_class

GALLERY_SIZE = 48
MAP_COLOURS = "magma"  # a unit's map; attributions use RdBu_r (signed) or inferno
COLOUR_MAPS = (MAP_COLOURS, "RdBu_r", "inferno")  # every colour map the pages draw with


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    folder = Path(str(files("mapscope.atlas") / "templates"))
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class _Writer:
    """Writes files under a root with the user's umask applied (plain ``open``)."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0
        self.bytes = 0

    def write(self, relative: str, data: bytes | str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = data.encode() if isinstance(data, str) else data
        path.write_bytes(data)
        self.count += 1
        self.bytes += len(data)


def clipped_bound(magnitude: np.ndarray) -> float:
    """Where a colour scale of non-negative values ends: at the largest value, unless that is
    more than twice the 99th percentile (one pixel of huge value, such as a rarely inked pixel
    under standardisation, would leave the rest black); then at twice the 99th percentile."""
    top = float(magnitude.max())
    p99 = float(np.percentile(magnitude, 99))
    return (min(top, 2 * p99) if p99 > 0 else top) or 1.0


def image_href(atlas: Atlas, index: int) -> str:
    """Where a thumbnail of image ``index`` leads, from the site's root: its own page when it
    has one (with Captum's attributions), else the image viewer, which runs the network on it."""
    index = int(index)
    return f"images/{index}.html" if index in atlas.images else f"images/view.html#{index}"


class _Thumbnails:
    """Inline PNGs of split images, each encoded once however many pages show it."""

    def __init__(self, atlas: Atlas):
        self.atlas = atlas
        self.cache: dict[int, str] = {}

    def src(self, index: int) -> str:
        if index not in self.cache:
            self.cache[index] = pictures.data_uri(pictures.raw_image(self.atlas.raw[index]))
        return self.cache[index]

    def image(self, index: int) -> dict[str, Any]:
        a = self.atlas
        return {
            "index": int(index),
            "src": self.src(index),
            "label": a.class_names[a.labels[index]],
            "predicted": a.class_names[a.predicted[index]] if a.classifier else None,
            "page": int(index) in a.images,
            "href": image_href(a, index),
        }


def _cell_colours(matrix: np.ndarray) -> list[list[str]]:
    rows = matrix.sum(1, keepdims=True).clip(min=1)
    share = matrix / rows
    colours = []
    for t, row in enumerate(share):
        line = []
        for p, s in enumerate(row):
            hue = 210 if t == p else 20  # blue diagonal, orange mistakes
            strength = s if t == p else min(1.0, s * 8)
            line.append(f"hsl({hue} 80% {int(97 - 45 * strength)}%)")
        colours.append(line)
    return colours


SHORT_RUN = 3  # fewer epochs than this: a table, not charts of one or two points


def _history_table(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A short run's history as rows of numbers (a chart of one point says nothing)."""
    if not history or len(history) >= SHORT_RUN:
        return None
    keys = [k for k in history[0] if k != "epoch" and isinstance(history[0][k], int | float)]
    rows = [[row.get("epoch", i + 1), *(row.get(k) for k in keys)] for i, row in enumerate(history)]
    return {"keys": keys, "rows": rows}


def _curves(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not history or len(history) < SHORT_RUN:
        return []
    keys = [
        k
        for k in history[0]
        if k not in ("epoch", "seconds", "lr") and isinstance(history[0][k], int | float)
    ]
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    series = []
    for key in keys:
        values = [row.get(key) for row in history]
        if all(isinstance(v, int | float) and np.isfinite(v) for v in values):
            series.append({"name": key, "values": [float(v) for v in values], "epochs": epochs})
    return series


def _unit_rows(atlas: Atlas, data: LayerData) -> list[dict[str, Any]]:
    s, n_classes = data.stats, len(atlas.class_names)
    selectivity = s.selectivity(atlas.labels, n_classes)
    preferred = s.preferred_class(atlas.labels, n_classes)
    dead, rare, rate = s.dead, s.rarely_fires(), s.firing_rate()
    rows = []
    for unit in range(s.units):
        rows.append(
            {
                "unit": unit,
                "mean": float(s.mean[:, unit].mean()),
                "peak": float(s.peak[:, unit].max()),
                "selectivity": float(selectivity[unit]),
                "dead": bool(dead[unit]),
                "rare": bool(rare[unit]),
                "firing": float(rate[unit]),
                "best_class": None if preferred[unit] < 0 else int(preferred[unit]),
            }
        )
    return rows


def _layer_info(atlas: Atlas, data: LayerData) -> dict[str, Any]:
    return {
        "name": data.name,
        "units": data.stats.units,
        "is_map": data.stats.is_map,
        "shape": list(data.stats.shape),
        "field": list(data.field.size) if data.field else None,
        "stride": list(data.field.stride) if data.field else None,
        "dead": int(data.stats.dead.sum()),
        "rare": int(data.stats.rarely_fires().sum()),
        "activation": data.activation,
    }


def _measure(data: LayerData) -> dict[str, str]:
    """The name and the definition of the one activation measure a unit page shows."""
    after = (
        f"after its {data.activation}"
        if data.activation
        else "the layer's output (it applies no activation function of its own)"
    )
    if not data.stats.is_map:
        return {"name": "value", "text": f"the node's output on an image, {after}"}
    h, w = data.stats.shape[1:]
    where = f"of the unit's {h}x{w} map"
    if data.stats.inside is not None:
        where += (
            f", over the {int(data.stats.inside.sum())} positions whose receptive field holds no "
            "rarely inked pixel (see below)"
        )
    return {"name": "peak", "text": f"the largest value {where} on an image, {after}"}


def _box(atlas: Atlas, data: LayerData, index: int, unit: int) -> tuple[int, int, int, int] | None:
    if data.field is None:
        return None
    row, col = data.stats.peak_position(index, unit)
    height, width = atlas.raw.shape[1:3]
    return data.field.box(row, col, height, width)


def _examples(
    atlas, data, unit, positions, thumbs, maps=None, scale=None, crops=True
) -> list[dict]:
    """Images with their value on the page's measure; the receptive field of the winning
    position as a box (percent of the image) and a zoomed crop; the unit's map when given."""
    s = data.stats
    height, width = atlas.raw.shape[1:3]
    items = []
    for rank, index in enumerate(positions):
        item = {"image": thumbs.image(index), "value": float(s.peak[index, unit])}
        item["map"], item["box"], item["crop"] = None, None, None
        if maps is not None:
            item["map"] = pictures.data_uri(
                pictures.colour(maps[rank], MAP_COLOURS, lo=scale[0], hi=scale[1])
            )
        box = _box(atlas, data, index, unit)
        if box is not None:
            t, left, b, right = box
            item["box"] = {
                "top": 100 * t / height,
                "left": 100 * left / width,
                "height": 100 * (b - t) / height,
                "width": 100 * (right - left) / width,
            }
            if crops and (b - t) * (right - left) < height * width:
                crop = atlas.raw[index][t:b, left:right]
                item["crop"] = pictures.data_uri(pictures.raw_image(crop))
        items.append(item)
    return items


def _border_note(atlas: Atlas, data: LayerData) -> dict[str, Any] | None:
    """What the page says when a layer's top examples are shared by many units: why, in the
    numbers of the data."""
    chosen = data.border
    crowding = data.crowding
    note = None
    if chosen is not None:
        note = {**chosen, "avoided": True}
    if crowding is not None and 4 * crowding["units"] > crowding["of"]:
        note = {**crowding, "avoided": False, "after": chosen is not None}
    if note is None:
        return None
    row, col = note["pixel"]
    note["reach"] = float(atlas.pixel_reach[row, col])
    note["limit"] = RARE_REACH
    note["label"] = atlas.class_names[atlas.labels[note["image"]]]
    return note


def _write_layer(atlas, data, render, out: _Writer, thumbs: _Thumbnails, common) -> None:
    name, s = data.name, data.stats
    rows = _unit_rows(atlas, data)
    info = _layer_info(atlas, data)
    prefix = f"layers/{name}"
    oip = data.oip or {}
    snapshots = sorted(int(k.split("_")[1]) for k in oip if k.startswith("snapshot_"))
    for unit in range(s.units):  # tiles and unit links everywhere show this one picture
        if "images" in oip:
            out.write(f"{prefix}/img/oip_{unit}.png", pictures.grey(oip["images"][unit]))
    border = _border_note(atlas, data)
    if border is not None:
        thumbs.image(border["image"])  # the note links to it: the viewer must know it
    page = {**common, "root": "../../", "current_layer": name, "title": name, "layer": info}
    out.write(f"{prefix}/index.html", render("layer.html", **page, units=rows, border=border))
    measure = _measure(data)
    counts, edges = s.histogram(of="peak")
    class_means = s.class_means(atlas.labels, len(atlas.class_names), of="peak")
    correlated, r = s.correlated()
    signed_maps = s.highest.min() < 0
    for unit in range(s.units):
        u = dict(rows[unit])
        context = {
            **page,
            "root": "../../../",
            "title": f"{name} unit {unit}",
            "u": u,
            "measure": measure,
            "previous": unit - 1 if unit > 0 else None,
            "next": unit + 1 if unit + 1 < s.units else None,
            "class_links": [f"../../../classes/{c}.html" for c in range(len(atlas.class_names))],
        }
        if u["dead"]:  # one line: nothing it could show
            out.write(f"{prefix}/units/{unit}.html", render("unit.html", **context))
            continue
        scale = None
        if data.top_maps is not None:  # up to the best example's peak: brighter is beyond
            bound = float(np.abs(s.peak[data.top[unit], unit]).max()) or 1.0
            scale = (-bound, bound) if signed_maps else (0.0, bound)
        added, added_bound = None, None
        if "images" in oip and "start" in oip:  # what the ascent changed in the start noise
            added = oip["images"][unit] - oip["start"][unit]
            added_bound = clipped_bound(np.abs(added))
        p99 = float(data.p99[unit])
        oip_peak = None if data.oip_peak is None else float(data.oip_peak[unit])
        from_image = int(oip["from_image"][unit]) if "from_image" in oip else -1
        u.update(
            oip_from_image=from_image if from_image >= 0 else None,
            hist_counts=counts[unit].tolist(),
            hist_edges=edges[unit].tolist(),
            class_means=class_means[:, unit].tolist(),
            oip_peak=oip_peak,
            oip_ratio=oip_peak / p99 if oip_peak is not None and p99 > 0 else None,
            p99=p99,
            highest=float(s.highest[:, unit].max()),
            evolution=snapshots,
            evolution_src=(
                pictures.data_uri(
                    pictures.strip(np.stack([oip[f"snapshot_{k}"][unit] for k in snapshots]))
                )
                if snapshots
                else None
            ),
            added_src=(
                pictures.data_uri(pictures.signed(added, added_bound))
                if added is not None
                else None
            ),
            added_bound=added_bound,
            contrast_src=(
                pictures.data_uri(pictures.contrast(oip["images"][unit]))
                if "images" in oip
                else None
            ),
            kernel=(
                pictures.data_uri(pictures.colour(data.kernels[unit], "RdBu_r", symmetric=True))
                if data.kernels is not None
                else None
            ),
            kernel_bound=(
                float(np.abs(data.kernels[unit]).max()) if data.kernels is not None else None
            ),
            incoming=[(*c, True) for c in data.incoming[unit]] if data.incoming else None,
            outgoing=[(*c, True) for c in data.outgoing[unit]] if data.outgoing else None,
            correlated=[(int(j), float(v)) for j, v in zip(correlated[unit], r[unit], strict=True)],
        )
        out.write(
            f"{prefix}/units/{unit}.html",
            render(
                "unit.html",
                **context,
                top=_examples(
                    atlas,
                    data,
                    unit,
                    data.top[unit],
                    thumbs,
                    data.top_maps[unit] if data.top_maps is not None else None,
                    scale,
                ),
                bottom=_examples(atlas, data, unit, data.bottom[unit], thumbs, crops=False),
                sampled=_examples(atlas, data, unit, data.sampled[unit], thumbs, crops=False),
                map_scale=scale,
                border=border,
            ),
        )


def _write_images(atlas, render, out, thumbs, common) -> None:
    for index, page in atlas.images.items():
        probabilities = page["probabilities"]
        attributions = []
        for method, values in page["attributions"].items():
            signed = METHODS[method].signed
            cmap = "RdBu_r" if signed else "inferno"
            magnitude = np.abs(values)
            bound = clipped_bound(magnitude)
            heat = pictures.colour(values, cmap, symmetric=signed, lo=0.0, hi=bound)
            attributions.append(
                {
                    "name": METHODS[method].title,
                    "src": pictures.data_uri(heat),
                    "bar": cmap,
                    "lo": -bound if signed else 0.0,
                    "hi": bound,
                    "beyond": int((magnitude > bound).sum()),
                    "zero": not np.any(values),  # Grad-CAM when no map speaks for the class
                }
            )
        image = {
            **thumbs.image(index),
            "label_index": int(atlas.labels[index]),
            "predicted_index": int(atlas.predicted[index]) if atlas.classifier else None,
            "confidence": float(probabilities.max()) if atlas.classifier else None,
            "probabilities": probabilities.tolist() if atlas.classifier else None,
            "attributions": attributions,
            "top_units": list(atlas.top_units(index).items()),
        }
        out.write(
            f"images/{index}.html",
            render(
                "image.html",
                **common,
                root="../",
                current_layer=None,
                title=f"{atlas.split} image {index}",
                image=image,
                class_links=[f"../classes/{c}.html" for c in range(len(atlas.class_names))],
            ),
        )


def _write_classes(atlas, render, out, thumbs, common) -> None:
    n = len(atlas.class_names)
    predicted = atlas.predicted if atlas.classifier else atlas.labels
    matrix = atlas.confusion()
    recalls = per_class(matrix, atlas.class_names)
    page = {**common, "root": "../", "current_layer": None}
    for t, profile in enumerate(atlas.classes):
        is_t = atlas.labels == t
        c = {
            "index": t,
            "name": atlas.class_names[t],
            "count": int(matrix[t].sum()),
            "correct": int(matrix[t, t]),
            "recall": recalls[t].recall if atlas.classifier else None,
            **profile,
        }
        out.write(
            f"classes/{t}.html",
            render("class.html", **page, title=f"class {atlas.class_names[t]}", c=c),
        )
        for p in range(n):
            if matrix[t, p] == 0:
                continue
            behind = np.flatnonzero(is_t & (predicted == p))
            heading = (
                f"{atlas.class_names[t]}: its images"
                if not atlas.classifier
                else f"{atlas.class_names[t]} recognised"
                if t == p
                else f"{atlas.class_names[t]} predicted as {atlas.class_names[p]}"
            )
            out.write(
                f"classes/{t}_as_{p}.html",
                render(
                    "gallery.html",
                    **page,
                    title=heading,
                    heading=heading,
                    total=len(behind),
                    shown=[thumbs.image(i) for i in behind[:GALLERY_SIZE]],
                    true_class=t,
                    predicted_class=p,
                ),
            )


def render_site(atlas: Atlas, root: Path) -> _Writer:
    """Every page and picture of the site under ``root``."""
    environment = _environment()

    def render(template: str, **context: Any) -> str:
        return environment.get_template(template).render(**context)

    out, thumbs = _Writer(root), _Thumbnails(atlas)
    static = files("mapscope.atlas") / "static"
    for name in ("atlas.css", "atlas.js", "viewer.js"):
        out.write(name, (static / name).read_bytes())
    common = {
        "model_name": atlas.run_path.name,
        "run_path": str(atlas.run_path),
        "nav_layers": list(atlas.layers),
        "version": __version__,
        "class_names": atlas.class_names,
        "split": atlas.split,
        "methods": [
            METHODS[m].title for m in next(iter(atlas.images.values()), {}).get("attributions", {})
        ],
        "attribution_layer": atlas.attribution_layer,
        "classifier": atlas.classifier,
        "oip_prior": (
            {"start": atlas.oip_settings.start_level, "smooth": atlas.oip_settings.smooth}
            if atlas.oip_settings.smooth > 0 or atlas.oip_settings.start_level != 1.0
            else None
        ),
        "colour_bars": {name: pictures.data_uri(pictures.colour_bar(name)) for name in COLOUR_MAPS},
    }
    for data in atlas.layers.values():
        _write_layer(atlas, data, render, out, thumbs, common)
    _write_images(atlas, render, out, thumbs, common)
    _write_classes(atlas, render, out, thumbs, common)
    matrix = atlas.confusion() if atlas.classifier else None
    out.write(
        "index.html",
        render(
            "index.html",
            **common,
            root="",
            current_layer=None,
            title=atlas.run_path.name,
            kind=atlas.kind,
            dataset=atlas.dataset,
            accuracy=atlas.accuracy,
            n_images=len(atlas.labels),
            n_errors=int((atlas.labels != atlas.predicted).sum()) if atlas.classifier else None,
            summary=atlas.summary,
            total_parameters=sum(row["parameters"] for row in atlas.summary),
            curves=_curves(atlas.history),
            history_table=_history_table(atlas.history),
            confusion=matrix.tolist() if matrix is not None else None,
            cell_colours=_cell_colours(matrix) if matrix is not None else None,
            image_pages=[thumbs.image(i) for i in atlas.images],
            provenance=atlas.provenance,
            config_json=json.dumps(atlas.provenance["config"], indent=2),
            built=time.strftime("%Y-%m-%d %H:%M:%S"),
        ),
    )
    _write_viewer(atlas, render, out, thumbs, common)  # last: it knows every image shown
    out.write("atlas.json", json.dumps(atlas_numbers(atlas), indent=2))
    return out


def _write_viewer(atlas: Atlas, render, out: _Writer, thumbs: _Thumbnails, common) -> None:
    """``images/view.html#N``: the page every thumbnail without a page of its own opens. The
    pixels of every image the site shows are embedded once (``images/data.js``), the network
    once (``images/model.js``); the page runs one on the other."""
    shown = sorted(thumbs.cache)
    raw = np.stack([pictures.raw_pixels(atlas.raw[i]) for i in shown])
    pixels = raw[:, None] if raw.ndim == 3 else raw.transpose(0, 3, 1, 2)  # (N, C, H, W)
    channels = 1 if raw.ndim == 3 else raw.shape[3]
    data = {
        "split": atlas.split,
        "classNames": list(atlas.class_names),
        "layers": [
            {
                "name": name,
                "units": d.stats.units,
                "scale": list(atlas.map_scales[name]),
                "colours": "RdBu_r" if atlas.map_scales[name][0] < 0 else MAP_COLOURS,
            }
            for name, d in atlas.layers.items()
        ],
        "images": {
            "index": [int(i) for i in shown],
            "labels": atlas.labels[shown].tolist(),
            "pages": [int(i) in atlas.images for i in shown],
            "channels": channels,
            "height": int(raw.shape[1]),
            "width": int(raw.shape[2]),
            # zlib-compressed (the page inflates them with DecompressionStream): digits are
            # mostly blank, and the site must stay small enough to publish. Level 6: level 9
            # saves under 2 % of the bytes and takes 13 times as long.
            "pixels": base64.b64encode(
                zlib.compress(np.ascontiguousarray(pixels).tobytes(), 6)
            ).decode("ascii"),
        },
        "probabilities": (
            np.round(atlas.probabilities[shown], 4).tolist() if atlas.classifier else None
        ),
        "colours": {name: pictures.colour_table(name).ravel().tolist() for name in COLOUR_MAPS},
        "bars": common["colour_bars"],
    }
    out.write("images/data.js", "window.ATLAS_DATA = " + json.dumps(data) + ";\n")
    if atlas.chain is not None:
        network = atlas.chain.to_json()
        a, b = atlas.input_affine
        network["affine"] = {"a": float32_base64(a), "b": float32_base64(b)}
        out.write("images/model.js", "window.ATLAS_NETWORK = " + json.dumps(network) + ";\n")
    out.write(
        "images/view.html",
        render(
            "view.html",
            **common,
            root="../",
            current_layer=None,
            title=f"{atlas.split} image",
            chain=atlas.chain is not None,
            chain_reason=atlas.chain_reason,
        ),
    )


def atlas_numbers(atlas: Atlas) -> dict[str, Any]:
    """The site's facts as JSON (``atlas.json``): what a script needs without parsing HTML."""
    return {
        "model": str(atlas.run_path),
        "kind": atlas.kind,
        "dataset": atlas.dataset,
        "split": atlas.split,
        "accuracy": atlas.accuracy,
        "layers": {
            name: {
                **_layer_info(atlas, data),
                "top": data.top.tolist(),
                "top_labels": atlas.labels[data.top].tolist(),
            }
            for name, data in atlas.layers.items()
        },
        "images": sorted(int(i) for i in atlas.images),
        "seconds": atlas.seconds,
        "provenance": {k: v for k, v in atlas.provenance.items() if k != "config"},
    }


def check_site_folder(out: str | Path) -> Path:
    """``out`` may be new, empty, or an earlier atlas (it has ``atlas.json``): nothing else is
    replaced by a site."""
    from mapscope.errors import ConfigError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the site.")
    earlier = (out / "atlas.json").exists()
    if out.is_dir() and not earlier and any(p.name != CACHE for p in out.iterdir()):
        raise ConfigError(
            f"--out {out} is a folder that holds other files, not an earlier atlas; "
            "give a new or empty folder."
        )
    return out


def write_atlas(atlas: Atlas, out: str | Path) -> dict[str, Any]:
    """Build the site into a fresh folder beside ``out`` and swap it in; returns what was
    written: ``index`` (the page to open), ``files``, ``bytes``, ``seconds``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes 0700; a site folder is a plain folder
        writer = render_site(atlas, staging)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "index": out / "index.html",
        "files": writer.count,
        "bytes": writer.bytes,
        "seconds": time.perf_counter() - began,
    }
