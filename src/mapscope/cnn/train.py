"""Training a CNN into a run folder: the one trainer (``mapscope.training``) with a classifier's
task. The loss is cross-entropy on the logits in float32 (``training/losses.py``), plus the
spec's L1/L2 on the kernels during training; on the CPU the epoch's steps run through the fast
path of ``cnn/fast.py``, swapped in for the steps and out again before validation and saving.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mapscope.cnn import saved
from mapscope.cnn.build import Network, build
from mapscope.cnn.fast import fast_path
from mapscope.cnn.spec import NetSpec, default_spec
from mapscope.cnn.whole_step import WholeStep, whole_step
from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError
from mapscope.training import trainer
from mapscope.training.config import OPTIMIZERS, TrainConfig
from mapscope.training.losses import smoothed_cross_entropy
from mapscope.training.task import Task
from mapscope.training.trainer import EpochCallback

__all__ = ["OPTIMIZERS", "CNNTask", "TrainConfig", "regularization", "train"]


def regularization(net: Network) -> torch.Tensor | float:
    spec = net.spec
    total: torch.Tensor | float = 0.0
    for w in net.kernels():
        total = total + spec.l2 * w.pow(2).sum() + spec.l1 * w.abs().sum()
    return total


class CNNTask(Task[Network, TrainConfig]):
    """A classifier: class indices as targets, cross-entropy, accuracy."""

    saved = saved
    config_type = TrainConfig

    def fit_spec(self, spec: NetSpec | None, bundle: DataBundle) -> NetSpec:
        spec = spec or default_spec()
        dataset = bundle.dataset
        if spec.input_shape != (1, *dataset.x.shape[1:]):
            raise ConfigError(
                f"the network's input_shape {list(spec.input_shape)} does not fit "
                f"{dataset.name} images (1x{dataset.x.shape[1]}x{dataset.x.shape[2]}); set "
                "input_shape = [1, 28, 28] in --config."
            )
        if spec.n_classes != dataset.n_classes:
            raise ConfigError(
                f"the output layer has {spec.n_classes} units but {dataset.name} has "
                f"{dataset.n_classes} classes."
            )
        return spec

    def build(self, spec: NetSpec, seed: int) -> Network:
        return build(spec, seed)

    @contextlib.contextmanager
    def training_steps(
        self, net: Network, config: TrainConfig, on_cpu: bool
    ) -> Iterator[WholeStep | None]:
        with fast_path(net, enabled=on_cpu):
            yield whole_step(net, config.label_smoothing) if on_cpu else None

    def compiles(self, net: Network, precision: str, on_cpu: bool) -> bool:
        if not on_cpu:
            return False
        from mapscope.cnn import background, precompile

        if background.running() is not None:
            return True  # waited for: said, as a compile
        if precompile.compiled_for(net.spec, precision):
            return False
        return not precompile.load_shipped(net.spec, precision)

    def warm_up(self, net: Network, precision: str, on_cpu: bool) -> float:
        if not on_cpu:
            return 0.0
        from mapscope.cnn import background, precompile  # numba: only when training

        began = time.perf_counter()
        background.wait()  # a compile a command started ahead (cnn/background.py)
        if not precompile.compiled_for(net.spec, precision):  # compiled apart, then loaded
            precompile.compile_apart(net.spec, precision)
            if net.spec == default_spec():
                background.mark_compiled()
        precompile.compile_kernels(net.spec, precisions=(precision,))
        return time.perf_counter() - began

    def step_loss(
        self, net: Network, output: torch.Tensor, target: torch.Tensor, config: TrainConfig
    ):
        loss = smoothed_cross_entropy(output.float(), target, config.label_smoothing)
        if net.spec.l1 or net.spec.l2:  # adding a zero would cost an op and its backward
            loss = loss + regularization(net)
        return loss

    def loss(
        self, net: Network, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
    ):
        return F.cross_entropy(output.float(), target, reduction=reduction)

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output.argmax(1) == target).sum()


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
    """Train a CNN into ``out``; with ``resume`` continue that run for ``config.epochs`` more
    epochs; an existing run at ``out`` is replaced only with ``overwrite``."""
    return trainer.train(
        CNNTask(), out, config, spec, resume, init_from, data_root, callbacks, overwrite
    )
