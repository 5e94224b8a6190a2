"""`mapscope oip` as Python functions: ``oip_layer`` searches the OIPs of a layer and returns
a ``LayerOIPs``; ``write_oips`` writes its JSON, npz and pictures."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapscope.errors import ConfigError
from mapscope.inspect.inspection import Inspection
from mapscope.inspect.oip.objectives import every_objective, oip_target
from mapscope.inspect.oip.settings import OIPSettings
from mapscope.inspect.oip.strategies import OIPResult, pictures, run_oip
from mapscope.inspect.taps import layer_outputs
from mapscope.io import write_json, write_npz
from mapscope.report.display import RichDisplay
from mapscope.report.figures import save_figure
from mapscope.report.oip import plot_evolution, plot_oips
from mapscope.runs.folder import provenance

REFERENCE_IMAGES = 2000  # the test images an OIP is measured against (and may start from)


def reference_images(inspection: Inspection) -> np.ndarray:
    """The first ``REFERENCE_IMAGES`` test images, as the network reads them."""
    n = min(REFERENCE_IMAGES, len(inspection.bundle.split.test))
    return inspection.inputs("test", np.arange(n))


def test_reference(
    inspection: Inspection, layer: str, units: list[int], node, images: np.ndarray | None = None
) -> dict:
    """How strongly real test images (default ``reference_images``) drive each unit: the
    yardstick for an OIP's activation."""
    images = reference_images(inspection) if images is None else images
    out = torch.from_numpy(layer_outputs(inspection.net, images, [layer])[layer])
    values = every_objective(out, units, node).numpy()
    return {
        "mean": values.mean(0),
        "p99": np.percentile(values, 99, axis=0),
        "max": values.max(0),
        "images": len(images),
    }


@dataclass
class LayerOIPs(RichDisplay):
    """The OIPs of a layer with the yardstick of real test images, before anything is written."""

    search: OIPResult
    reference: dict
    seconds: float
    options: dict[str, Any]
    checksums: dict[str, str]
    snapshot_units: list[int]
    searched: str  # the module whose output was driven (``oip_target``: before a sigmoid)

    @property
    def name(self) -> str:
        """The layer as the summary and the figure name it, with the module driven if another."""
        layer = self.search.layer
        return (
            layer if self.searched == layer else f"{layer} (driven at {self.searched}, its input)"
        )

    @property
    def alive(self) -> np.ndarray:
        return ~self.search.dead

    def per_unit(self) -> list[dict]:
        r, ref = self.search, self.reference
        return [
            {
                "unit": unit,
                "final_activation": float(r.final_activation[k]),
                "start_activation": float(r.start_activation[k]),
                "steps": int(r.steps[k]),
                "converged": bool(r.converged[k]),
                "retries": int(r.retries[k]),
                "dead": bool(r.dead[k]),
                "start_test_image": int(r.start_image[k]) if r.start_image[k] >= 0 else None,
                "test_mean_activation": float(ref["mean"][k]),
                "test_p99_activation": float(ref["p99"][k]),
                "test_max_activation": float(ref["max"][k]),
            }
            for k, unit in enumerate(r.units)
        ]

    def numbers(self) -> dict[str, Any]:
        r, alive = self.search, self.alive
        gain = r.final_activation[alive] / np.maximum(np.abs(r.start_activation[alive]), 1e-6)
        above = r.final_activation[alive] > self.reference["max"][alive]
        return {
            "layer": r.layer,
            "searched": self.searched,
            "node": list(r.node) if r.node else None,
            "units": len(r.units),
            "dead": int(r.dead.sum()),
            "started_from_test_images": int((r.start_image >= 0).sum()),
            "converged": int(r.converged.sum()),
            "seconds": self.seconds,
            "options": self.options,
            "reference_images": self.reference["images"],
            "provenance": provenance(self.checksums, **self.options),
            "median_gain_over_start": float(np.median(gain)) if alive.any() else None,
            "share_above_test_max": float(above.mean()) if alive.any() else None,
        }

    def summary(self) -> str:
        r, alive = self.search, self.alive
        start = np.median(r.start_activation[alive]) if alive.any() else 0
        final = np.median(r.final_activation[alive]) if alive.any() else 0
        return (
            f"{self.name}: {len(r.units)} units, {int(r.dead.sum())} dead, "
            f"{_from_images(r)}"
            f"{int(r.converged.sum())} converged; median activation start {start:.3f} -> final "
            f"{final:.3f}"
        )

    def figure(self):
        """Every OIP with its activation beside the test images' mean, 99th percentile and
        maximum."""
        return plot_oips(self.search, self.reference, name=self.name)

    @property
    def evolved_units(self) -> list[int]:
        """The ``snapshot_units`` whose growth the search kept (one of its units, with
        snapshots taken)."""
        r = self.search
        return [u for u in self.snapshot_units if u in r.units and r.snapshots]

    def evolution_figure(self, unit: int):
        """One unit's OIP at the snapshot steps, over its activation at every step; the
        unit must be one of ``evolved_units``."""
        r = self.search
        if unit not in self.evolved_units:
            raise ConfigError(
                f"unit {unit} has no snapshots; search with snapshot_units=[{unit}] to keep them."
            )
        k = r.units.index(unit)
        frames = {s: pictures(v[k : k + 1])[0] for s, v in sorted(r.snapshots.items())}
        return plot_evolution(frames, r.trace[:, k], r.layer, unit)

    def _card(self):
        r = self.search
        numbers = self.numbers()
        share = numbers["share_above_test_max"]
        return (
            f"OIPs of {self.name}",
            [
                (
                    "units",
                    f"{len(r.units)} ({int(r.dead.sum())} dead, "
                    f"{int(r.converged.sum())} converged)",
                ),
                ("median gain over the start", f"{numbers['median_gain_over_start'] or 0:.1f}x"),
                ("above the test images' maximum", "-" if share is None else f"{share:.0%}"),
                ("seconds", f"{self.seconds:.1f}"),
            ],
            self.figure,
            None,
        )


