"""Sweeps on Dask against single trainings, and the speed of matching runs.

Part 1 trains the default CNN once per seed with ``mapscope cnn train`` (one process after the
other, as a user would) and then the same seeds with ``mapscope sweep cnn`` (a local Dask
cluster), and prints both wall times (target: the sweep at most 1.10 x the sum of the singles).
Part 2 times ``match_runs`` (every layer with weights, 10000 test images, baselines included,
no OIPs) on two of the sweep's runs (target: at most 10 s) and on all of them.
Usage: MAPSCOPE_DATA=... python benchmarks/sweep_match.py [--seeds 5] [--epochs 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu, data_root, table  # noqa: E402

from mapscope.runs import Run  # noqa: E402
from mapscope.workflows.match import match_runs  # noqa: E402

MAPSCOPE = [sys.executable, "-m", "mapscope"]


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="Keep the runs here (default: a temp folder).")
    args = parser.parse_args()
    data_root()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mapscope-bench-"))
    epochs = ["--epochs", str(args.epochs)]
    singles = [
        timed(
            [
                *MAPSCOPE,
                "cnn",
                "train",
                "--seed",
                str(s),
                *epochs,
                "--out",
                str(work / f"single{s}"),
            ]
        )
        for s in range(args.seeds)
    ]
    sweep = timed(
        [
            *MAPSCOPE,
            "sweep",
            "cnn",
            "--seeds",
            f"0..{args.seeds - 1}",
            "--set",
            f"epochs={args.epochs}",
            "--out",
            str(work / "sweep"),
            "--overwrite",
        ]
    )
    print(f"# {cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        table(
            ["what", "seconds", "x singles"],
            [
                [f"{args.seeds} x mapscope cnn train (sum)", sum(singles), 1.0],
                [f"mapscope sweep cnn --seeds 0..{args.seeds - 1}", sweep, sweep / sum(singles)],
            ],
        )
    )
    inspections = [Run.open(work / "sweep" / f"seed={s}").inspection() for s in range(args.seeds)]
    labels = [f"seed={s}" for s in range(args.seeds)]
    rows = []
    for count in sorted({2, args.seeds}):
        began = time.perf_counter()
        result = match_runs(inspections[:count], labels[:count], oips=False)
        rows.append(
            [f"match {count} runs, {len(result.layers)} layers", time.perf_counter() - began]
        )
    print(table(["what", "seconds"], rows))
    print(f"runs in {work}")


if __name__ == "__main__":
    main()
