"""mapscope's CNN trainer against a plain PyTorch eager loop, same network, same data, one run.

Prints seconds per MNIST epoch and training time to 99.0 % / 99.3 % test accuracy.
Usage: MAPSCOPE_DATA=... python benchmarks/cnn_train.py [--epochs 4]
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
from _common import data_root, table, time_to  # noqa: E402

from mapscope.cnn.train import TrainConfig, train  # noqa: E402
from mapscope.data.bundle import DataBundle  # noqa: E402
from mapscope.io import read_json  # noqa: E402


def reference_loop(epochs: int, batch_size: int) -> list[tuple[float, float]]:
    """The way pytorch/examples trains MNIST: NCHW fp32, nn.Sequential, Adam, no tricks."""
    torch.manual_seed(0)
    bundle = DataBundle.create("mnist", "standard", data_root=data_root())
    x = torch.from_numpy(bundle.inputs("train", layout="nchw"))
    y = torch.from_numpy(bundle.labels("train"))
    xt = torch.from_numpy(bundle.inputs("test", layout="nchw"))
    yt = torch.from_numpy(bundle.labels("test"))
    net = nn.Sequential(
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
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    history, total = [], 0.0
    for _ in range(epochs):
        net.train()
        began = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        total += time.perf_counter() - began
        net.eval()
        with torch.no_grad():
            accuracy = (net(xt).argmax(1) == yt).float().mean().item()
        history.append((total, accuracy))
        print(f"  reference epoch: {accuracy:.4f} at {total:.1f} s", flush=True)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        train(
            Path(tmp) / "run",
            TrainConfig(epochs=args.epochs, batch_size=args.batch_size),
            data_root=data_root(),
        )
        hist = read_json(Path(tmp) / "run/history.json")
        precision = read_json(Path(tmp) / "run/metrics.json")["precision"]
    ours, total = [], 0.0
    for h in hist:
        total += h["seconds"]
        ours.append((total, h["val_accuracy"]))
    ref = reference_loop(args.epochs, args.batch_size)
    rows = []
    for name, history in (
        (f"mapscope ({precision}, fused conv1+pool1, channels-last, fused Adam, onecycle)", ours),
        ("plain PyTorch eager loop (NCHW fp32, Adam 1e-3)", ref),
    ):
        rows.append(
            [
                name,
                history[-1][0] / len(history),
                time_to(history, 0.990),
                time_to(history, 0.993),
                history[-1][1],
            ]
        )
    print(
        f"\nMNIST, default network, batch {args.batch_size}, {args.epochs} epochs, "
        f"{torch.get_num_threads()} threads"
    )
    print(table(["trainer", "s/epoch", "s to 99.0%", "s to 99.3%", "final acc"], rows))


if __name__ == "__main__":
    main()
