"""Training a CNN into a run folder, one checkpoint per epoch.

The whole loop is in ``train``: shuffle with an explicit generator, forward under autocast,
loss + kernel regularisation, step, learning rate from a pure schedule, validate, write the
checkpoint and the curves. A run interrupted with Ctrl-C keeps its last finished epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mapscope.cnn.build import Network, build
from mapscope.cnn.checkpoint import load_state, load_weights, save_state, save_weights
from mapscope.cnn.device import autocast, pick_device, pick_precision
from mapscope.cnn.schedules import SCHEDULES, learning_rate
from mapscope.cnn.spec import NetSpec, default_spec, spec_from_dict
from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError, RunError, TrainingDiverged
from mapscope.io import read_json, write_json
from mapscope.report.curves import plot_cnn_history
from mapscope.report.figures import save_figure
from mapscope.runs import create_run, read_config, write_metrics

OPTIMIZERS = ("rmsprop", "sgd", "adam", "nadam", "adamax")
EpochCallback = Callable[[list[dict[str, float]]], None]


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"
    epochs: int = 4
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    schedule: str = "onecycle"
    decay_rate: float = 1.0
    decay_steps: int = 1000
    seed: int = 0
    resplit: bool = False
    scaling: str = "standard"
    device: str = "auto"
    precision: str = "auto"
    max_train: int | None = None  # train on the first N training images (quick experiments)

    def validate(self) -> TrainConfig:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer {self.optimizer!r} unknown; choose one of {', '.join(OPTIMIZERS)}."
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"schedule {self.schedule!r} unknown; choose one of {', '.join(SCHEDULES)}."
            )
        if self.dataset not in ("mnist", "fashion-mnist"):
            raise ConfigError(
                f"the CNN trains on image datasets: mnist or fashion-mnist, not {self.dataset!r}."
            )
        for name in ("epochs", "batch_size", "decay_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")
        return self


def make_optimizer(name: str, params, lr: float, momentum: float) -> torch.optim.Optimizer:
    """Adam and SGD use torch's fused kernels: one pass over all parameters instead of ~10 small
    ops per tensor, about 0.4 ms of a 10 ms CPU step for the reference network."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, fused=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)  # Keras defaults
    return {"nadam": torch.optim.NAdam, "adamax": torch.optim.Adamax}[name](params, lr=lr)


def regularization(net: Network) -> torch.Tensor | float:
    spec = net.spec
    total = 0.0
    for w in net.kernels():
        total = total + spec.l2 * w.pow(2).sum() + spec.l1 * w.abs().sum()
    return total


