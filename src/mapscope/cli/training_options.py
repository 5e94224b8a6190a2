"""The options `cnn train` and `ae train` share, declared once: both train through the one
trainer with the settings of ``TrainConfig`` (``AETrainConfig`` inherits them), so an option
reads the same and defaults to the same in both commands' ``--help``.

What differs between the two stays in each command: the data, the network, and the defaults a
kind sets for itself (epochs, batch size, learning rate, scaling).
"""

from __future__ import annotations

import typer

from mapscope.training.config import TrainConfig

OPTIMIZER = typer.Option(TrainConfig.optimizer, help="rmsprop, sgd, adam, nadam or adamax.")
LR_HELP = "(Peak) learning rate."
MOMENTUM = typer.Option(TrainConfig.momentum, help="Momentum for sgd.")
BETA1 = typer.Option(
    TrainConfig.beta1,
    help="Decay of the running gradient for adam, nadam and adamax (their first beta, their "
    "momentum); lower (0.8) follows the gradient sooner in short runs.",
)
BETA2 = typer.Option(
    TrainConfig.beta2,
    help="Decay of the running squared gradient for adam, nadam and adamax (their second beta); "
    "lower (0.95) adapts faster in short runs.",
)
SCHEDULE = typer.Option(TrainConfig.schedule, help="none, power, exponential or onecycle.")
DECAY_RATE = typer.Option(
    TrainConfig.decay_rate,
    help="Rate of power/exponential decay (default: 1.0 for power, 0.5 for exponential, which "
    "halves the rate every --decay-steps).",
)
DECAY_STEPS = typer.Option(TrainConfig.decay_steps, help="Steps of power/exponential decay.")
SEED = typer.Option(TrainConfig.seed)
DEVICE = typer.Option(TrainConfig.device, help="auto, cpu or cuda.")
PRECISION = typer.Option(
    TrainConfig.precision,
    help="auto (bf16 autocast on GPUs, and on CPUs whose bf16 matrix products run at least 1.5 "
    "times as fast as fp32; else fp32), fp32 or bf16.",
)
MAX_TRAIN = typer.Option(
    TrainConfig.max_train, help="Train on the first N training images only (quick experiments)."
)
MAX_TEST = typer.Option(
    TrainConfig.max_test,
    help="Validate each epoch on the first N test images only (quick experiments).",
)
OUT = typer.Option(None, help="Run folder to create (required unless --resume).")
RESUME = typer.Option(
    None, help="Continue this run folder for --epochs more epochs, with its own settings."
)
OVERWRITE = typer.Option(
    False, help="Replace the run already in --out (swapped in once the first epoch is done)."
)
RESPLIT = typer.Option(
    False,
    help="Shuffle train+test with the seed and split again (the test part keeps its size).",
)
EPOCHS_HELP = "Epochs (with --resume: additional epochs)."
