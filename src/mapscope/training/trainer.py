"""The one trainer of every neural kind, one committed checkpoint per epoch.

Three steps, each on one screen: ``set_up`` (a new run or a resumed one), ``run_epoch`` (shuffle
with an explicit generator, forward under autocast, the kind's loss, step, learning rate from a
pure schedule) and ``finish_epoch`` (validate, append to the history, commit the epoch's files).
``train`` strings them together inside the run's transaction (``runs.folder.writing``): a new run
appears at ``out`` only when its first epoch is committed, each epoch is committed as a set, and
a run interrupted with Ctrl-C keeps its last committed epoch. A kind supplies a ``Task``: its
data, network, targets, loss, accuracy and fast path (swapped in for the epoch's steps only).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mapscope.data.bundle import DataBundle
from mapscope.device import (
    INFERENCE_BATCH,
    autocast,
    pick_device,
    pick_precision,
    pick_threads,
    using_threads,
)
from mapscope.errors import ConfigError, RunError, TrainingDiverged
from mapscope.history import epoch_record, total_seconds
from mapscope.runs.epochs import current_epoch
from mapscope.runs.folder import RunWriter, read_config, writing
from mapscope.schema import read_as
from mapscope.training.augment import shift_images
from mapscope.training.config import TrainConfig
from mapscope.training.optimizers import make_optimizer
from mapscope.training.schedules import learning_rate
from mapscope.training.task import Task
from mapscope.weights import load_weights

EpochCallback = Callable[[list[dict[str, float]]], None]


@dataclass
class TrainingState:
    """Everything one training call works with; ``set_up`` makes it, the epochs advance it."""

    task: Task
    writer: RunWriter
    config: TrainConfig
    net: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    bundle: DataBundle
    device: torch.device
    precision: str
    threads: int  # torch's and numba's threads while training; 0 until ``pick_training_threads``
    x_train: torch.Tensor
    y_train: torch.Tensor  # what the network should answer: classes, or images to rebuild
    x_test: torch.Tensor
    y_test: torch.Tensor
    planned_epochs: int
    constant_loss: float = float("nan")  # the validation loss of the best input-blind guess
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

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
        task: Task,
        writer: RunWriter,
        config: TrainConfig,
        net: nn.Module,
        bundle: DataBundle,
        device: torch.device,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
    ) -> TrainingState:
        """A state at step 0: optimizer and generator from the config, ``train`` and ``test``
        as (inputs, targets) arrays."""
        return cls(
            task=task,
            writer=writer,
            config=config,
            net=net,
            optimizer=make_optimizer(
                config.optimizer,
                net.parameters(),
                config.lr,
                config.momentum,
                beta1=config.beta1,
                beta2=config.beta2,
            ),
            generator=torch.Generator().manual_seed(config.seed),
            bundle=bundle,
            device=device,
            precision=pick_precision(config.precision, device),
            threads=0,  # counted after the warm-up (``pick_training_threads``)
            x_train=torch.from_numpy(train[0]),
            y_train=torch.from_numpy(train[1]),
            x_test=torch.from_numpy(test[0]),
            y_test=torch.from_numpy(test[1]),
            planned_epochs=config.epochs,
        )

    def resume(self, state: dict, history: list[dict[str, Any]]) -> None:
        """Continue from a committed epoch's checkpoint (the weights are already loaded) for
        ``config.epochs`` more epochs."""
        self.history = history
        fresh = self.optimizer.state_dict()["param_groups"]
        stored = state["optimizer"].get("param_groups")
        if not isinstance(stored, list) or [
            g.get("params") for g in stored if isinstance(g, dict)
        ] != [g["params"] for g in fresh]:
            raise ValueError("its optimizer groups name other parameters than this network's")
        self.optimizer.load_state_dict(state["optimizer"])
        check_optimizer_state(self.optimizer, fresh)
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        # a run keeps the precision it started in, whatever "auto" would pick on this machine,
        # and the thread count it trained with (sums over threads round differently), so that
        # a resumed run gives the weights of an uninterrupted one
        self.precision = state.get("precision", self.precision)
        if self.config.threads is None:
            self.threads = int(state.get("threads", self.threads))
        self.planned_epochs = max(int(state["planned_epochs"]), len(history) + self.config.epochs)

    def checkpoint_state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
            "planned_epochs": self.planned_epochs,
            "precision": self.precision,
            "threads": self.threads,
        }


def check_optimizer_state(optimizer: torch.optim.Optimizer, fresh: list[dict]) -> None:
    """What torch's ``load_state_dict`` leaves unchecked (the steps would fail later, deep in
    its kernels): every setting of every group of the type a new optimizer has (its switches,
    such as ``fused``, of the same value), and every
    per-parameter buffer of its parameter's shape. ``fresh``: a new optimizer's groups."""
    for group, new in zip(optimizer.param_groups, fresh, strict=True):
        for key, value in new.items():
            if key == "params":
                continue
            stored = group.get(key)
            numbers = (int, float)
            same = (
                isinstance(stored, numbers) and isinstance(value, numbers)
                if isinstance(value, numbers) and not isinstance(value, bool)
                else type(stored) is type(value)
            )
            if isinstance(value, tuple) and isinstance(stored, tuple):
                same = len(stored) == len(value) and all(isinstance(v, numbers) for v in stored)
            if not same:
                raise ValueError(
                    f"optimizer setting {key!r} is {stored!r}, expected like {value!r}"
                )
            # a switch of the optimizer's implementation (fused, differentiable, foreach, ...)
            # is the trainer's, never the run's: another one fails in torch's step or trains
            # other bits
            if (value is None or isinstance(value, bool)) and stored != value:
                raise ValueError(
                    f"optimizer setting {key!r} is {stored!r}; a mapscope training sets {value!r}"
                )
    for parameter, buffers in optimizer.state.items():
        if not isinstance(parameter, torch.Tensor) or not isinstance(buffers, dict):
            raise ValueError("optimizer state for a parameter this network does not have")
        for key, value in buffers.items():
            if key != "step" and (
                not isinstance(value, torch.Tensor) or value.shape != parameter.shape
            ):
                raise ValueError(f"optimizer buffer {key!r} does not fit its parameter")


@torch.no_grad()
def evaluate(
    task: Task, net: nn.Module, x: torch.Tensor, y: torch.Tensor, device, batch=INFERENCE_BATCH
):
    """(loss per target value, accuracy or None) over a whole split, in float32 whatever
    precision training ran in: the numbers later commands see for the saved model."""
    net.eval()
    loss_sum, correct = 0.0, None
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device, memory_format=torch.channels_last)
        yb = y[i : i + batch].to(device)
        output = net(xb)
        loss_sum += task.loss(net, output, yb, "sum").item()
        right = task.correct(output, yb)
        if right is not None:
            correct = (correct or 0) + right.item()
    values = len(y) * (y[0].numel() if len(y) else 1)  # images (classes) or pixels (images)
    return loss_sum / values, None if correct is None else correct / len(x)


# what a resumed run may take from the caller; every other setting is the run's own
PER_CALL = ("epochs", "device", "threads")


def stored_run(out: Path, task: Task, given: TrainConfig, data_root):
    """What a run to resume holds: its spec, its own training settings (with the ``PER_CALL``
    ones of ``given``: how many more epochs, where and on how many threads) and its exact
    inputs."""
    owner = task.saved
    source = f"{out}/config.json"
    stored = read_config(out, owner.KIND)
    owner.check_config(stored, source)
    if "imported" in stored:
        raise RunError(
            f"{out} holds a model imported from {stored['imported'].get('format', 'elsewhere')}, "
            "with no optimizer state to resume; it can be inspected and evaluated, not resumed."
        )
    owner.resumable(out)
    per_call = {name: getattr(given, name) for name in PER_CALL}
    config = replace(read_as(task.config_type, stored["train"], source, "train"), **per_call)
    try:
        config.validate()
    except ConfigError as exc:
        raise RunError(f"{source}: train: {exc}") from None
    return owner.spec_of(stored, source), config, DataBundle.restore(out, stored["data"], data_root)


def set_up(
    task: Task,
    writer: RunWriter,
    config: TrainConfig,
    spec: Any,
    resume: bool,
    data_root: str | Path | None,
    init_from: str | Path | None = None,
) -> TrainingState:
    """A new run (config, split, scaler, initial weights into the writer's staging folder), or
    a resumed one."""
    out = writer.target
    if resume:
        spec, config, bundle = stored_run(out, task, config, data_root)
    else:
        config = config.validate()
        bundle = task.data(config, data_root)
        spec = task.fit_spec(spec, bundle)
    device = pick_device(config.device)
    subset = bundle.first("train", config.max_train)
    tested = bundle.first("test", config.max_test)
    net = task.build(spec, config.seed)
    if init_from is not None:
        load_weights(net, Path(init_from) / task.saved.FILES["initial"])
    net.to(device, memory_format=torch.channels_last)
    state = TrainingState.start(
        task,
        writer,
        config,
        net,
        bundle,
        device,
        train=(
            bundle.inputs("train", subset, layout="nchw"),
            task.targets(bundle, "train", subset),
        ),
        test=(bundle.inputs("test", tested, layout="nchw"), task.targets(bundle, "test", tested)),
    )
    if resume:
        stored_state, history = task.saved.load_epoch(out, net)
        try:
            state.resume(stored_state, history)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise RunError(
                f"{out}: the checkpoint's optimizer or generator state does not fit this run "
                f"({exc}); the run cannot be resumed, but its weights can still be inspected."
            ) from None
    else:
        task.saved.start(writer.folder, spec, asdict(config), bundle, net)
    state.constant_loss = constant_loss(task, net, bundle, state.y_train, state.y_test)
    return state


def constant_loss(task: Task, net: nn.Module, bundle: DataBundle, y_train, y_test) -> float:
    """The validation loss of the best guess that ignores the input (the class frequencies;
    an autoencoder's mean training image): what a network has learned shows as how far below
    it its validation loss is."""
    guess = task.constant_output(bundle, torch.as_tensor(y_train))
    target = torch.as_tensor(y_test)
    return float(task.loss(net, guess.expand(len(target), *guess.shape), target))


def learned_little(s: TrainingState) -> str | None:
    """A note when the network does barely better than a guess that ignores the input, as a
    short run can leave it (an autoencoder that rebuilds every image as the mean blur)."""
    val_loss = s.history[-1]["val_loss"] if s.history else float("nan")
    if not val_loss > s.task.learned_little * s.constant_loss:
        return None
    return (
        f"note: the validation loss {val_loss:.4f} is close to {s.constant_loss:.4f}, the loss "
        f"of a guess that ignores the input ({s.task.constant_guess}): the network has learned "
        "little yet; "
        "train for more steps (more --epochs or --max-train, or a smaller --batch-size)."
    )


def run_epoch(s: TrainingState, epoch: int, last_epoch: int) -> tuple[float, float | None, float]:
    """One pass over the shuffled training images; returns (loss, accuracy or None, seconds)."""
    s.net.train()
    began = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    correct = None
    with s.task.training_steps(s.net, s.config, on_cpu=s.device.type == "cpu") as by_hand:
        for b, xb, yb in batches(s, epoch, last_epoch):
            s.optimizer.zero_grad(set_to_none=True)
            if by_hand is None:
                output, loss = backprop(s, xb, yb)
            else:
                with autocast(s.device, s.precision):
                    output, loss = by_hand(xb, yb)
            s.optimizer.step()
            s.step += 1
            loss_sum += loss * len(xb)  # both steps hand back a detached loss
            right = s.task.correct(output, yb)
            if right is not None:
                correct = right if correct is None else correct + right
            if b % 100 == 0 and not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in epoch {epoch}, batch {b}; the last good model "
                    f"(epoch {epoch - 1}) is kept. Lower --lr (now {s.config.lr}) or add a schedule."
                )
    train_loss = loss_sum.item() / len(s.x_train)
    if not np.isfinite(train_loss):
        raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch}; lower --lr.")
    accuracy = None if correct is None else correct.item() / len(s.x_train)
    return train_loss, accuracy, time.perf_counter() - began


def backprop(
    s: TrainingState, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's output, the step's loss, and its gradient in every parameter's ``.grad``
    (autograd's step; a kind's ``training_steps`` may offer one by hand instead)."""
    with autocast(s.device, s.precision):
        output = s.net(xb)
    loss = s.task.step_loss(s.net, output, yb, s.config)
    loss.backward()
    return output, loss.detach()


def batches(
    s: TrainingState, epoch: int, last_epoch: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """The epoch's mini-batches (number, inputs, targets), shuffled by the state's generator
    (which also draws the images' offsets under ``shift``) and moved to its device, each with the learning rate of its step set; a progress bar."""
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
        # index_select: a third of indexing's time for a batch of images (8 against 21 us)
        xb = shift_images(s.x_train.index_select(0, idx), s.config.shift, s.generator)
        xb = xb.to(s.device, memory_format=torch.channels_last)
        yb = s.y_train.index_select(0, idx).to(s.device)
        for group in s.optimizer.param_groups:
            group["lr"] = s.lr_at(s.step)
        yield b, xb, yb


def finish_epoch(
    s: TrainingState, epoch: int, loss: float, accuracy: float | None, seconds: float
) -> None:
    """Validate, append to the history and commit the epoch's files (a new run is published
    with its first epoch)."""
    val_loss, val_accuracy = evaluate(s.task, s.net, s.x_test, s.y_test, s.device)
    check_finite(s, epoch, val_loss)
    record = epoch_record(
        epoch, loss, accuracy, val_loss, val_accuracy, s.lr_at(s.step - 1), seconds
    )
    s.history.append(record)
    s.task.saved.save_epoch(s.writer.folder, s.net, s.checkpoint_state(), s.history, run_metrics(s))
    s.writer.publish()
    scored = f"  val_accuracy {val_accuracy:.4f}" if val_accuracy is not None else ""
    tqdm.write(
        f"epoch {epoch}: loss {loss:.4f}  val_loss {val_loss:.4f}{scored}  ({seconds:.1f} s)"
    )


def run_metrics(s: TrainingState) -> dict[str, Any]:
    """The run's summary after its last finished epoch (committed with that epoch)."""
    last = s.history[-1]
    scores = {}
    if last["val_accuracy"] is not None:
        scores = {"test_accuracy": last["val_accuracy"], "train_accuracy": last["accuracy"]}
    return {
        **scores,
        "test_loss": last["val_loss"],
        "train_loss": last["loss"],
        "constant_loss": s.constant_loss,
        **s.task.metrics(s.net),
        "train_seconds": total_seconds(s.history),
        "epochs": len(s.history),
        "seed": s.config.seed,
        "n_train": len(s.x_train),
        "n_test": len(s.x_test),
        "device": str(s.device),
        "precision": s.precision,
        "threads": torch.get_num_threads(),
        "data_checksums": s.bundle.dataset.checksums,
    }


def check_finite(s: TrainingState, epoch: int, val_loss: float) -> None:
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
def process_flags(threads: int) -> Iterator[None]:
    """For the training epochs only: denormals flushed to zero (a denormal costs ~100x a normal
    float on x86) and ``threads`` threads; the caller's settings come back afterwards."""
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        with using_threads(threads):
            yield
    finally:
        torch.set_flush_denormal(before)


def warm_up(s: TrainingState) -> None:
    """The kind's fast path compiled or loaded before the first epoch. A first compile (numba,
    once per network shape and machine) takes seconds with nothing else to show, so it is said
    before it starts and when it is done; loading compiled kernels says nothing, however long
    a slow disk or CPU makes it (2 s on a 2-core AMD EPYC Zen 3)."""
    on_cpu = s.device.type == "cpu"
    compiles = s.task.compiles(s.net, s.precision, on_cpu=on_cpu)
    if compiles:
        tqdm.write(
            "compiling the CPU training kernels, once per machine and network shape (5-40 s "
            "on 2 cores, by CPU and precision; `python -m mapscope.cnn.precompile` does it "
            "ahead) ..."
        )
    seconds = s.task.warm_up(s.net, s.precision, on_cpu=on_cpu)
    if compiles:
        tqdm.write(f"compiled the CPU training kernels in {seconds:.1f} s (cached for later runs)")


def pick_training_threads(s: TrainingState) -> None:
    """The threads the epochs run on: the config's, a resumed run's own, or the cores free now.
    Counted after the warm-up, which waits for a kernel compile under way in the background: a
    training counted beside it took one core of two for all its epochs (and kept it on resume)."""
    if not s.threads:
        s.threads = pick_threads(s.config.threads)


def train_epochs(s: TrainingState, callbacks: list[EpochCallback] | None) -> None:
    """``config.epochs`` epochs after the committed ones, each trained and committed, the
    callbacks after each; Ctrl-C says what the run keeps."""
    first = len(s.history) + 1
    last = first + s.config.epochs - 1
    run = s.writer.target
    try:
        for epoch in range(first, last + 1):
            finish_epoch(s, epoch, *run_epoch(s, epoch, last))
            for callback in callbacks or []:
                callback(s.history)
    except KeyboardInterrupt:
        if s.writer.published:
            # the epoch the pointer names, not the history in memory: Ctrl-C may land between
            # an epoch's files and the pointer that commits them
            kept = current_epoch(s.writer.folder)
            tqdm.write(f"interrupted: {run} keeps epoch {kept}; continue with --resume {run}")
        else:
            tqdm.write(f"interrupted before the first epoch was committed; {run} is untouched")
        raise


def train(
    task: Task,
    out: str | Path,
    config: TrainConfig,
    spec: Any = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    data_root: str | Path | None = None,
    callbacks: list[EpochCallback] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``task``'s network into ``out``; with ``resume`` continue that run for
    ``config.epochs`` more epochs; an existing run at ``out`` is replaced only with
    ``overwrite``."""
    with writing(out, overwrite, resume) as writer:
        s = set_up(task, writer, config, spec, resume, data_root, init_from)
        warm_up(s)
        pick_training_threads(s)
        with process_flags(s.threads):
            train_epochs(s, callbacks)
            note = learned_little(s)
            if note:
                tqdm.write(note)
            return run_metrics(s)  # inside: the threads it reports are those of the training
