"""OIPs of a whole layer: one batched optimisation against the per-map loop of the original experiments.

Usage: MAPSCOPE_DATA=... python benchmarks/oip_layer.py [--model RUN_DIR] [--layer Conv2D_3] [--steps 600]
Without --model a default network is trained for one epoch first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import data_root, table  # noqa: E402

from mapscope.cnn.train import TrainConfig, train  # noqa: E402
from mapscope.inspect.oip import run_oip  # noqa: E402
from mapscope.runs import Run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--layer", default="Conv2D_3")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument(
        "--loop-maps",
        type=int,
        default=None,
        help="Time the per-map loop on this many maps and extrapolate (default: all maps).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = Path(tmp) / "run"
            train(model, TrainConfig(epochs=1), data_root=data_root())
        net = Run.open(model).module()
        n_maps = net.spec.shapes[net.spec.layer_names.index(args.layer)][0]
        units = list(range(n_maps))
        rows = []
        # every step: no unit can stop before ``patience`` steps have passed
        every_step = {"tol": 0.0, "patience": args.steps}
        for name, stop in (
            ("batched, convergence stop (default)", {}),
            ("batched, all steps", every_step),
        ):
            began = time.perf_counter()
            result = run_oip(net, args.layer, units, steps=args.steps, **stop)
            rows.append(
                [
                    name,
                    n_maps,
                    time.perf_counter() - began,
                    float(result.steps.mean()),
                    float(np.median(result.final_activation[~result.dead])),
                ]
            )
        loop_maps = units[: args.loop_maps] if args.loop_maps else units
        began = time.perf_counter()
        finals = [
            run_oip(net, args.layer, [u], steps=args.steps, **every_step).final_activation[0]
            for u in loop_maps
        ]
        seconds = (time.perf_counter() - began) * n_maps / len(loop_maps)
        label = "per-map loop, batch 1 (original)" + (
            "" if len(loop_maps) == n_maps else f" [{len(loop_maps)} maps, extrapolated]"
        )
        rows.append([label, n_maps, seconds, float(args.steps), float(np.median(finals))])
    print(f"\nOIPs of {args.layer}: {n_maps} maps, up to {args.steps} steps")
    print(table(["method", "maps", "seconds", "mean steps", "median final act"], rows))


if __name__ == "__main__":
    main()
