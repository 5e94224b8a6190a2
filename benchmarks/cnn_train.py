"""mapscope's CNN trainer against a plain PyTorch eager loop, same network, same data, one run.

Prints seconds per MNIST epoch and training time to 99.0 % / 99.3 % test accuracy, for the
precision the default command picks on this machine and for fp32, each beside a reference loop
whose epochs run between its own, and mapscope's time as a fraction of the reference's.

Beside every epoch time stands the physical floor of this machine: the network's training FLOPs
per image (forward, and a backward of twice the forward's work) times the 60000 training
images, over the rate this machine multiplies matrices at in that precision (measured beside
every epoch, on the same threads). The floor counts a direct convolution's multiplications;
in float32 the trainer's 3x3 convolutions run by Winograd's algorithm, which needs fewer, so it
can finish below 1.0x. The "x floor" column says how far each is.

Then the recipes (``--recipe fast``, ``one-pass`` and ``accurate``, each with the accuracy it
aims at and the seconds it has) over ``--seeds`` seeds: training seconds and test accuracy, mean
and spread; what evaluating the 10000 test images costs apart (the time-to-accuracy counts
training only).
Usage: MAPSCOPE_DATA=... python benchmarks/cnn_train.py [--epochs 4] [--precisions auto,fp32]
       [--seeds 5] [--recipes fast,one-pass,accurate]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu, data_root, table, time_to  # noqa: E402

from mapscope.cnn.train import CNNTask, TrainConfig, train  # noqa: E402
from mapscope.data.bundle import DataBundle  # noqa: E402
from mapscope.device import bf16_matmul_speedup, pick_precision  # noqa: E402
from mapscope.io import read_json  # noqa: E402
from mapscope.runs import Run  # noqa: E402
from mapscope.training.trainer import evaluate  # noqa: E402

# what mapscope's trainer runs in each precision: (bf16, fp32)
TRAINER_PARTS = (
    "numba conv+pool kernels, channels-last, fused Adam",
    "Winograd 3x3 convolutions, numba conv+pool kernels, fused Adam",
)

# the recipes timed over seeds, with the goal of each (issue 31): recipe -> (accuracy, seconds)
GOALS = {"fast": (99.0, 3), "one-pass": (99.3, 6), "accurate": (99.5, 30)}


class ReferenceLoop:
    """The way pytorch/examples trains MNIST: NCHW fp32, nn.Sequential, Adam, no tricks.

    One ``epoch()`` at a time, so that its epochs can run between mapscope's: this shared
    machine has slow and fast phases of a minute or more, and a pair of neighbouring epochs
    sees the same one.
    """

    def __init__(self, batch_size: int):
        torch.manual_seed(0)
        bundle = DataBundle.create("mnist", "standard", data_root=data_root())
        self.x = torch.from_numpy(bundle.inputs("train", layout="nchw"))
        self.y = torch.from_numpy(bundle.labels("train"))
        self.xt = torch.from_numpy(bundle.inputs("test", layout="nchw"))
        self.yt = torch.from_numpy(bundle.labels("test"))
        self.net = self.network()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.batch_size = batch_size
        self.history: list[tuple[float, float]] = []  # (cumulative seconds, test accuracy)

    @staticmethod
    def network() -> nn.Module:
        """The default network (Conv 32/64/128, Dense 100/10) as plain torch layers."""
        return nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(1152, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )

    def epoch(self) -> None:
        net, x, y = self.net, self.x, self.y
        net.train()
        began = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), self.batch_size):
            idx = order[i : i + self.batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        total = time.perf_counter() - began + (self.history[-1][0] if self.history else 0.0)
        net.eval()
        with torch.no_grad():
            accuracy = (net(self.xt).argmax(1) == self.yt).float().mean().item()
        self.history.append((total, accuracy))
        print(f"  reference epoch: {accuracy:.4f} at {total:.1f} s", flush=True)


def forward_flops(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one image's forward pass through the convolutions and linear layers (a
    multiply-add counts 2; activations and pooling, a few percent, are left out)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = (
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            )
            total += 2 * output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def matmul_rate(dtype: torch.dtype, size: int = 1024, rounds: int = 5) -> float:
    """FLOP/s of this machine's best square matrix product in ``dtype`` on torch's threads."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


class MatmulRates:
    """The matrix-product rate per precision, measured beside every epoch: this shared machine
    runs faster and slower by tens of percent from minute to minute, so the floor is taken
    from the same minutes as the epochs it is set against (the mean of those readings)."""

    def __init__(self):
        self.dtypes = {"fp32": torch.float32}
        if bf16_matmul_speedup() > 1.0:  # native bf16 (not where oneDNN is held to AVX2)
            self.dtypes["bf16"] = torch.bfloat16
        self.readings: dict[str, list[float]] = {name: [] for name in self.dtypes}
        # training FLOPs per image: the forward, and a backward of twice its work
        self.per_image = 3 * forward_flops(ReferenceLoop.network(), (1, 28, 28))

    def measure(self) -> None:
        for name, dtype in self.dtypes.items():
            self.readings[name].append(matmul_rate(dtype))

    def floors(self, images: int) -> dict[str, tuple[float, float]]:
        """Per precision: (seconds for ``images`` at the mean rate, that rate in GFLOP/s)."""
        out = {}
        for name, readings in self.readings.items():
            rate = sum(readings) / len(readings)
            out[name] = (images * self.per_image / rate, rate / 1e9)
        return out


