"""One CNN epoch idle and beside one other busy process, with the thread count training picks.

A learner's laptop is rarely idle. Spinning thread pools collapse when another process holds a
core, so training counts the busy cores at its start and uses the rest (``pick_threads``). This
times the same epoch (the fast recipe's images, in the precision it picks) idle and
beside one process that spins on a core, with the default thread choice and with every core
forced, and prints each as a multiple of the idle default. The target is at most 1.6x idle
beside one busy process.

A shared machine's speed drifts by 20 % from one minute to the next, more than the effect
measured, so each round times every case once, one after the other, and the ratio to idle is
taken within a round: the table gives the median and the best round.
Usage: MAPSCOPE_DATA=... python benchmarks/under_load.py [--images N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every case")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    epoch_seconds(2000, None)  # compile and warm up before timing
    cases = [("none", None), ("none", cores), ("one", None), ("one", cores)]
    seconds: dict[tuple[str, int | None], list[float]] = {case: [] for case in cases}
    used: dict[tuple[str, int | None], int] = {}
    for round_ in range(args.rounds):
        for busy, threads in cases:
            with busy_processes(1 if busy == "one" else 0):
                took, used[busy, threads] = epoch_seconds(args.images, threads)
            seconds[busy, threads].append(took)
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
    idle = seconds["none", None]
    rows = []
    for busy, threads in cases:
        ratios = [t / i for t, i in zip(seconds[busy, threads], idle, strict=True)]
        rows.append(
            [
                busy,
                "default" if threads is None else str(threads),
                used[busy, threads],
                statistics.median(seconds[busy, threads]),
                min(seconds[busy, threads]),
                statistics.median(ratios),
                min(ratios),
            ]
        )
    print(f"\n{cpu()}\none epoch of {args.images} images, fast recipe, {args.rounds} rounds")
    header = ["other busy processes", "--threads", "used", "s median", "s best"]
    print(table(header + ["x idle median", "x idle best round"], rows))


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` processes that each keep a core busy for the block."""
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(count)]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join()


if __name__ == "__main__":
    main()
