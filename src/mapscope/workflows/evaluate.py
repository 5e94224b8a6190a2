"""Evaluate any run: confusion matrix, per-class metrics and galleries.

``evaluate(run, ...)`` computes an ``Evaluation`` (arrays and numbers, no files);
``write_evaluation(result, out)`` writes its JSON, CSV and PNG files and returns their paths;
``result.summary()`` is the console table. Nothing here knows a model kind: the run's
predictor does the predicting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mapscope.errors import ConfigError
from mapscope.inspect.inspection import Inspection
from mapscope.io import write_csv, write_json
from mapscope.metrics import (
    ClassReport,
    confusion_matrix,
    format_reports,
    gallery_indices,
    most_confused,
    per_class,
)
from mapscope.report.display import RichDisplay
from mapscope.runs import Run, provenance

GALLERY_KINDS = ("true_positives", "false_positives", "false_negatives")


@dataclass
class Gallery:
    """Positions (in the split) of the right and wrong predictions for one class."""

    cls: int
    lists: dict  # kind -> first positions, and "counts"
    images: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> raw images (images only)


@dataclass
class Evaluation(RichDisplay):
    model: str
    dataset: str
    split: str
    class_names: tuple[str, ...]
    actual: np.ndarray
    predicted: np.ndarray
    matrix: np.ndarray
    reports: list[ClassReport]
    checksums: dict[str, str]
    galleries: list[Gallery] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.matrix) / self.matrix.sum())

    def summary(self) -> str:
        return format_reports(self.reports, self.accuracy)

    def most_confused(self, most: int = 5) -> list[tuple[str, str, int]]:
        """The ``most`` most frequent mistakes as (actual class, predicted class, count),
        largest first (the confusion matrix's largest cells off its diagonal)."""
        names = self.class_names
        return [(names[a], names[b], n) for a, b, n in most_confused(self.matrix, most)]

    def gallery_figure(self, cls: str | int, kind: str = "false_negatives"):
        """The figure of one gallery that ``evaluate(..., gallery=[cls])`` collected: its
        true positives, false positives or false negatives (``kind``), each titled with its
        index in the split, the predicted and the true class."""
        if kind not in GALLERY_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(GALLERY_KINDS)}, got {kind!r}.")
        for gallery in self.galleries:
            if cls in (gallery.cls, self.class_names[gallery.cls]):
                if not gallery.images:
                    raise ConfigError(f"{self.dataset} samples are not images: no gallery to draw.")
                return _gallery_figure(self, gallery, kind)
        raise ConfigError(
            f"no gallery of class {cls!r}: evaluate with gallery=[{str(cls)!r}] to collect it."
        )

    def _card(self):
        from mapscope.report.evaluation import plot_confusion

        names = list(self.class_names)
        return (
            f"Evaluation of {self.model}",
            [
                ("data", f"{self.dataset}, {self.split} split, {int(self.matrix.sum())} samples"),
                ("accuracy", f"{self.accuracy:.4f}"),
            ],
            lambda: plot_confusion(self.matrix, names, f"{self.dataset}, {self.split} split"),
            (
                ["class", "precision", "recall", "f1"],
                [
                    (r.name, f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}")
                    for r in self.reports
                ],
            ),
        )


def evaluate(
    run: Run | Inspection | str | Path,
    split: str = "test",
    gallery: list[str] | None = None,
    data_root: str | Path | None = None,
) -> Evaluation:
    """Predict a split of the run's own data (or a user's module on its data, given as an
    ``Inspection``) and compare with the labels."""
    if isinstance(run, Inspection):
        bundle, predictor, source = run.bundle, run, run.source
    else:
        run = run if isinstance(run, Run) else Run.open(run)
        bundle, predictor, source = run.bundle(data_root), run.predictor(), str(run.path)
    predicted = predictor.predict(bundle, split)
    actual = bundle.labels(split)
    names = bundle.dataset.class_names
    matrix = confusion_matrix(actual, predicted, len(names))
    result = Evaluation(
        source,
        bundle.dataset.name,
        split,
        names,
        actual,
        predicted,
        matrix,
        per_class(matrix, names),
        bundle.dataset.checksums,
    )
    for cls_name in gallery or []:
        cls = bundle.dataset.class_index(cls_name, "--gallery")
        lists = gallery_indices(actual, predicted, cls)
        images = {}
        if bundle.dataset.is_image:
            images = {
                kind: bundle.raw(split, lists[kind]) if lists[kind] else np.zeros((0, 28, 28))
                for kind in GALLERY_KINDS
            }
        result.galleries.append(Gallery(cls, lists, images))
    return result


def write_evaluation(result: Evaluation, out: str | Path) -> list[Path]:
    from mapscope.report.evaluation import plot_confusion
    from mapscope.report.figures import save_figure

    out, names = Path(out), result.class_names
    reports = result.reports
    written = [
        write_json(
            out / "confusion.json",
            {
                "classes": list(names),
                "rows": "actual",
                "columns": "predicted",
                "matrix": result.matrix.tolist(),
                "split": result.split,
                "accuracy": result.accuracy,
                "model": result.model,
                "provenance": provenance(result.checksums),
            },
        ),
        write_csv(
            out / "confusion.csv",
            ["actual\\predicted", *names],
            [[n, *row] for n, row in zip(names, result.matrix.tolist(), strict=True)],
        ),
        write_json(out / "per_class.json", [asdict(r) for r in reports]),
        write_csv(
            out / "per_class.csv",
            list(asdict(reports[0])),
            [list(asdict(r).values()) for r in reports],
        ),
        save_figure(
            plot_confusion(
                result.matrix,
                names,
                f"{result.dataset}, {result.split} split: accuracy {result.accuracy:.4f}",
            ),
            out / "confusion.png",
        ),
    ]
    for gallery in result.galleries:
        written += _write_gallery(result, gallery, out)
    return written


def _write_gallery(result: Evaluation, gallery: Gallery, out: Path) -> list[Path]:
    from mapscope.report.figures import save_figure

    names, lists, tag = result.class_names, gallery.lists, f"class{gallery.cls}"
    written = [
        write_json(
            out / f"gallery_{tag}.json",
            {"class": names[gallery.cls], "split": result.split, **lists},
        )
    ]
    for kind in gallery.images:
        figure = _gallery_figure(result, gallery, kind)
        written.append(save_figure(figure, out / f"gallery_{tag}_{kind}.png"))
    return written


def _gallery_figure(result: Evaluation, gallery: Gallery, kind: str):
    from mapscope.report.samples import image_tiles, prediction_caption

    names, positions = result.class_names, gallery.lists[kind]
    titles = [
        prediction_caption(i, names[result.predicted[i]], names[result.actual[i]])
        for i in positions
    ]
    title = (
        f"{kind.replace('_', ' ')} for {names[gallery.cls]}: first {len(positions)} of "
        f"{gallery.lists['counts'][kind]} (each: #index in the {result.split} split, predicted "
        "class, true class)"
    )
    return image_tiles(gallery.images[kind], titles, per_row=10, suptitle=title)
