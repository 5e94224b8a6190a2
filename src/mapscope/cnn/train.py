"""Training a CNN into a run folder, one checkpoint per epoch.

Three steps, each on one screen: ``set_up`` (a new run or a resumed one), ``run_epoch`` (shuffle
with an explicit generator, forward under autocast, loss + kernel regularisation, step, learning
rate from a pure schedule) and ``finish_epoch`` (validate, write the checkpoint and the curves).
``train`` strings them together inside the run's transaction (``runfolder.writing``): a new run
appears at ``out`` only when its first epoch is committed, each epoch is committed as a set, and
a run interrupted with Ctrl-C keeps its last committed epoch.
On the CPU the epoch runs through the fast path of ``cnn/fast.py``, swapped in for the epoch's
steps and out again before validation and saving.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mapscope.checks import Problems
from mapscope.cnn import saved
from mapscope.cnn.build import Network, build
from mapscope.cnn.device import (
    autocast,
    pick_device,
    pick_precision,
    pick_threads,
    using_threads,
)
from mapscope.cnn.fast import fast_path
from mapscope.cnn.schedules import SCHEDULES, learning_rate
from mapscope.cnn.spec import NetSpec, default_spec
from mapscope.data.bundle import DataBundle
from mapscope.data.prepare import SCALINGS
from mapscope.errors import ConfigError, RunError, TrainingDiverged
from mapscope.runfolder import RunWriter, read_config, writing
from mapscope.weights import load_weights

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
    decay_rate: float | None = None  # None: the schedule's default (power 1.0, exponential 0.5)
    decay_steps: int = 1000
    seed: int = 0
    resplit: bool = False
    scaling: str = "standard"
    device: str = "auto"
    precision: str = "auto"
    max_train: int | None = None  # train on the first N training images (quick experiments)
    threads: int | None = None  # None: the cores free at the start (``pick_threads``)

    def validate(self) -> TrainConfig:
        """Every field against its allowed values; all problems in one ConfigError (the CLI
        and the Python API share this check)."""
        self.problems().raise_any()
        return self

    def problems(self) -> Problems:
        problems = Problems()
        problems.choice("optimizer", self.optimizer, OPTIMIZERS)
        problems.choice("schedule", self.schedule, SCHEDULES)
        self.check_dataset(problems)
        problems.choice("scaling", self.scaling, SCALINGS)
        problems.choice("precision", self.precision, ("auto", "fp32", "bf16"))
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            problems.add(f"device {self.device!r} unknown; use auto, cpu, cuda or cuda:N")
        for name in ("epochs", "batch_size", "decay_steps"):
            problems.at_least(name, getattr(self, name), 1)
        problems.at_least("max_train", self.max_train, 1, optional=True)
        problems.at_least("threads", self.threads, 1, optional=True)
        problems.finite("lr", self.lr, strict=True)
        problems.fraction("momentum", self.momentum)
        if self.decay_rate is not None:
            problems.finite("decay_rate", self.decay_rate, strict=True)
            if self.schedule == "exponential" and self.decay_rate >= 1:
                problems.add(
                    f"decay_rate {self.decay_rate} never lowers an exponential schedule; give a "
                    "rate below 1 (0.5 halves the learning rate every decay_steps steps)"
                )
        problems.seed("seed", self.seed)
        return problems

    def check_dataset(self, problems: Problems) -> None:
        problems.choice("dataset", self.dataset, ("mnist", "fashion-mnist"))


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


@dataclass
class Session:
    """Everything one training call works with; ``set_up`` makes it, the epochs advance it."""

    writer: RunWriter
    config: TrainConfig
    net: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    bundle: DataBundle
    device: torch.device
    precision: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    planned_epochs: int
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.x_train) // self.config.batch_size)

    def lr_at(self, step: int) -> float:
        c = self.config
        total = self.planned_epochs * self.steps_per_epoch
        return learning_rate(c.schedule, c.lr, step, total, c.decay_rate, c.decay_steps)

    @classmethod
    def start(
        cls,
        writer: RunWriter,
        config: TrainConfig,
        net: nn.Module,
        bundle: DataBundle,
        device: torch.device,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
    ) -> Session:
        """A session at step 0: optimizer and generator from the config, ``train`` and
        ``test`` as (inputs, targets) arrays."""
        return cls(
            writer=writer,
            config=config,
            net=net,
            optimizer=make_optimizer(
                config.optimizer, net.parameters(), config.lr, config.momentum
            ),
            generator=torch.Generator().manual_seed(config.seed),
            bundle=bundle,
            device=device,
            precision=pick_precision(config.precision, device),
            x_train=torch.from_numpy(train[0]),
            y_train=torch.from_numpy(train[1]),
            x_test=torch.from_numpy(test[0]),
            y_test=torch.from_numpy(test[1]),
            planned_epochs=config.epochs,
        )

    def resume(self, state: dict, history: list[dict[str, float]]) -> None:
        """Continue from a committed epoch's checkpoint (the weights are already loaded) for
        ``config.epochs`` more epochs."""
        self.history = history
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        # a run keeps the precision it started in, whatever "auto" would pick on this machine
        self.precision = state.get("precision", self.precision)
        self.planned_epochs = max(int(state["planned_epochs"]), len(history) + self.config.epochs)

    def checkpoint_state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
            "planned_epochs": self.planned_epochs,
            "precision": self.precision,
        }


def stored_run(out: Path, owner, config_cls: type, epochs: int, data_root):
    """What a run to resume holds: its spec, its own training settings (for ``epochs`` more
    epochs) and its exact inputs; ``owner`` is the run kind's ``saved`` module."""
    source = f"{out}/config.json"
    stored = read_config(out, owner.KIND)
    owner.check_config(stored, source)
    if "imported" in stored:
        raise RunError(
            f"{out} holds a model imported from {stored['imported'].get('format', 'elsewhere')}, "
            "with no optimizer state to resume; it can be inspected and evaluated, not resumed."
        )
    owner.resumable(out)
    config = replace(config_cls(**stored["train"]), epochs=epochs)
    return owner.spec_of(stored, source), config, DataBundle.restore(out, stored["data"], data_root)


