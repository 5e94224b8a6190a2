"""`mapscope mlp ...`: train and sweep the numpy MLP.

`train` and `sweep` take the same training options; they are declared once, in
``_training_options``, and ``with_training_options`` adds them to a command's signature. The
config is built from them by keyword (``config_from``), like every command's config.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_type_hints

import typer

from mapscope.cli.common import DATA_DIR, config_from, out_folder, parse_ints, wrote, wrote_run
from mapscope.cli.sweep import RUN_THREADS, SCHEDULER, WORKERS
from mapscope.mlp.train import MLPConfig, train

app = typer.Typer(help="Train the numpy MLP and sweep its parameters.", no_args_is_help=True)
D = MLPConfig()


def _training_options(
    layers: str = typer.Option(
        None, help="Layer sizes, e.g. 784,70,30,10 (default adapts to the dataset)."
    ),
    activation: str = typer.Option(D.activation, help="Hidden activation: sigmoid, relu or tanh."),
    loss: str = typer.Option(
        D.loss, help="logloss (sigmoid outputs), crossentropy (softmax) or mse."
    ),
    batch_size: int = typer.Option(D.batch_size),
    epochs: int = typer.Option(D.epochs),
    max_batches: int = typer.Option(None, help="Cap on mini-batches per epoch."),
    lr: float = typer.Option(D.lr),
    decrease: float = typer.Option(D.decrease, help="Learning rate lr / (1 + decrease * epoch)."),
    momentum: float = typer.Option(D.momentum),
    l2: float = typer.Option(D.l2, help="Lambda2: L2 term Lambda2 * 0.5 * sum(w^2)."),
    l1: float = typer.Option(D.l1, help="Lambda1: L1 term Lambda1 * sum(|w|)."),
    init_scale: float = typer.Option(
        D.init_scale, help="Initial weights uniform in +-scale/sqrt(fan_in)."
    ),
    dataset: str = typer.Option(D.dataset, help="mnist, fashion-mnist or wifi."),
    seed: int = typer.Option(D.seed),
    resplit: bool = typer.Option(False, help="Re-split train+test with the seed."),
    scaling: str = typer.Option(
        None, help="unit, standard, image or none (default: unit for images, standard for wifi)."
    ),
    cluster_features: int = typer.Option(
        None, help="Train on distances to K KMeans centroids instead of pixels."
    ),
    max_train: int = typer.Option(None, help="Train on the first N training samples only."),
) -> MLPConfig:
    options = dict(locals())
    options["layers"] = tuple(parse_ints(layers, "--layers")) if layers else None
    return config_from(MLPConfig, options)


def with_training_options(command):
    """Replace the command's ``config`` parameter by every option of ``_training_options``."""
    own = {k: p for k, p in inspect.signature(command).parameters.items() if k != "config"}
    extra = inspect.signature(_training_options).parameters

    def wrapper(**kwargs):
        options = {name: kwargs.pop(name) for name in extra}
        return command(config=_training_options(**options), **kwargs)

    wrapper.__signature__ = inspect.Signature([*own.values(), *extra.values()])
    hints = {k: v for k, v in get_type_hints(command).items() if k not in ("config", "return")}
    wrapper.__annotations__ = {**hints, **get_type_hints(_training_options)}
    wrapper.__annotations__.pop("return", None)
    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    return wrapper


@app.command(name="train")
@with_training_options
def train_command(
    config: MLPConfig,
    out: Path = typer.Option(..., help="Run folder to create."),
    overwrite: bool = typer.Option(False, help="Replace the run already in --out."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Train the MLP into a run folder: weights, config, split, history, metrics and curves."""
    metrics = train(out, config, data_dir, overwrite)
    typer.echo(
        f"test accuracy {metrics['test_accuracy']:.4f} (best {metrics['best_test_accuracy']:.4f}), "
        f"train accuracy {metrics['train_accuracy']:.4f}, {metrics['train_seconds']:.1f} s"
    )
    wrote_run(out)


@app.command()
@with_training_options
def sweep(
    config: MLPConfig,
    param: str = typer.Option(
        ..., help="Parameter to vary: l2, l1, lr, decrease, momentum, batch_size, ..."
    ),
    values: str = typer.Option(..., help="Comma-separated values, e.g. 0.01,0.1,0.2,0.4,0.8."),
    out: Path = typer.Option(
        ..., help="Folder for one run per value plus the sweep table and plot.", callback=out_folder
    ),
    scheduler: str = SCHEDULER,
    workers: int = WORKERS,
    threads: int = RUN_THREADS,
    overwrite: bool = typer.Option(False, help="Replace runs of an earlier sweep in --out."),
    data_dir: Path = DATA_DIR,
) -> None:
    """One run per value (a case of `mapscope sweep mlp`); a table of accuracies; the
    regularisation share."""
    from mapscope.sweep.mlp import mlp_sweep, write_mlp_sweep

    result = mlp_sweep(
        out,
        param,
        values.replace(" ", "").split(","),
        config,
        data_dir,
        scheduler=scheduler,
        workers=workers,
        threads=threads,
        overwrite=overwrite,
    )
    written = write_mlp_sweep(result, out)
    typer.echo(result.summary())
    wrote(*written)
    if result.failed:
        raise typer.Exit(1)
