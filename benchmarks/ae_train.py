"""mapscope's autoencoder: training speed against a plain PyTorch eager loop over the same
network in the same process, and the time of the whole latent study plus generation.

Part 1 prints seconds per MNIST epoch of the default autoencoder (latent 16, batch 128) for
the precision the default command picks on this machine and for fp32, each beside a reference
loop (NCHW fp32, torch's default Adam, no flags) whose epochs run between mapscope's, and
mapscope's time as a fraction of the reference's (target: at most 0.7).
Part 2 times ``ae latent`` (n = 1000 per sampler) and ``ae generate`` (1000 images from each of
the four samplers, judged by a CNN), with their files written (target: at most 30 s).
Usage: MAPSCOPE_DATA=... python benchmarks/ae_train.py [--epochs 2] [--precisions auto,fp32]
[--no-study] (part 1 only)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu, data_root, table  # noqa: E402

from mapscope.ae.build import build  # noqa: E402
from mapscope.ae.spec import AESpec  # noqa: E402
from mapscope.ae.train import AETrainConfig, evaluate, targets, train  # noqa: E402
from mapscope.cnn.train import TrainConfig  # noqa: E402
from mapscope.cnn.train import train as train_cnn  # noqa: E402
from mapscope.data.bundle import DataBundle  # noqa: E402
from mapscope.device import bf16_matmul_speedup, pick_precision  # noqa: E402
from mapscope.io import read_json  # noqa: E402
from mapscope.runs import Run  # noqa: E402
from mapscope.workflows.autoencoder import generate, latent_study, write_generation, write_latent  # noqa: E402


class ReferenceLoop:
    """The plain way: the same ``AutoEncoder``, NCHW fp32, torch.optim.Adam, BCE; one
    ``epoch()`` at a time so that its epochs run between mapscope's (a shared machine has slow
    and fast phases, and neighbouring epochs see the same one)."""

    def __init__(self, batch_size: int):
        bundle = DataBundle.create("mnist", "unit", data_root=data_root())
        self.x = torch.from_numpy(bundle.inputs("train", layout="nchw"))
        self.xt = torch.from_numpy(bundle.inputs("test", layout="nchw"))
        self.yt = torch.from_numpy(targets(bundle, "test"))
        self.net = build(AESpec(), seed=0)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.batch_size = batch_size
        self.seconds: list[float] = []
        self.val_loss = float("nan")

    def epoch(self) -> None:
        self.net.train()
        began = time.perf_counter()
        order = torch.randperm(len(self.x))
        for i in range(0, len(self.x), self.batch_size):
            xb = self.x[order[i : i + self.batch_size]]
            loss = torch.nn.functional.binary_cross_entropy(self.net(xb), xb)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self.seconds.append(time.perf_counter() - began)
        self.val_loss = evaluate(self.net, self.xt, self.yt, torch.device("cpu"))
        print(
            f"  reference epoch: val_loss {self.val_loss:.4f} ({self.seconds[-1]:.1f} s)",
            flush=True,
        )


def paired_runs(epochs: int, batch_size: int, precision: str, folder: Path):
    reference = ReferenceLoop(batch_size)
    run = folder / f"ae_{precision}"
    config = AETrainConfig(epochs=epochs, batch_size=batch_size, precision=precision)
    metrics = train(run, config, data_root=data_root(), callbacks=[lambda _h: reference.epoch()])
    history = read_json(Run.open(run).files["history"])
    return metrics["precision"], history, reference, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precisions", default="auto,fp32")
    parser.add_argument("--no-study", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs, done = [], set()
        for precision in args.precisions.split(","):
            if pick_precision(precision, torch.device("cpu")) not in done:
                runs.append(paired_runs(args.epochs, args.batch_size, precision, folder))
                done.add(runs[-1][0])
        rows, fractions = [], []
        for precision, history, reference, _ in runs:
            ours = sum(h["seconds"] for h in history) / len(history)
            theirs = sum(reference.seconds) / len(reference.seconds)
            rows.append(
                [
                    f"mapscope ({precision}, channels-last, fused Adam)",
                    ours,
                    history[-1]["val_loss"],
                ]
            )
            rows.append(
                ["  plain PyTorch eager loop (NCHW fp32, Adam)", theirs, reference.val_loss]
            )
            fractions.append(f"{precision}: {ours / theirs:.2f}")
        print(
            f"\nMNIST autoencoder (latent 16, filters 32,64), batch {args.batch_size}, "
            f"{args.epochs} epochs, {torch.get_num_threads()} threads, {cpu()}; "
            f"bf16 matrix products {bf16_matmul_speedup():.2f}x as fast as fp32"
        )
        print(table(["trainer", "s/epoch", "val BCE/pixel"], rows))
        print("mapscope's time as a fraction of the reference's: " + ", ".join(fractions))

        if args.no_study:
            return
        ae_run = runs[0][3]
        judge = folder / "cnn"
        train_cnn(judge, TrainConfig(epochs=1, max_train=6000), data_root=data_root())
        began = time.perf_counter()
        write_latent(latent_study(ae_run, n=1000, data_root=data_root()), folder / "latent")
        latent_seconds = time.perf_counter() - began
        began = time.perf_counter()
        gen = generate(ae_run, n=1000, judge=judge, data_root=data_root())
        write_generation(gen, folder / "generate")
        generate_seconds = time.perf_counter() - began
        print()
        print(
            table(
                ["step (files written)", "seconds"],
                [
                    ["ae latent (study, 1000 per sampler)", latent_seconds],
                    ["ae generate (4 x 1000 images, judged)", generate_seconds],
                    ["both (target <= 30 s)", latent_seconds + generate_seconds],
                ],
            )
        )
        print(gen.summary())


if __name__ == "__main__":
    main()