def set_up(
    writer: RunWriter,
    config: TrainConfig,
    spec: NetSpec | None,
    resume: bool,
    init_from: str | Path | None,
    data_root: str | Path | None,
) -> Session:
    """A new run (config, split, scaler, initial weights into the writer's staging folder), or
    a resumed one."""
    out = writer.target
    if resume:
        spec, config, bundle = stored_run(out, saved, TrainConfig, config.epochs, data_root)
    else:
        spec = spec or default_spec()
        config.validate()
        mode = "resplit" if config.resplit else "canonical"
        bundle = DataBundle.create(
            config.dataset, config.scaling, mode, config.seed, data_root=data_root
        )
        if spec.input_shape != (1, *bundle.dataset.x.shape[1:]):
            raise ConfigError(
                f"the network's input_shape {list(spec.input_shape)} does not fit "
                f"{config.dataset} images (1x{bundle.dataset.x.shape[1]}x"
                f"{bundle.dataset.x.shape[2]}); set input_shape = [1, 28, 28] in --config."
            )
        if spec.n_classes != bundle.dataset.n_classes:
            raise ConfigError(
                f"the output layer has {spec.n_classes} units but {config.dataset} has "
                f"{bundle.dataset.n_classes} classes."
            )
    device = pick_device(config.device)
    subset = bundle.train_positions(config.max_train)
    net = build(spec, config.seed)
    if init_from is not None:
        load_weights(net, Path(init_from) / saved.FILES["initial"])
    net.to(device, memory_format=torch.channels_last)
    session = Session.start(
        writer,
        config,
        net,
        bundle,
        device,
        train=(bundle.inputs("train", subset, layout="nchw"), bundle.labels("train", subset)),
        test=(bundle.inputs("test", layout="nchw"), bundle.labels("test")),
    )
    if resume:
        session.resume(*saved.load_epoch(out, net))
    else:
        saved.start(writer.folder, spec, asdict(config), bundle, net)
    return session


def run_epoch(s: Session, epoch: int, last_epoch: int) -> tuple[float, float, float]:
    """One pass over the shuffled training images; returns (loss, accuracy, seconds)."""
    s.net.train()
    began = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device, dtype=torch.long)
    with fast_path(s.net, enabled=s.device.type == "cpu"):
        for b, xb, yb in batches(s, epoch, last_epoch):
            with autocast(s.device, s.precision):
                logits = s.net(xb)
            loss = F.cross_entropy(logits.float(), yb)
            if s.net.spec.l1 or s.net.spec.l2:  # adding a zero would cost an op and its backward
                loss = loss + regularization(s.net)
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            s.optimizer.step()
            s.step += 1
            loss_sum += loss.detach() * len(xb)
            correct += (logits.argmax(1) == yb).sum()
            if b % 100 == 0 and not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in epoch {epoch}, batch {b}; the last good model "
                    f"(epoch {epoch - 1}) is kept. Lower --lr (now {s.config.lr}) or add a schedule."
                )
    train_loss = loss_sum.item() / len(s.x_train)
    if not np.isfinite(train_loss):
        raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch}; lower --lr.")
    return train_loss, correct.item() / len(s.x_train), time.perf_counter() - began


