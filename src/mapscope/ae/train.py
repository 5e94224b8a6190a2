"""Training an autoencoder into a run folder, one committed checkpoint per epoch.

The CNN's trainer with another objective: the same session (``cnn.train.Session``: the inputs
in ``x_train``, the target images in ``y_train``), the same shuffled mini-batches, optimizers,
schedules, precision choice and divergence checks, and the same transaction (a new run appears
when its first epoch is committed; ``--resume`` continues bit for bit). The target is the image
in [0, 1] whatever scaling the encoder's input gets; the loss is per-pixel BCE or MSE.

Fast path: on a CPU whose bf16 matrix units pay (``pick_precision``), the forward runs under
bf16 autocast, with channels-last maps, fused Adam and denormals flushed; the loss and the
validation are float32. On the CPU the epoch runs through ``ae.fast``: each convolution with its
ReLU fused in, the slow bf16 kernel gradients as matrix products, the code map channels-last
through the dense layers. With the BCE loss the output layer's sigmoid is switched off for the
epoch's steps (``logit_output``) and the loss is computed from the logits: 0.3 ms instead of
1.4 ms per batch of 128 MNIST images here, and no clamping of log(0).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mapscope.ae import saved
from mapscope.ae.build import AutoEncoder, build
from mapscope.ae.fast import fast_path
from mapscope.ae.spec import AESpec
from mapscope.checks import Problems
from mapscope.cnn.device import autocast, pick_device
from mapscope.cnn.train import (
    EpochCallback,
    Session,
    TrainConfig,
    batches,
    check_finite,
    process_flags,
    stored_run,
    train_epochs,
)
from mapscope.data.bundle import DataBundle
from mapscope.data.datasets import check_image_set
from mapscope.data.folder import COLOURS
from mapscope.data.prepare import prepare_inputs
from mapscope.errors import TrainingDiverged
from mapscope.runfolder import RunWriter, writing


@dataclass(frozen=True)
class AETrainConfig(TrainConfig):
    """The CNN's training settings with an autoencoder's defaults, and how image folders and
    face sets are read (``image_size``, ``colour``)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3
    scaling: str = "unit"
    image_size: int = 64
    colour: str = "grey"

    def problems(self) -> Problems:
        problems = super().problems()
        problems.choice("colour", self.colour, COLOURS)
        if not 4 <= self.image_size <= 1024:
            problems.add(f"image_size must be in 4..1024, got {self.image_size}")
        return problems

    def check_dataset(self, problems: Problems) -> None:
        problem = check_image_set(self.dataset)
        if problem:
            problems.add(problem)


@contextlib.contextmanager
def logit_output(net: AutoEncoder, enabled: bool = True) -> Iterator[bool]:
    """The network hands out logits instead of pixels within the block (its ``Dec_Output``
    activation is swapped for the identity and put back on exit, also after an error); yields
    whether it does."""
    block = net.layers["Dec_Output"]
    sigmoid = block.act
    if enabled:
        block.act = nn.Identity()
    try:
        yield enabled
    finally:
        block.act = sigmoid


def reconstruction_loss(
    kind: str, output: torch.Tensor, target: torch.Tensor, reduction="mean", logits=False
):
    """Per-pixel BCE or squared error, in float32; ``logits``: the output is before the
    sigmoid (BCE only)."""
    if logits:
        return F.binary_cross_entropy_with_logits(output.float(), target, reduction=reduction)
    if kind == "bce":
        try:
            return F.binary_cross_entropy(output.float(), target, reduction=reduction)
        except RuntimeError:  # torch refuses outputs outside [0, 1]: a sigmoid gives NaN only
            if torch.isfinite(output).all():
                raise
            raise TrainingDiverged(
                "training diverged: the decoder's output became NaN; the last committed epoch "
                "is kept. Lower --lr."
            ) from None
    return F.mse_loss(output.float(), target, reduction=reduction)


@torch.no_grad()
def evaluate(net: AutoEncoder, x: torch.Tensor, target: torch.Tensor, device, batch=1000) -> float:
    """Mean per-pixel loss over a whole split, in float32 (what later commands see)."""
    net.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device, memory_format=torch.channels_last)
        out = net(xb)
        total += reconstruction_loss(
            net.spec.loss, out, target[i : i + batch].to(device), "sum"
        ).item()
    return total / target.numel()


