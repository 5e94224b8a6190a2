"""One CNN epoch idle and beside one other busy process, with the thread count training picks.

A learner's laptop is rarely idle. Spinning thread pools collapse when another process holds a
core, so training counts the busy cores at its start and uses the rest (``pick_threads``). This
times the same epoch (the fast recipe's images, in the precision it picks) idle and
beside one process that spins on a core, with the default thread choice and with every core
forced, and prints each as a multiple of the idle default. The target is at most 1.6x idle
beside one busy process.
Usage: MAPSCOPE_DATA=... python benchmarks/under_load.py [--images N] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu, data_root, table  # noqa: E402

from mapscope.cnn.train import TrainConfig, train  # noqa: E402
from mapscope.training.recipes import RECIPES  # noqa: E402


def spin() -> None:
    while True:
        pass


def epoch_seconds(images: int, threads: int | None) -> tuple[float, int]:
    """(training seconds of one epoch, threads it trained on)."""
    config = TrainConfig.from_recipe("fast", max_train=images, max_test=1000, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train(Path(tmp) / "run", config, data_root=data_root())
    return metrics["train_seconds"], metrics["threads"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--images",
        type=int,
        default=RECIPES["fast"]["max_train"],
        help="images of the epoch (default: the fast recipe's)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timings per case (best kept)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    epoch_seconds(2000, None)  # compile and warm up before timing
    cases = [("none", None), ("none", cores), ("one", None), ("one", cores)]
    results = {}
    for busy, threads in cases:
        spinner = None
        if busy == "one":
            spinner = multiprocessing.Process(target=spin, daemon=True)
            spinner.start()
        try:
            timings = [epoch_seconds(args.images, threads) for _ in range(args.rounds)]
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.join()
        results[busy, threads] = min(timings)
    idle = results["none", None][0]
    rows = [
        [busy, "default" if threads is None else str(threads), used, seconds, seconds / idle]
        for (busy, threads), (seconds, used) in results.items()
    ]
    print(f"\n{cpu()}\none epoch of {args.images} images, fast recipe, best of {args.rounds}")
    print(table(["other busy processes", "--threads", "used", "s/epoch", "x idle"], rows))


if __name__ == "__main__":
    main()
