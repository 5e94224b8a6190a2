"""What a kind of network supplies to the one trainer: its run files, its data, its network, its
targets, its loss and what counts as right.

The trainer (``training/trainer.py``) owns everything else: set-up, shuffled mini-batches, the
optimizer and its schedule, precision and threads, the epoch loop, the NaN guard, committing and
resuming. A kind is a ``Task`` subclass of a dozen lines (``cnn/train.py``, ``ae/train.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from mapscope.data.bundle import DataBundle
from mapscope.training.config import TrainConfig

Net = TypeVar("Net", bound=nn.Module)
StepByHand = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Config = TypeVar("Config", bound=TrainConfig)


class Task(Generic[Net, Config]):
    """The kind-specific half of training, for networks of type ``Net`` trained with settings
    of type ``Config``. ``saved`` is the kind's run module (``start``, ``save_epoch``,
    ``load_epoch``, ``FILES``, ...), ``config_type`` its settings class."""

    saved: ModuleType
    config_type: type[TrainConfig] = TrainConfig
    # a validation loss above this share of ``constant_output``'s: the network has learned
    # little (the trainer says so when it ends)
    learned_little: float = 0.9
    constant_guess = "the class frequencies"  # what ``constant_output`` is, in words

    def data(self, config: Config, data_root: str | Path | None) -> DataBundle:
        """A new run's inputs: the dataset, the split (``resplit``: a shuffled one drawn with
        the run's seed) and the scaler fitted on the training part."""
        mode = "resplit" if config.resplit else "canonical"
        return DataBundle.create(
            config.dataset,
            config.scaling,
            mode,
            config.seed,
            data_root=data_root,
            **self.data_options(config),
        )

    def data_options(self, config: Config) -> dict[str, Any]:
        """How the dataset is read (image size and colour for image folders and face sets)."""
        return {}

    def fit_spec(self, spec: Any, bundle: DataBundle) -> Any:
        """The network spec a new run trains, checked against the data."""
        raise NotImplementedError

    def build(self, spec: Any, seed: int) -> Net:
        raise NotImplementedError

    def targets(self, bundle: DataBundle, part: str, positions=None) -> np.ndarray:
        """What the network should answer for the images of ``part``."""
        return bundle.labels(part, positions)

    @contextlib.contextmanager
    def training_steps(self, net: Net, config: Config, on_cpu: bool) -> Iterator[StepByHand | None]:
        """The block of an epoch's steps: the kind's fast path is swapped in here. It may
        yield a step by hand, ``step(x, target) -> (output, loss)`` with the loss's gradient
        added to the parameters' ``.grad``, that the trainer calls under the step's autocast
        instead of a forward, ``step_loss`` and ``loss.backward()``; None: autograd's step."""
        yield None

    def compiles(self, net: Net, precision: str, on_cpu: bool) -> bool:
        """Whether ``warm_up`` will compile its kernels (or wait for a compile under way)
        rather than load them: the trainer says so while it works."""
        return False

    def warm_up(self, net: Net, precision: str, on_cpu: bool) -> float:
        """Compile or load what the fast path runs, before the first epoch's clock starts, so
        that an epoch's seconds are its steps' (and the first epoch compares with the others);
        returns the seconds it took."""
        return 0.0

    def step_loss(self, net: Net, output: torch.Tensor, target: torch.Tensor, config: Config):
        """The loss a step minimises (inside ``training_steps``), which may differ from the
        reported ``loss`` by the config's regularisation (label smoothing, penalties)."""
        return self.loss(net, output, target)

    def loss(self, net: Net, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean"):
        """The loss per target value (per image for classes, per pixel for images), float32."""
        raise NotImplementedError

    def constant_output(self, bundle: DataBundle, y_train: torch.Tensor) -> torch.Tensor:
        """The one output that does best without looking at the input, taken from the
        training targets: for classes, their frequencies (as logits). The trainer measures a
        network against its loss (``constant_loss``)."""
        counts = torch.bincount(y_train.long(), minlength=bundle.dataset.n_classes).double()
        return torch.log(counts.clamp(min=0.5) / counts.sum()).float()  # an unseen class: rare

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """How many outputs are right (None: the kind has no accuracy)."""
        return None

    def metrics(self, net: Net) -> dict[str, Any]:
        """The kind's own entries of metrics.json, beside the shared ones."""
        return {}
