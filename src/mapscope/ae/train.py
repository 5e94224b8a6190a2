"""Training an autoencoder into a run folder, one committed checkpoint per epoch.

The one trainer (``mapscope.training``) with an autoencoder's task: the target images in
``y_train``, the same shuffled mini-batches, optimizers,
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
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mapscope.ae import saved
from mapscope.ae.build import AutoEncoder, build
from mapscope.ae.config import AETrainConfig
from mapscope.ae.fast import fast_path
from mapscope.ae.spec import AESpec
from mapscope.data.bundle import DataBundle
from mapscope.data.prepare import prepare_inputs
from mapscope.device import INFERENCE_BATCH
from mapscope.errors import TrainingDiverged
from mapscope.training import trainer
from mapscope.training.task import Task
from mapscope.training.trainer import EpochCallback


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


def targets(bundle: DataBundle, part: str, positions=None) -> np.ndarray:
    """The images the decoder should give back: pixels in [0, 1], NCHW."""
    return prepare_inputs(bundle.raw(part, positions), "unit", layout="nchw")


class AETask(Task[AutoEncoder, AETrainConfig]):
    """An autoencoder: the images in [0, 1] as targets, per-pixel BCE or MSE, no accuracy."""

    saved = saved
    config_type = AETrainConfig

    def data_options(self, config: AETrainConfig) -> dict[str, Any]:
        return {"image_size": config.image_size, "colour": config.colour}

    def fit_spec(self, spec: AESpec | None, bundle: DataBundle) -> AESpec:
        # the input shape is the data's: a spec says everything else
        return replace(spec or AESpec(), input_shape=bundle.dataset.image_shape).validate()

    def build(self, spec: AESpec, seed: int) -> AutoEncoder:
        return build(spec, seed)

    def targets(self, bundle: DataBundle, part: str, positions=None) -> np.ndarray:
        return targets(bundle, part, positions)

    @contextlib.contextmanager
    def training_steps(
        self, net: AutoEncoder, config: AETrainConfig, on_cpu: bool
    ) -> Iterator[None]:
        with (
            logit_output(net, enabled=net.spec.loss == "bce"),
            fast_path(net, enabled=on_cpu),
        ):
            yield None

    def step_loss(
        self, net: AutoEncoder, output: torch.Tensor, target: torch.Tensor, config: AETrainConfig
    ):
        kind = net.spec.loss
        return reconstruction_loss(kind, output, target, logits=kind == "bce")

    def loss(
        self, net: AutoEncoder, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
    ):
        return reconstruction_loss(net.spec.loss, output, target, reduction)

    # an autoencoder that rebuilds every image as the same blur is still 10 % below the mean
    # image's loss (0.236 against 0.263 for MNIST); one that draws the digits is 30-50 % below
    learned_little = 0.8
    constant_guess = "the mean training image"

    def constant_output(self, bundle: DataBundle, y_train: torch.Tensor) -> torch.Tensor:
        # the mean training image, each pixel's count smoothed by half an image as the class
        # counts are, so that a pixel no training image inks is not an infinite BCE
        y = torch.as_tensor(y_train).double()
        return ((y.sum(0) + 0.5) / (len(y) + 1)).float()

    def metrics(self, net: AutoEncoder) -> dict[str, Any]:
        return {"loss": net.spec.loss}


def evaluate(
    net: AutoEncoder, x: torch.Tensor, target: torch.Tensor, device, batch=INFERENCE_BATCH
) -> float:
    """Mean per-pixel loss over a whole split, in float32 (what later commands see)."""
    return trainer.evaluate(AETask(), net, x, target, device, batch)[0]


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
    return trainer.train(AETask(), out, config, spec, resume, None, data_root, callbacks, overwrite)
