"""Evaluate a run folder: confusion matrix, per-class metrics and galleries, all saved."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError
from mapscope.evaluate.galleries import gallery_indices
from mapscope.evaluate.metrics import confusion_matrix, format_reports, per_class
from mapscope.evaluate.models import load_predictor
from mapscope.io import write_csv, write_json
from mapscope.report.evaluation import plot_confusion
from mapscope.report.figures import save_figure
from mapscope.report.samples import image_tiles
from mapscope.runs import provenance


def evaluate_run(
    run_dir: str | Path,
    out: str | Path,
    part: str = "test",
    gallery: list[str] | None = None,
    data_root: str | Path | None = None,
) -> dict[str, Any]:
    out = Path(out)
    bundle = DataBundle.from_run(run_dir, data_root)
    predicted = load_predictor(run_dir)(bundle, part)
    actual = bundle.labels(part)
    names = bundle.dataset.class_names
    matrix = confusion_matrix(actual, predicted, len(names))
    reports = per_class(matrix, names)
    accuracy = float(np.trace(matrix) / matrix.sum())
    written = [
        write_json(
            out / "confusion.json",
            {
                "classes": list(names),
                "rows": "actual",
                "columns": "predicted",
                "matrix": matrix.tolist(),
                "split": part,
                "accuracy": accuracy,
                "model": str(run_dir),
                "provenance": provenance(bundle.dataset.checksums),
            },
        ),
        write_csv(
            out / "confusion.csv",
            ["actual\\predicted", *names],
            [[n, *row] for n, row in zip(names, matrix.tolist(), strict=True)],
        ),
        write_json(out / "per_class.json", [asdict(r) for r in reports]),
        write_csv(
            out / "per_class.csv",
            list(asdict(reports[0])),
            [list(asdict(r).values()) for r in reports],
        ),
        save_figure(
            plot_confusion(
                matrix, names, f"{bundle.dataset.name}, {part} split: accuracy {accuracy:.4f}"
            ),
            out / "confusion.png",
        ),
    ]
    for cls_name in gallery or []:
        written += _gallery(bundle, part, actual, predicted, _class_index(cls_name, names), out)
    return {
        "accuracy": accuracy,
        "matrix": matrix,
        "reports": reports,
        "table": format_reports(reports, accuracy),
        "written": written,
    }


def _class_index(name: str, names: tuple[str, ...]) -> int:
    if name in names:
        return names.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    raise ConfigError(
        f"--gallery {name!r} is not a class; classes are {', '.join(names)} (or 0..{len(names) - 1})."
    )


def _gallery(bundle, part, actual, predicted, cls, out: Path) -> list[Path]:
    names = bundle.dataset.class_names
    lists = gallery_indices(actual, predicted, cls)
    tag = f"class{cls}"
    written = [
        write_json(out / f"gallery_{tag}.json", {"class": names[cls], "split": part, **lists})
    ]
    if not bundle.dataset.is_image:
        return written
    for kind in ("true_positives", "false_positives", "false_negatives"):
        positions = lists[kind]
        images = bundle.raw(part, positions) if positions else np.zeros((0, 28, 28))
        titles = [f"#{i} p{names[predicted[i]]}/a{names[actual[i]]}" for i in positions]
        title = f"{kind.replace('_', ' ')} for {names[cls]}: first {len(positions)} of {lists['counts'][kind]}"
        written.append(
            save_figure(
                image_tiles(images, titles, per_row=10, suptitle=title),
                out / f"gallery_{tag}_{kind}.png",
            )
        )
    return written