def paired_runs(epochs: int, batch_size: int, precision: str, rates: MatmulRates):
    """mapscope's trainer, with one reference epoch and a reading of the matrix-product rates
    after each of its epochs.

    Returns the precision it ran in and both histories of (cumulative seconds, accuracy).
    """
    reference = ReferenceLoop(batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(epochs=epochs, batch_size=batch_size, precision=precision)
        metrics = train(
            Path(tmp) / "run",
            config,
            data_root=data_root(),
            callbacks=[lambda _history: (reference.epoch(), rates.measure())],
        )
        hist = read_json(Run.open(Path(tmp) / "run").files["history"])
    history, total = [], 0.0
    for h in hist:
        total += h["seconds"]
        history.append((total, h["val_accuracy"]))
    return metrics["precision"], history, reference.history


def recipe_seeds(
    recipe: str, seeds: int, rates: MatmulRates
) -> tuple[list[float], list[float], float, list[float]]:
    """(training seconds, test accuracy, each per seed; seconds to evaluate 10000 images;
    the training seconds per seed as multiples of the floor, at the mean of every reading so
    far: one reading alone, taken in a slow moment, once put a run below its floor)."""
    seconds, accuracies, evaluation, floors = [], [], 0.0, []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig.from_recipe(recipe, seed=seed)
            metrics = train(Path(tmp) / "run", config, data_root=data_root())
            seconds.append(metrics["train_seconds"])
            accuracies.append(metrics["test_accuracy"])
            rates.measure()
            images = metrics["n_train"] * metrics["epochs"]
            floor = rates.floors(images)[metrics["precision"]][0]
            floors.append(metrics["train_seconds"] / floor)
            run = Run.open(Path(tmp) / "run")
            net, bundle = run.module(), run.bundle(data_root())
            x = torch.from_numpy(bundle.inputs("test", layout="nchw"))
            began = time.perf_counter()
            evaluate(CNNTask(), net, x, torch.from_numpy(bundle.labels("test")), "cpu")
            evaluation = time.perf_counter() - began
    return seconds, accuracies, evaluation, floors


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean = sum(values) / len(values)
    return (
        f"{mean * scale:.{digits}f} ({min(values) * scale:.{digits}f}.."
        f"{max(values) * scale:.{digits}f})"
    )


def recipe_table(recipes: list[str], seeds: int, rates: MatmulRates) -> str:
    rows = []
    for recipe in recipes:
        seconds, accuracies, evaluation, floors = recipe_seeds(recipe, seeds, rates)
        accuracy, within = GOALS[recipe]
        rows.append(
            [
                f"--recipe {recipe}",
                f"{accuracy} % in {within} s",
                spread(seconds, digits=2),
                spread(accuracies, 100, 2),
                f"{evaluation:.2f}",
                spread(floors, digits=2),
            ]
        )
    header = [
        "recipe",
        "goal",
        "train s, mean (min..max)",
        "test %, mean (min..max)",
        "eval s",
        "x floor",
    ]
    return f"\nrecipes over seeds 0..{seeds - 1}:\n" + table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--precisions",
        default="auto,fp32",
        help="mapscope runs to time (auto is what the default command picks on this machine)",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds per recipe (0: leave the recipes out)"
    )
    parser.add_argument(
        "--recipes", default=",".join(GOALS), help=f"recipes to time ({', '.join(GOALS)})"
    )
    args = parser.parse_args()
    recipes = args.recipes.split(",")
    if unknown := set(recipes) - set(GOALS):
        known = ", ".join(GOALS)
        parser.error(f"--recipes: unknown {', '.join(sorted(unknown))}; choose from {known}")
    runs, done, rates = [], set(), MatmulRates()
    for precision in args.precisions.split(","):
        if pick_precision(precision, torch.device("cpu")) not in done:
            runs.append(paired_runs(args.epochs, args.batch_size, precision, rates))
            done.add(runs[-1][0])
    floor = rates.floors(60000)
    rows, fractions = [], []
    for name, (seconds, rate) in floor.items():
        rows.append(
            [
                f"physical floor, {name} ({rate:.0f} GFLOP/s matrix products)",
                seconds,
                "-",
                "-",
                "-",
                1.0,
            ]
        )
    for precision, ours, reference in runs:
        for name, history in (
            (f"mapscope ({precision}, {TRAINER_PARTS[precision == 'fp32']})", ours),
            ("  plain PyTorch eager loop (NCHW fp32, Adam 1e-3), epochs in between", reference),
        ):
            per_epoch = history[-1][0] / len(history)
            base = floor.get(precision if "mapscope" in name else "fp32", floor["fp32"])[0]
            rows.append(
                [
                    name,
                    per_epoch,
                    time_to(history, 0.990),
                    time_to(history, 0.993),
                    history[-1][1],
                    per_epoch / base,
                ]
            )
        fractions.append(f"{precision}: {ours[-1][0] / reference[-1][0]:.2f}")
    speedup = bf16_matmul_speedup()
    bf16 = f"{speedup:.1f}x as fast as fp32" if speedup > 1.0 else "no native bf16"
    print(
        f"\n{cpu()}\nMNIST, default network, batch {args.batch_size}, {args.epochs} epochs, "
        f"{torch.get_num_threads()} threads; bf16 matrix products on this CPU: {bf16}; "
        f"training FLOPs per image: {rates.per_image / 1e6:.1f} M"
    )
    print(table(["trainer", "s/epoch", "s to 99.0%", "s to 99.3%", "final acc", "x floor"], rows))
    print("mapscope's time as a fraction of the reference's: " + ", ".join(fractions))
    if args.seeds:
        print(recipe_table(recipes, args.seeds, rates))


if __name__ == "__main__":
    main()