def _from_images(r: OIPResult) -> str:
    """The summary's note of the units that started from a test image, or ""."""
    n = int((r.start_image >= 0).sum())
    return f"{n} started from a test image (no noise woke them), " if n else ""


def oip_layer(
    inspection: Inspection,
    layer: str,
    units: list[int] | None = None,
    node=None,
    snapshot_units: list[int] | None = None,
    settings: OIPSettings | None = None,
    **options: Any,
) -> LayerOIPs:
    """Search the OIPs of ``units`` (None: all) of ``layer`` and measure real images beside them;
    ``settings`` (default ``OIPSettings()``) with any field changed by ``options``.

    A layer ending in a sigmoid or tanh is driven at that activation's input (``oip_target``),
    and the real images are measured there too, so that the two stay comparable."""
    settings = (settings or OIPSettings()).with_options(**options)
    snapshot_steps = tuple(
        int(s) for s in np.unique(np.geomspace(1, settings.steps, 10).astype(int))
    )
    began = time.perf_counter()
    shape = inspection.bundle.dataset.image_shape
    searched = oip_target(inspection.net, layer)
    images = reference_images(inspection)
    result = run_oip(
        inspection.net, searched, units, node, settings, snapshot_steps, shape, images=images
    )
    result.layer = layer
    seconds = time.perf_counter() - began
    reference = test_reference(inspection, searched, result.units, node, images)
    checksums = inspection.bundle.dataset.checksums
    snapshots = list(snapshot_units or [])
    return LayerOIPs(result, reference, seconds, asdict(settings), checksums, snapshots, searched)


def write_oips(result: LayerOIPs, out: str | Path) -> list[Path]:
    out, r = Path(out), result.search
    written = [
        write_json(out / "oip.json", {**result.numbers(), "per_unit": result.per_unit()}),
        write_npz(
            out / "oips.npz",
            images=r.images,
            start_images=r.start_images,
            units=np.array(r.units),
            dead=r.dead,
            start_image=r.start_image,
            trace=r.trace,
            **{f"snapshot_{s}": pictures(v) for s, v in r.snapshots.items()},
        ),
        save_figure(result.figure(), out / "oips.png"),
    ]
    for unit in result.evolved_units:
        figure = result.evolution_figure(unit)
        written.append(save_figure(figure, out / f"evolution_{unit}.png"))
    return written
