"""`mapscope evaluate`: confusion matrix, per-class metrics and galleries for any run."""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import NetworkChoice, network_options, out_folder, wrote


@network_options("Run folder of a CNN, MLP or KMeans run (or --module).")
def evaluate(
    out: Path = typer.Option(..., help="Folder for the evaluation files.", callback=out_folder),
    split: str = typer.Option("test", help="train or test."),
    gallery: list[str] = typer.Option(
        None, "--gallery", help="Class (name or index) for TP/FP/FN panels; repeatable."
    ),
    network: NetworkChoice = None,
) -> None:
    """Evaluate a trained model on a split of its own data."""
    network.check()
    from mapscope.workflows.evaluate import evaluate as evaluate_run
    from mapscope.workflows.evaluate import write_evaluation

    # a run as itself (KMeans runs have no network); a module as an inspection of its data
    model = network.model if network.model is not None else network.inspection()
    result = evaluate_run(model, split, gallery, network.data_dir)
    written = write_evaluation(result, out)
    typer.echo(result.summary())
    wrote(*written)
