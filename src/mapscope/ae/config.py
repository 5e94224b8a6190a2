"""An autoencoder's training settings: the CNN's, with an autoencoder's defaults and how image
folders and face sets are read. Apart from the trainer so that reading and checking them (the
command line's defaults, a sweep's grid) needs no torch."""

from __future__ import annotations

from dataclasses import dataclass

from mapscope.checks import Problems
from mapscope.data.datasets import FACE_SETS, FOLDER, check_image_set
from mapscope.data.folder import COLOURS
from mapscope.training.config import TrainConfig


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
        if self.label_smoothing:
            problems.add("label_smoothing applies to classifiers; an autoencoder has no labels")
        if self.shift:
            problems.add(
                "shift applies to classifiers; an autoencoder rebuilds the image it is given"
            )
        if self.recipe != "default":
            problems.add(
                f"recipe {self.recipe!r} is a CNN recipe; autoencoders train with their defaults"
            )
        if not 4 <= self.image_size <= 1024:
            problems.add(f"image_size must be in 4..1024, got {self.image_size}")
        resized = self.dataset.startswith(FOLDER) or self.dataset in FACE_SETS
        for name in ("image_size", "colour"):
            if not resized and getattr(self, name) != getattr(AETrainConfig, name):
                problems.add(
                    f"{name} applies to image folders and face sets only; {self.dataset} "
                    "images are read as they are stored, so leave it out"
                )
        return problems

    def check_dataset(self, problems: Problems) -> None:
        problem = check_image_set(self.dataset)
        if problem:
            problems.add(problem)
