"""`mapscope evaluate`: confusion matrix, per-class metrics and galleries for any run."""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import DATA_DIR, out_folder, wrote
from mapscope.evaluate.run import evaluate as evaluate_run
from mapscope.evaluate.run import write_evaluation


def evaluate(
    model: Path = typer.Option(..., help="Run folder of a CNN, MLP or KMeans run."),
    out: Path = typer.Option(..., help="Folder for the evaluation files.", callback=out_folder),
    split: str = typer.Option("test", help="train or test."),
    gallery: list[str] = typer.Option(
        None, "--gallery", help="Class (name or index) for TP/FP/FN panels; repeatable."
    ),
    data_dir: Path = DATA_DIR,
) -> None:
    """Evaluate a trained model on a split of its own data."""
    result = evaluate_run(model, split, gallery, data_dir)
    written = write_evaluation(result, out)
    typer.echo(result.summary())
    wrote(*written)
