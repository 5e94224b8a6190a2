"""`mapscope cnn ...`: summary, train, predict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import typer

from mapscope.cli import training_options as opt
from mapscope.cli.common import (
    DATA_DIR,
    THREADS,
    check_resume_options,
    given_options,
    tested_on,
    trained_for,
    wrote_run,
)
from mapscope.cnn.spec import default_spec, load_spec
from mapscope.errors import ConfigError
from mapscope.training.config import TrainConfig

app = typer.Typer(help="Build, train and use the CNN.", no_args_is_help=True)


@app.command()
def summary(
    config: Path = typer.Option(None, help="TOML file describing the network."),
    model: Path = typer.Option(None, help="A run folder of `mapscope cnn train`."),
) -> None:
    """Layers, output shapes, parameters, receptive field and effective stride."""
    if config and model:
        raise ConfigError("give --config or --model, not both.")
    from mapscope.cnn.summary import format_summary  # torch: builds the network

    if model:
        from mapscope.runs import Run

        spec = Run.open(model, "cnn").module().spec
    else:
        spec = load_spec(config) if config else default_spec()
    typer.echo(format_summary(spec))


@app.command(name="train")
def train_command(
    ctx: typer.Context,
    out: Path = opt.OUT,
    config: Path = typer.Option(None, help="TOML network config (default: the reference network)."),
    dataset: str = typer.Option("mnist", help="mnist or fashion-mnist."),
    epochs: int = typer.Option(TrainConfig.epochs, help=opt.EPOCHS_HELP),
    batch_size: int = typer.Option(TrainConfig.batch_size),
    optimizer: str = opt.OPTIMIZER,
    lr: float = typer.Option(TrainConfig.lr, help=opt.LR_HELP),
    momentum: float = opt.MOMENTUM,
    beta1: float = opt.BETA1,
    beta2: float = opt.BETA2,
    schedule: str = opt.SCHEDULE,
    decay_rate: float = opt.DECAY_RATE,
    decay_steps: int = opt.DECAY_STEPS,
    seed: int = opt.SEED,
    resplit: bool = opt.RESPLIT,
    scaling: str = typer.Option(TrainConfig.scaling, help="standard, image, unit or none."),
    device: str = opt.DEVICE,
    precision: str = opt.PRECISION,
    label_smoothing: float = typer.Option(
        TrainConfig.label_smoothing,
        help="Share of each training target spread evenly over all classes (0 to 0.99).",
    ),
    shift: int = typer.Option(
        TrainConfig.shift,
        help="Augmentation: move each training image by a random 0..N pixels each way (needs "
        "--scaling unit, image or none).",
    ),
    recipe: str = typer.Option(
        TrainConfig.recipe,
        help="default, or the settings of the shortest time to a test accuracy: fast (99 %), "
        "one-pass (99.3 %) or accurate (99.5 %); printed, stored in config.json; options you "
        "give override them.",
    ),
    max_train: int = opt.MAX_TRAIN,
    max_test: int = opt.MAX_TEST,
    threads: int = THREADS,
    resume: Path = opt.RESUME,
    overwrite: bool = opt.OVERWRITE,
    restart: Path = typer.Option(None, help="Start from the saved initial weights of this run."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Train the CNN; each finished epoch is committed to the run folder (watch its curves.png)."""
    options = locals()
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {name: options[name] for name in given_options(ctx) if name in fields}
    cfg = TrainConfig.from_recipe(**given).validate()  # --recipe, when given, is among them
    if cfg.recipe != "default":
        settings = " ".join(f"{k}={v}" for k, v in cfg.recipe_settings().items())
        typer.echo(f"recipe {cfg.recipe}: {settings}")
    from mapscope.cnn.train import train  # torch: once the settings are found good

    if resume:
        check_resume_options(ctx)
        metrics = train(resume, cfg, resume=True, data_root=data_dir)
        out = resume
    else:
        if out is None:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR).")
        spec = load_spec(config) if config else None
        metrics = train(out, cfg, spec, init_from=restart, data_root=data_dir, overwrite=overwrite)
    typer.echo(
        f"test accuracy {metrics['test_accuracy']:.4f}{tested_on(metrics)}, "
        f"{trained_for(metrics)}, {metrics['train_seconds']:.1f} s training"
    )
    wrote_run(out)


@app.command()
def predict(
    model: Path = typer.Option(..., help="Run folder of `mapscope cnn train`."),
    split: str = typer.Option("test", help="train or test."),
    index: list[int] = typer.Option(None, "--index", help="Image index in the split; repeatable."),
    image: list[Path] = typer.Option(None, "--image", help="A PNG you drew; repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Class probabilities (summing to 1) and the predicted class."""
    if not index and not image:
        raise ConfigError("give at least one --index N or --image FILE.png.")
    from mapscope.cnn.predict import predict_drawing, predict_proba
    from mapscope.runs import Run

    run = Run.open(model, "cnn")
    net, bundle = run.module(), run.bundle(data_dir)
    names = bundle.dataset.class_names
    results = []
    if index:
        probs = predict_proba(net, bundle.inputs(split, index, layout="nchw"))
        for i, p, y in zip(index, probs, bundle.labels(split, index), strict=True):
            results.append({"source": f"{split}[{i}]", "label": names[y], "probabilities": p})
    for path in image or []:
        probs = predict_drawing(net, bundle, path)
        results.append({"source": str(path), "label": None, "probabilities": probs})
    for r in results:
        r["predicted"] = names[int(np.argmax(r["probabilities"]))]
        r["probabilities"] = {
            names[k]: round(float(v), 6) for k, v in enumerate(r["probabilities"])
        }
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for r in results:
        probs = "  ".join(f"{k}:{v:.3f}" for k, v in r["probabilities"].items())
        actual = f" (actual {r['label']})" if r["label"] is not None else ""
        typer.echo(f"{r['source']}: predicted {r['predicted']}{actual}\n  {probs}")
