"""`mapscope oip` as a Python function: search OIPs for a layer and write the results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapscope.inspect.oip.ascent import DEFAULT_STEPS
from mapscope.inspect.oip.objectives import objective_values
from mapscope.inspect.oip.strategies import OIPResult, run_oip
from mapscope.inspect.session import Inspection
from mapscope.io import write_json, write_npz
from mapscope.report.figures import save_figure
from mapscope.report.oip import plot_evolution, plot_oips
from mapscope.runs import provenance


def test_reference(
    session: Inspection, layer: str, units: list[int], node, n_images: int = 2000
) -> dict:
    """How strongly real test images drive each unit: the yardstick for an OIP's activation."""
    n = min(n_images, len(session.bundle.split.test))
    inputs = torch.from_numpy(session.bundle.inputs("test", np.arange(n), layout="nchw"))
    with torch.no_grad():
        out = session.net.forward_until(inputs, layer)
    values = np.stack(
        [objective_values(out, torch.full((n,), u), node).numpy() for u in units], axis=1
    )
    return {
        "mean": values.mean(0),
        "p99": np.percentile(values, 99, axis=0),
        "max": values.max(0),
        "images": n,
    }


def oip_layer(
    session: Inspection,
    layer: str,
    units: list[int] | None,
    out: str | Path,
    node=None,
    snapshot_units: list[int] | None = None,
    **options: Any,
) -> tuple[OIPResult, list[Path]]:
    out = Path(out)
    steps = options.get("steps", DEFAULT_STEPS)
    snapshot_steps = tuple(int(s) for s in np.unique(np.geomspace(1, steps, 10).astype(int)))
    began = time.perf_counter()
    result = run_oip(session.net, layer, units, node, snapshot_steps=snapshot_steps, **options)
    seconds = time.perf_counter() - began
    units = result.units  # None above means every unit of the layer
    reference = test_reference(session, layer, units, node)
    per_unit = []
    for k, unit in enumerate(units):
        per_unit.append(
            {
                "unit": unit,
                "final_activation": float(result.final_activation[k]),
                "start_activation": float(result.start_activation[k]),
                "steps": int(result.steps[k]),
                "converged": bool(result.converged[k]),
                "retries": int(result.retries[k]),
                "dead": bool(result.dead[k]),
                "test_mean_activation": float(reference["mean"][k]),
                "test_p99_activation": float(reference["p99"][k]),
                "test_max_activation": float(reference["max"][k]),
            }
        )
    alive = ~result.dead
    summary = {
        "layer": layer,
        "node": list(node) if node else None,
        "units": len(units),
        "dead": int(result.dead.sum()),
        "converged": int(result.converged.sum()),
        "seconds": seconds,
        "options": options,
        "reference_images": reference["images"],
        "provenance": provenance(session.bundle.dataset.checksums, **options),
        "median_gain_over_start": float(
            np.median(
                result.final_activation[alive]
                / np.maximum(np.abs(result.start_activation[alive]), 1e-6)
            )
        )
        if alive.any()
        else None,
        "share_above_test_max": float(
            (result.final_activation[alive] > reference["max"][alive]).mean()
        )
        if alive.any()
        else None,
    }
    written = [
        write_json(out / "oip.json", {**summary, "per_unit": per_unit}),
        write_npz(
            out / "oips.npz",
            images=result.images,
            start_images=result.start_images,
            units=np.array(units),
            dead=result.dead,
            trace=result.trace,
            **{f"snapshot_{s}": v[:, 0] for s, v in result.snapshots.items()},
        ),
        save_figure(plot_oips(result, reference), out / "oips.png"),
    ]
    for unit in snapshot_units or []:
        if unit in units and result.snapshots:
            k = units.index(unit)
            frames = {s: v[k, 0] for s, v in sorted(result.snapshots.items())}
            written.append(
                save_figure(
                    plot_evolution(frames, result.trace[:, k], layer, unit),
                    out / f"evolution_{unit}.png",
                )
            )
    return result, written