def targets(bundle: DataBundle, part: str, positions=None) -> np.ndarray:
    """The images the decoder should give back: pixels in [0, 1], NCHW."""
    return prepare_inputs(bundle.raw(part, positions), "unit", layout="nchw")


def set_up(
    writer: RunWriter,
    config: AETrainConfig,
    spec: AESpec | None,
    resume: bool,
    data_root: str | Path | None,
) -> Session:
    out = writer.target
    if resume:
        spec, config, bundle = stored_run(out, saved, AETrainConfig, config.epochs, data_root)
    else:
        config.validate()
        bundle = DataBundle.create(
            config.dataset,
            config.scaling,
            "canonical",
            config.seed,
            data_root=data_root,
            image_size=config.image_size,
            colour=config.colour,
        )
        # the input shape is the data's: a spec says everything else
        spec = replace(spec or AESpec(), input_shape=bundle.dataset.image_shape).validate()
    device = pick_device(config.device)
    subset = bundle.train_positions(config.max_train)
    net = build(spec, config.seed).to(device, memory_format=torch.channels_last)
    session = Session.start(
        writer,
        config,
        net,
        bundle,
        device,
        train=(bundle.inputs("train", subset, layout="nchw"), targets(bundle, "train", subset)),
        test=(bundle.inputs("test", layout="nchw"), targets(bundle, "test")),
    )
    if resume:
        session.resume(*saved.load_epoch(out, net))
    else:
        saved.start(writer.folder, spec, asdict(config), bundle, net)
    return session


def run_epoch(s: Session, epoch: int, last_epoch: int) -> tuple[float, float]:
    """One pass over the shuffled training images; returns (mean per-pixel loss, seconds)."""
    s.net.train()
    began = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    kind = s.net.spec.loss
    with (
        logit_output(s.net, enabled=kind == "bce") as logits,
        fast_path(s.net, enabled=s.device.type == "cpu"),
    ):
        for b, xb, target in batches(s, epoch, last_epoch):
            with autocast(s.device, s.precision):
                output = s.net(xb)
            loss = reconstruction_loss(kind, output, target, logits=logits)
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            s.optimizer.step()
            s.step += 1
            loss_sum += loss.detach() * len(xb)
            if b % 100 == 0 and not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in epoch {epoch}, batch {b}; the last good model "
                    f"(epoch {epoch - 1}) is kept. Lower --lr (now {s.config.lr})."
                )
    return loss_sum.item() / len(s.x_train), time.perf_counter() - began


def finish_epoch(s: Session, epoch: int, loss: float, seconds: float) -> None:
    val_loss = evaluate(s.net, s.x_test, s.y_test, s.device)
    check_finite(s, epoch, val_loss)
    row = {"epoch": epoch, "loss": loss, "val_loss": val_loss, "lr": s.lr_at(s.step - 1)}
    s.history.append({**row, "seconds": seconds})
    saved.save_epoch(s.writer.folder, s.net, s.checkpoint_state(), s.history, run_metrics(s))
    s.writer.publish()
    tqdm.write(f"epoch {epoch}: loss {loss:.4f}  val_loss {val_loss:.4f}  ({seconds:.1f} s)")


def run_metrics(s: Session) -> dict[str, Any]:
    last = s.history[-1]
    return {
        "test_loss": last["val_loss"],
        "train_loss": last["loss"],
        "loss": s.net.spec.loss,
        "train_seconds": sum(h["seconds"] for h in s.history),
        "epochs": len(s.history),
        "seed": s.config.seed,
        "n_train": len(s.x_train),
        "device": str(s.device),
        "precision": s.precision,
        "threads": torch.get_num_threads(),
        "data_checksums": s.bundle.dataset.checksums,
    }


def epoch_step(s: Session, epoch: int, last: int) -> None:
    finish_epoch(s, epoch, *run_epoch(s, epoch, last))


def train(
    out: str | Path,
    config: AETrainConfig = AETrainConfig(),
    spec: AESpec | None = None,
    resume: bool = False,
    data_root: str | Path | None = None,
    callbacks: list[EpochCallback] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train an autoencoder into ``out`` (``resume``: continue it for ``config.epochs`` more
    epochs); an existing run at ``out`` is replaced only with ``overwrite``."""
    with process_flags(config.threads), writing(out, overwrite, resume) as writer:
        s = set_up(writer, config, spec, resume, data_root)
        train_epochs(s, epoch_step, callbacks)
        return run_metrics(s)  # inside: the threads it reports are those of the training
