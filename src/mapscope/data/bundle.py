"""A dataset together with its split and fitted scaler: the exact inputs of one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mapscope.data.datasets import Dataset, load_dataset
from mapscope.data.prepare import SCALINGS, Standardizer, prepare_inputs
from mapscope.data.split import Split, make_split
from mapscope.errors import RunError
from mapscope.schema import read_as


@dataclass(frozen=True)
class ImageTable:
    """How an image folder or face set was read (``data.image`` of config.json)."""

    size: int = 64
    colour: Literal["grey", "rgb"] = "grey"


@dataclass(frozen=True)
class DataTable:
    """The schema of config.json's ``data`` table: what a run was trained on (``config()``
    writes it). Keys written by other versions are ignored."""

    dataset: str
    scaling: str  # one of SCALINGS
    split_mode: str = "canonical"
    split_seed: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    image: ImageTable | None = None

    @classmethod
    def check(cls, data: object, source: str) -> DataTable:
        table = read_as(cls, data, source, "data", ignore=None)
        if table.scaling not in SCALINGS:
            raise RunError(
                f"{source}: data.scaling {table.scaling!r} is not one of {', '.join(SCALINGS)}."
            )
        return table


@dataclass
class DataBundle:
    dataset: Dataset
    split: Split
    scaling: str
    scaler: Standardizer | None

    @classmethod
    def create(
        cls,
        dataset: str,
        scaling: str = "standard",
        split_mode: str = "canonical",
        seed: int = 0,
        test_size: int | None = None,
        data_root: str | Path | None = None,
        image_size: int = 64,
        colour: str = "grey",
    ) -> DataBundle:
        """``image_size`` and ``colour``: how image folders and face sets are read."""
        data = load_dataset(dataset, data_root, image_size, colour)
        split = make_split(data.name, data.y, data.canonical_train, split_mode, seed, test_size)
        scaler = Standardizer().fit(data.x[split.train]) if scaling == "standard" else None
        return cls(data, split, scaling, scaler)

    @classmethod
    def restore(
        cls, folder: str | Path, data: dict, data_root: str | Path | None = None
    ) -> DataBundle:
        """A run's inputs from its saved split and scaler (no refitting); ``data`` is the
        ``data`` table of the run's config.json."""
        folder = Path(folder)
        table = DataTable.check(data, f"{folder}/config.json")
        image = ImageTable(**table.image) if table.image else ImageTable()
        dataset = load_dataset(table.dataset, data_root, image.size, image.colour)
        changed = set(table.checksums.items()) ^ set(dataset.checksums.items())
        if data["dataset"] in dataset.checksums and changed:
            raise RunError(
                f"{data['dataset']}: the images differ from those the run in {folder} was trained "
                "on (files added, removed or changed since); its split and results refer to "
                "the old images. Restore the folder or train a new run."
            )
        split = Split.load(folder / "split.npz", pool_size=len(dataset.y))
        if split.dataset != dataset.name:
            raise RunError(
                f"{folder / 'split.npz'}: a split of {split.dataset}, but the run's config.json "
                f"says {dataset.name}; the files come from different runs."
            )
        scaler_path = folder / "scaler.npz"
        scaler = None
        if data["scaling"] == "standard":
            scaler = Standardizer.load(scaler_path)
            n_features = int(np.prod(dataset.x.shape[1:]))
            if len(scaler.mean_) != n_features:
                raise RunError(
                    f"{scaler_path}: fitted on {len(scaler.mean_)} features, but {dataset.name} "
                    f"has {n_features}; the files come from different runs."
                )
        return cls(dataset, split, data["scaling"], scaler)

    def save(self, run_dir: str | Path) -> None:
        run_dir = Path(run_dir)
        self.split.save(run_dir / "split.npz")
        if self.scaler is not None:
            self.scaler.save(run_dir / "scaler.npz")

    def config(self) -> dict:
        return {
            "dataset": self.dataset.name,
            "scaling": self.scaling,
            "split_mode": self.split.mode,
            "split_seed": self.split.seed,
            "n_train": len(self.split.train),
            "n_test": len(self.split.test),
            "checksums": self.dataset.checksums,
            **({"image": self.image} if self.dataset.name in self.dataset.checksums else {}),
        }

    @property
    def image(self) -> dict:
        """How an image folder or face set was read (size and colour)."""
        channels, size, _ = self.dataset.image_shape
        return {"size": size, "colour": "rgb" if channels == 3 else "grey"}

    def rows(self, part: str, indices: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Pool rows of a split part, optionally only the given positions (range-checked)."""
        rows = self.split.indices(part)
        if indices is None:
            return rows
        indices = np.asarray(indices, dtype=np.int64)
        bad = indices[(indices < 0) | (indices >= len(rows))]
        if bad.size:
            self.split.pool_index(
                part, int(bad[0])
            )  # raises the range error naming the valid range
        return rows[indices]

    def first(self, part: str, limit: int | None = None) -> np.ndarray:
        """Positions of a part (train or test); only the first ``limit`` when given (quick
        runs: ``max_train``, ``max_test``)."""
        n = len(self.split.indices(part))
        return np.arange(min(limit or n, n))

    def raw(self, part: str, indices=None) -> np.ndarray:
        return self.dataset.x[self.rows(part, indices)]

    def labels(self, part: str, indices=None) -> np.ndarray:
        return self.dataset.y[self.rows(part, indices)]

    def inputs(self, part: str, indices=None, layout: str = "flat") -> np.ndarray:
        return prepare_inputs(self.raw(part, indices), self.scaling, self.scaler, layout)

    def prepare(self, raw: np.ndarray, layout: str = "flat") -> np.ndarray:
        """Scale samples from outside the dataset (a user's PNG) exactly like the training data."""
        return prepare_inputs(raw, self.scaling, self.scaler, layout)

    def pixel_reach(self) -> np.ndarray:
        """(H, W) how large an input value each pixel can become: the largest |prepared value|
        of a blank or a fully inked pixel (over colour channels). Under per-pixel
        standardisation a pixel that is almost always blank in the training set reaches tens
        of standard deviations when ink touches it; under plain scaling every pixel reaches 1."""
        channels, height, width = self.dataset.image_shape
        stored = self.dataset.x
        full = 255 if stored.dtype == np.uint8 else float(stored.max())
        shape = (1, *stored.shape[1:])
        blank = np.zeros(shape, dtype=stored.dtype)
        inked = np.full(shape, full, dtype=stored.dtype)
        reach = np.maximum(np.abs(self.prepare(blank, "nchw")), np.abs(self.prepare(inked, "nchw")))
        return reach.reshape(channels, height, width).max(0)
