"""`mapscope import keras`: a model trained elsewhere becomes a mapscope run."""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import DATA_DIR, wrote

app = typer.Typer(no_args_is_help=True, help="Turn models trained elsewhere into mapscope runs.")


@app.command()
def keras(
    model_file: Path = typer.Argument(
        ..., help="A Keras model: MODEL.keras (Keras 3) or MODEL.h5."
    ),
    out: Path = typer.Option(..., help="Run folder to create."),
    dataset: str = typer.Option("mnist", help="mnist or fashion-mnist: what the model reads."),
    scaling: str = typer.Option(
        "standard",
        help="How the model's inputs were scaled: standard (per-pixel StandardScaler of the "
        "training images, as in the original experiments), unit (pixels / 255), image or none.",
    ),
    resplit: bool = typer.Option(False, help="Use the original experiments' shuffled split."),
    seed: int = typer.Option(0, help="Seed of the shuffled split (with --resplit)."),
    overwrite: bool = typer.Option(False, help="Replace an existing run at --out."),
    data_dir: Path = DATA_DIR,
) -> None:
    """A Keras Sequential (or chain) of Conv2D, pooling, Flatten, Dense, Dropout,
    BatchNormalization and Activation layers as a CNN run, read with h5py: no TensorFlow."""
    from mapscope.workflows.keras_import import import_keras

    result = import_keras(
        model_file, out, dataset, scaling, resplit, seed, data_root=data_dir, overwrite=overwrite
    )
    typer.echo(
        f"imported {len(result['layers'])} layers ({', '.join(result['layers'])}); test accuracy "
        f"{result['test_accuracy']:.4f} on {dataset}"
    )
    wrote(Path(out) / "config.json")
    typer.echo(f"run folder: {out}")
