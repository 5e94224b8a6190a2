"""The atlas as a static website: Jinja2 templates filled from an ``Atlas``.

``write_atlas(atlas, out)`` builds the whole site in a temporary folder beside ``out`` and then
swaps it in, so a browser never sees half a site and a failed build leaves the old one. Links
are relative; the pages need no server, no network and no CDN. The cache of computed arrays
(``out/.cache``) is carried over to the new site.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from mapscope import __version__
from mapscope.atlas import pictures
from mapscope.atlas.build import CACHE, Atlas, LayerData
from mapscope.inspect.attribution import METHODS
from mapscope.metrics import per_class

GALLERY_SIZE = 48


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


def _curves(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not history:
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
    dead = s.dead
    rows = []
    for unit in range(s.units):
        rows.append(
            {
                "unit": unit,
                "mean": float(s.mean[:, unit].mean()),
                "peak": float(s.peak[:, unit].max()),
                "selectivity": float(selectivity[unit]),
                "dead": bool(dead[unit]),
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
    }


def _write_layer(atlas, data, render, out: _Writer, thumbs: _Thumbnails, common) -> None:
    name, s = data.name, data.stats
    rows = _unit_rows(atlas, data)
    info = _layer_info(atlas, data)
    prefix = f"layers/{name}"
    oip = data.oip or {}
    snapshots = sorted(int(k.split("_")[1]) for k in oip if k.startswith("snapshot_"))
    for unit in range(s.units):
        if "images" in oip:
            out.write(f"{prefix}/img/oip_{unit}.png", pictures.grey(oip["images"][unit]))
            out.write(f"{prefix}/img/oipc_{unit}.png", pictures.contrast(oip["images"][unit]))
        if snapshots:
            frames = np.stack([oip[f"snapshot_{k}"][unit] for k in snapshots])
            out.write(f"{prefix}/img/evo_{unit}.png", pictures.strip(frames))
    page = {**common, "root": "../../", "current_layer": name, "title": name, "layer": info}
    out.write(
        f"{prefix}/index.html",
        render(
            "layer.html",
            **page,
            units=rows,
        ),
    )
    counts, edges = s.histogram()
    class_means = s.class_means(atlas.labels, len(atlas.class_names))
    correlated, r = s.correlated()
    height, width = atlas.raw.shape[1:3]
    for unit in range(s.units):
        top = []
        for rank, index in enumerate(data.top[unit]):
            item = {"image": thumbs.image(index), "value": float(s.peak[index, unit])}
            item["map"], item["box"] = None, None
            if data.top_maps is not None:
                item["map"] = pictures.data_uri(pictures.grey(data.top_maps[unit, rank], lo=0.0))
            if data.field is not None:
                row, col = s.peak_position(index, unit)
                t, left, b, right = data.field.box(row, col, height, width)
                item["box"] = {
                    "top": 100 * t / height,
                    "left": 100 * left / width,
                    "height": 100 * (b - t) / height,
                    "width": 100 * (right - left) / width,
                }
            top.append(item)
        u = dict(rows[unit])
        u.update(
            hist_counts=counts[unit].tolist(),
            hist_edges=edges[unit].tolist(),
            class_means=class_means[:, unit].tolist(),
            oip_final=float(oip["final"][unit]) if "final" in oip else float("nan"),
            evolution=snapshots,
            kernel=(
                pictures.data_uri(pictures.colour(data.kernels[unit], "RdBu_r", symmetric=True))
                if data.kernels is not None
                else None
            ),
            incoming=[(*c, True) for c in data.incoming[unit]] if data.incoming else None,
            outgoing=[(*c, True) for c in data.outgoing[unit]] if data.outgoing else None,
            correlated=[(int(j), float(v)) for j, v in zip(correlated[unit], r[unit], strict=True)],
        )
        out.write(
            f"{prefix}/units/{unit}.html",
            render(
                "unit.html",
                **{**page, "root": "../../../", "title": f"{name} unit {unit}"},
                u=u,
                top=top,
                previous=unit - 1 if unit > 0 else None,
                next=unit + 1 if unit + 1 < s.units else None,
                class_links=[f"../../../classes/{c}.html" for c in range(len(atlas.class_names))],
            ),
        )


def _write_images(atlas, render, out, thumbs, common) -> None:
    names = list(atlas.layers)
    for index, page in atlas.images.items():
        probabilities = page["probabilities"]
        attributions = []
        for method, values in page["attributions"].items():
            signed = METHODS[method].signed
            heat = pictures.colour(values, "RdBu_r" if signed else "inferno", symmetric=signed)
            attributions.append({"name": METHODS[method].title, "src": pictures.data_uri(heat)})
        image = {
            **thumbs.image(index),
            "label_index": int(atlas.labels[index]),
            "predicted_index": int(atlas.predicted[index]) if atlas.classifier else None,
            "confidence": float(probabilities.max()) if atlas.classifier else None,
            "probabilities": probabilities.tolist() if atlas.classifier else None,
            "attributions": attributions,
            "top_units": [(n, page["top_units"][n]) for n in names],
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
    for name in ("atlas.css", "atlas.js"):
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
            confusion=matrix.tolist() if matrix is not None else None,
            cell_colours=_cell_colours(matrix) if matrix is not None else None,
            image_pages=[thumbs.image(i) for i in atlas.images],
            provenance=atlas.provenance,
            config_json=json.dumps(atlas.provenance["config"], indent=2),
            built=time.strftime("%Y-%m-%d %H:%M:%S"),
        ),
    )
    out.write("atlas.json", json.dumps(atlas_numbers(atlas), indent=2))
    return out


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
        if (out / CACHE).is_dir():
            shutil.copytree(out / CACHE, staging / CACHE)
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
