"""Training settings shared by every neural kind (the CNN and the autoencoder), checked in one
place: ``TrainConfig.validate()`` returns the config it checked, the convention of every settings
object in mapscope (``MLPConfig``, ``OIPSettings``); callers use what it returns."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Self

from mapscope.checks import Problems
from mapscope.data.prepare import SCALINGS, SHIFTED_SCALINGS
from mapscope.errors import ConfigError
from mapscope.training.recipes import RECIPES
from mapscope.training.schedules import SCHEDULES

OPTIMIZERS = ("rmsprop", "sgd", "adam", "nadam", "adamax")
MOST_SHIFT = 8  # pixels: a quarter of a 28-pixel digit image
DECAYING = ("power", "exponential")  # the schedules that read decay_rate and decay_steps
# the settings only some optimizers read, with those optimizers (the first is the one to suggest)
OPTIMIZER_SETTINGS = {
    "momentum": ("sgd",),
    "beta1": ("adam", "nadam", "adamax"),
    "beta2": ("adam", "nadam", "adamax"),
}


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"
    epochs: int = 4
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    beta1: float = 0.9  # Adam's (NAdam's, Adamax's) decay of its running gradient (momentum)
    beta2: float = 0.999  # Adam's (NAdam's, Adamax's) decay of its running squared gradient
    schedule: str = "onecycle"
    decay_rate: float | None = None  # None: the schedule's default (power 1.0, exponential 0.5)
    decay_steps: int = 1000
    seed: int = 0
    resplit: bool = False
    scaling: str = "standard"
    device: str = "auto"
    precision: str = "auto"
    max_train: int | None = None  # train on the first N training images (quick experiments)
    max_test: int | None = None  # validate each epoch on the first N test images (quick ones)
    threads: int | None = None  # None: the cores free at the start (``pick_threads``)
    label_smoothing: float = 0.0  # share of each target spread over all classes (classifiers)
    shift: int = 0  # move each training image by up to N pixels each way (classifiers; augment.py)
    recipe: str = "default"  # the named set of settings the others were taken from (RECIPES)

    @classmethod
    def from_recipe(cls, recipe: str = "default", **given: Any) -> Self:
        """A config with the settings of ``recipe`` for every field not in ``given``: the way
        ``--recipe fast`` fills the options left out on the command line."""
        if recipe not in RECIPES:
            raise ConfigError(f"recipe {recipe!r} unknown; choose one of {', '.join(RECIPES)}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        chosen = {k: v for k, v in RECIPES[recipe].items() if k in fields}
        return cls(**{**chosen, **given, "recipe": recipe})

    def recipe_settings(self) -> dict[str, Any]:
        """What this config's recipe set, as it stands in the config (printed on training)."""
        return {name: getattr(self, name) for name in RECIPES.get(self.recipe, {})}

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
        problems.at_least("max_test", self.max_test, 1, optional=True)
        problems.at_least("threads", self.threads, 1, optional=True)
        problems.finite("lr", self.lr, strict=True)
        problems.fraction("momentum", self.momentum)
        problems.fraction("beta1", self.beta1)
        problems.fraction("beta2", self.beta2)
        problems.fraction("label_smoothing", self.label_smoothing)
        self.check_shift(problems)
        problems.choice("recipe", self.recipe, RECIPES)
        if self.decay_rate is not None:
            problems.finite("decay_rate", self.decay_rate, strict=True)
            if self.schedule == "exponential" and self.decay_rate >= 1:
                problems.add(
                    f"decay_rate {self.decay_rate} never lowers an exponential schedule; give a "
                    "rate below 1 (0.5 halves the learning rate every decay_steps steps)"
                )
        problems.seed("seed", self.seed)
        self.check_used(problems)
        return problems

    def check_shift(self, problems: Problems) -> None:
        problems.at_least("shift", self.shift, 0)
        if self.shift > MOST_SHIFT:
            problems.add(
                f"shift must be at most {MOST_SHIFT} pixels, got {self.shift}; a digit moved "
                "further loses strokes over the image's edge (2 is usual for MNIST)"
            )
        if self.shift and self.scaling not in SHIFTED_SCALINGS:
            problems.add(
                f"shift needs a scaling that treats every pixel alike ({', '.join(SHIFTED_SCALINGS)}"
                f"), not {self.scaling!r}: per-pixel standardisation blows up a stroke moved onto "
                "a pixel that is blank in every training image; add --scaling unit"
            )

    def check_used(self, problems: Problems) -> None:
        """No setting is recorded and then ignored: one that the chosen optimizer or schedule
        does not read is refused unless it keeps its default."""
        for name, readers in OPTIMIZER_SETTINGS.items():
            value = getattr(self, name)
            if self.optimizer not in readers and value != getattr(TrainConfig, name):
                plural = "s" if len(readers) > 1 else ""
                problems.add(
                    f"{name} {value} is read by the {', '.join(readers)} optimizer{plural} only; "
                    f"leave it out with optimizer {self.optimizer!r}, or choose {readers[0]}"
                )
        if self.schedule not in DECAYING:
            if self.decay_rate is not None:
                problems.add(
                    f"decay_rate is read by the power and exponential schedules only; leave it "
                    f"out with schedule {self.schedule!r}"
                )
            if self.decay_steps != TrainConfig.decay_steps:
                problems.add(
                    f"decay_steps is read by the power and exponential schedules only; leave it "
                    f"out with schedule {self.schedule!r}"
                )

    def check_dataset(self, problems: Problems) -> None:
        problems.choice("dataset", self.dataset, ("mnist", "fashion-mnist"))