@torch.no_grad()
def evaluate(net: Network, x: torch.Tensor, y: torch.Tensor, device, batch=1000):
    """Loss and accuracy in float32 whatever precision training ran in: the numbers that
    ``mapscope evaluate`` and ``predict`` will see for the saved model."""
    net.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device, memory_format=torch.channels_last)
        yb = y[i : i + batch].to(device)
        logits = net(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return loss_sum / len(x), correct / len(x)


def train(
    out: str | Path,
    config: TrainConfig = TrainConfig(),
    spec: NetSpec | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    data_root: str | Path | None = None,
    callbacks: list[EpochCallback] | None = None,
) -> dict[str, Any]:
    """Train into ``out``; with ``resume`` continue that run for ``config.epochs`` more epochs."""
    run = Path(out)
    if resume:
        stored = read_config(run, "cnn")
        spec = spec_from_dict(stored["net"], f"{run}/config.json")
        config = replace(TrainConfig(**stored["train"]), epochs=config.epochs)
        bundle = DataBundle.from_run(run, data_root)
    else:
        spec = spec or default_spec()
        config.validate()
        mode = "resplit" if config.resplit else "canonical"
        bundle = DataBundle.create(
            config.dataset, config.scaling, mode, config.seed, data_root=data_root
        )
        if spec.n_classes != bundle.dataset.n_classes:
            raise ConfigError(
                f"the output layer has {spec.n_classes} units but {config.dataset} has "
                f"{bundle.dataset.n_classes} classes."
            )
    device = pick_device(config.device)
    precision = pick_precision(config.precision, device)
    torch.set_flush_denormal(True)

    subset = bundle.train_positions(config.max_train)
    x_train = torch.from_numpy(bundle.inputs("train", subset, layout="nchw"))
    y_train = torch.from_numpy(bundle.labels("train", subset))
    x_test = torch.from_numpy(bundle.inputs("test", layout="nchw"))
    y_test = torch.from_numpy(bundle.labels("test"))

    net = build(spec, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if init_from is not None:
        load_weights(net, Path(init_from) / "initial.safetensors")
    net = net.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(config.optimizer, net.parameters(), config.lr, config.momentum)
    history: list[dict[str, float]] = []
    step, planned_epochs = 0, config.epochs
    if resume:
        load_weights(net, run / "model.safetensors")
        state = load_state(run / "checkpoint.pt")
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, planned_epochs = int(state["step"]), int(state["planned_epochs"])
        # a run keeps the precision it started in, whatever "auto" would pick on this machine
        precision = state.get("precision", precision)
        history = read_json(run / "history.json")
        planned_epochs = max(planned_epochs, len(history) + config.epochs)
    else:
        create_run(
            run,
            {
                "kind": "cnn",
                "net": spec.to_dict(),
                "train": asdict(config),
                "data": bundle.config(),
            },
        )
        bundle.save(run)
        save_weights(net, run / "initial.safetensors")

    steps_per_epoch = -(-len(x_train) // config.batch_size)
    total_steps = planned_epochs * steps_per_epoch
    lr_at = lambda s: learning_rate(  # noqa: E731
        config.schedule, config.lr, s, total_steps, config.decay_rate, config.decay_steps
    )
    start_epoch = len(history)
    train_seconds = sum(h["seconds"] for h in history)
    try:
        for epoch in range(start_epoch, start_epoch + config.epochs):
            net.train()
            began = time.perf_counter()
            order = torch.randperm(len(x_train), generator=generator)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            bar = tqdm(
                range(steps_per_epoch),
                desc=f"epoch {epoch + 1}/{start_epoch + config.epochs}",
                leave=False,
                disable=None,
                unit="batch",
            )
            for b in bar:
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                xb = x_train[idx].to(device, memory_format=torch.channels_last)
                yb = y_train[idx].to(device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                with autocast(device, precision):
                    logits = net(xb)
                loss = F.cross_entropy(logits.float(), yb)
                if net.spec.l1 or net.spec.l2:  # adding a zero would cost an op and its backward
                    loss = loss + regularization(net)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += loss.detach() * len(idx)
                correct += (logits.argmax(1) == yb).sum()
                if b % 100 == 0 and not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} in epoch {epoch + 1}, batch {b}; the last good "
                        f"model (epoch {epoch}) is kept. Lower --lr (now {config.lr}) or add a schedule."
                    )
            train_loss = loss_sum.item() / len(x_train)
            if not np.isfinite(train_loss):
                raise TrainingDiverged(
                    f"loss became {train_loss} in epoch {epoch + 1}; lower --lr."
                )
            seconds = time.perf_counter() - began
            train_seconds += seconds
            val_loss, val_acc = evaluate(net, x_test, y_test, device)
            history.append(
                {
                    "epoch": epoch + 1,
                    "loss": train_loss,
                    "accuracy": correct.item() / len(x_train),
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                    "lr": lr_at(step - 1),
                    "seconds": seconds,
                }
            )
            _checkpoint(run, net, optimizer, generator, step, planned_epochs, precision, history)
            tqdm.write(
                f"epoch {epoch + 1}: loss {train_loss:.4f}  val_loss {val_loss:.4f}  "
                f"val_accuracy {val_acc:.4f}  ({seconds:.1f} s)"
            )
            for callback in callbacks or []:
                callback(history)
    except KeyboardInterrupt:
        tqdm.write(f"interrupted: {run} keeps epoch {len(history)}; continue with --resume {run}")
        raise
    if not history:
        raise RunError("no epoch finished.")
    metrics = {
        "test_accuracy": history[-1]["val_accuracy"],
        "test_loss": history[-1]["val_loss"],
        "train_accuracy": history[-1]["accuracy"],
        "train_seconds": train_seconds,
        "epochs": len(history),
        "seed": config.seed,
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "data_checksums": bundle.dataset.checksums,
    }
    write_metrics(run, metrics)
    return metrics


def _checkpoint(run, net, optimizer, generator, step, planned_epochs, precision, history) -> None:
    save_weights(net, run / "model.safetensors")
    save_state(
        {
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "step": step,
            "planned_epochs": planned_epochs,
            "precision": precision,
        },
        run / "checkpoint.pt",
    )
    write_json(run / "history.json", history)
    save_figure(plot_cnn_history(history), run / "curves.png")