def batches(
    s: Session, epoch: int, last_epoch: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """The epoch's mini-batches (number, inputs, targets), shuffled by the session's generator
    and moved to its device, each with the learning rate of its step set; a progress bar."""
    order = torch.randperm(len(s.x_train), generator=s.generator)
    batch = s.config.batch_size
    bar = tqdm(
        range(s.steps_per_epoch),
        desc=f"epoch {epoch}/{last_epoch}",
        leave=False,
        disable=None,
        unit="batch",
    )
    for b in bar:
        idx = order[b * batch : (b + 1) * batch]
        xb = s.x_train[idx].to(s.device, memory_format=torch.channels_last)
        yb = s.y_train[idx].to(s.device)
        for group in s.optimizer.param_groups:
            group["lr"] = s.lr_at(s.step)
        yield b, xb, yb


def finish_epoch(s: Session, epoch: int, loss: float, accuracy: float, seconds: float) -> None:
    """Validate, append to the history and commit the epoch's files (a new run is published
    with its first epoch)."""
    val_loss, val_acc = evaluate(s.net, s.x_test, s.y_test, s.device)
    check_finite(s, epoch, val_loss)
    s.history.append(
        {
            "epoch": epoch,
            "loss": loss,
            "accuracy": accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": s.lr_at(s.step - 1),
            "seconds": seconds,
        }
    )
    saved.save_epoch(s.writer.folder, s.net, s.checkpoint_state(), s.history, run_metrics(s))
    s.writer.publish()
    tqdm.write(
        f"epoch {epoch}: loss {loss:.4f}  val_loss {val_loss:.4f}  val_accuracy {val_acc:.4f}  "
        f"({seconds:.1f} s)"
    )


def run_metrics(s: Session) -> dict[str, Any]:
    """The run's summary after its last finished epoch (committed with that epoch)."""
    last = s.history[-1]
    return {
        "test_accuracy": last["val_accuracy"],
        "test_loss": last["val_loss"],
        "train_accuracy": last["accuracy"],
        "train_seconds": sum(h["seconds"] for h in s.history),
        "epochs": len(s.history),
        "seed": s.config.seed,
        "n_train": len(s.x_train),
        "device": str(s.device),
        "precision": s.precision,
        "threads": torch.get_num_threads(),
        "data_checksums": s.bundle.dataset.checksums,
    }


def check_finite(s: Session, epoch: int, val_loss: float) -> None:
    """Divergence in the epoch's last steps shows only in the weights and the validation loss
    (the training loss of a step is computed before the step): stop before it is committed."""
    bad = [name for name, p in s.net.named_parameters() if not torch.isfinite(p).all()]
    if bad or not np.isfinite(val_loss):
        what = f"weights of {', '.join(bad)}" if bad else f"validation loss ({val_loss})"
        raise TrainingDiverged(
            f"training diverged in epoch {epoch}: the {what} became non-finite; the last good "
            f"model (epoch {epoch - 1}) is kept. Lower --lr (now {s.config.lr}) or add a schedule."
        )


def flushing_denormals() -> bool:
    """Whether the CPU now flushes denormal floats to zero. torch can set this flag but not read
    it, so it is read from arithmetic: with the flag on, a denormal input counts as zero."""
    return torch.tensor([1e-40], dtype=torch.float32).mul(2.0).item() == 0.0


@contextlib.contextmanager
def process_flags(threads: int | None = None) -> Iterator[None]:
    """For the training call only: denormals flushed to zero (a denormal costs ~100x a normal
    float on x86) and the thread count of ``pick_threads``; the caller's settings come back
    afterwards."""
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        with using_threads(pick_threads(threads)):
            yield
    finally:
        torch.set_flush_denormal(before)


def train_epochs(
    s: Session, step: Callable[[Session, int, int], None], callbacks: list[EpochCallback] | None
) -> None:
    """``config.epochs`` epochs after the committed ones, each one ``step(s, epoch, last)``
    (train and commit), the callbacks after each; Ctrl-C says what the run keeps."""
    first = len(s.history) + 1
    last = first + s.config.epochs - 1
    run = s.writer.target
    try:
        for epoch in range(first, last + 1):
            step(s, epoch, last)
            for callback in callbacks or []:
                callback(s.history)
    except KeyboardInterrupt:
        if s.writer.published:
            tqdm.write(
                f"interrupted: {run} keeps epoch {len(s.history)}; continue with --resume {run}"
            )
        else:
            tqdm.write(f"interrupted before the first epoch was committed; {run} is untouched")
        raise


def epoch_step(s: Session, epoch: int, last: int) -> None:
    finish_epoch(s, epoch, *run_epoch(s, epoch, last))


def train(
    out: str | Path,
    config: TrainConfig = TrainConfig(),
    spec: NetSpec | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    data_root: str | Path | None = None,
    callbacks: list[EpochCallback] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train into ``out``; with ``resume`` continue that run for ``config.epochs`` more epochs;
    an existing run at ``out`` is replaced only with ``overwrite``."""
    with process_flags(config.threads), writing(out, overwrite, resume) as writer:
        s = set_up(writer, config, spec, resume, init_from, data_root)
        train_epochs(s, epoch_step, callbacks)
        return run_metrics(s)  # inside: the threads it reports are those of the training
