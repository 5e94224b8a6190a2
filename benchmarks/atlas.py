"""The full atlas of the default MNIST CNN: time per part, site size, a cached rebuild, and the
per-map loop of the original experiments as the reference for the OIP part.

Usage: MAPSCOPE_DATA=... python benchmarks/atlas.py [--model RUN_DIR] [--loop-units 4]
Without --model the default network is trained for two epochs first (as the demo does).
The per-map loop runs ``--loop-units`` units of every layer one at a time and is extrapolated.
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

from mapscope.atlas import build_atlas, write_atlas  # noqa: E402
from mapscope.atlas.build import cache_folder  # noqa: E402
from mapscope.cnn.train import TrainConfig, train  # noqa: E402
from mapscope.inspect.oip import run_oip  # noqa: E402
from mapscope.runs import Run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--loop-units", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = Path(tmp) / "cnn"
            train(model, TrainConfig(epochs=2), data_root=data_root())
        site = Path(tmp) / "atlas"
        began = time.perf_counter()
        atlas = build_atlas(model, data_root=data_root(), cache_dir=cache_folder(site))
        written = write_atlas(atlas, site)
        total = time.perf_counter() - began
        on_disk = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())

        began = time.perf_counter()
        again = build_atlas(model, data_root=data_root(), cache_dir=cache_folder(site))
        write_atlas(again, site)
        rebuild = time.perf_counter() - began

        net = Run.open(model).module()
        loop, units = 0.0, 0
        for name, data in atlas.layers.items():
            sample = list(range(min(args.loop_units, data.stats.units)))
            began = time.perf_counter()
            for unit in sample:
                run_oip(net, name, [unit], steps=300)
            loop += (time.perf_counter() - began) * data.stats.units / len(sample)
            units += data.stats.units

    rows = [[part, seconds] for part, seconds in atlas.seconds.items()]
    rows.append(["rendering (pages, pictures)", written["seconds"]])
    rows.append(["total (atlas command's work)", total])
    rows.append(["rebuild, same arguments (cache)", rebuild])
    rows.append([f"reference: OIPs one unit at a time ({units} units, extrapolated)", loop])
    print(
        f"\nAtlas of {model}: {len(atlas.layers)} layers, {units} units, {len(atlas.images)} image pages"
    )
    print(table(["part", "seconds"], rows))
    print(f"site: {written['files']} files, {on_disk / 1e6:.1f} MB (target: 60 s, 30 MB)")
    dense_2 = atlas.layers["Dense_2"]
    own = (atlas.labels[dense_2.top] == np.arange(dense_2.stats.units)[:, None]).sum()
    print(f"Dense_2: {own} of {dense_2.top.size} top examples are images of the unit's own class")


if __name__ == "__main__":
    main()
