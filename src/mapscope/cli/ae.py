"""`mapscope ae ...`: train an autoencoder, reconstruct, study its latent space, generate."""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.ae.config import AETrainConfig
from mapscope.ae.samplers import PAIRS, SAMPLERS
from mapscope.ae.spec import AESpec, load_spec
from mapscope.cli import training_options as opt
from mapscope.cli.common import (
    DATA_DIR,
    THREADS,
    check_resume_options,
    config_from,
    given_options,
    out_folder,
    out_image,
    parse_ints,
    tested_on,
    trained_for,
    wrote,
    wrote_run,
)
from mapscope.errors import ConfigError

app = typer.Typer(
    help="Autoencoders: train, reconstruct, study the latent space, generate.",
    no_args_is_help=True,
)
MODEL = typer.Option(..., help="Run folder of `mapscope ae train`.")


@app.command(name="train")
def train_command(
    ctx: typer.Context,
    out: Path = opt.OUT,
    dataset: str = typer.Option(
        "mnist",
        help="mnist, fashion-mnist, olivetti-faces, lfw-people (downloaded by scikit-learn) or "
        "folder:PATH (a folder of JPEG/PNG images; sub-folders are classes).",
    ),
    latent: int = typer.Option(AESpec.latent, help="Size of the latent code."),
    filters: str = typer.Option(
        "32,64", help="Encoder convolutions, each halving the image (the decoder mirrors them)."
    ),
    config: Path = typer.Option(
        None,
        help="TOML file of autoencoder settings (configs/ae.toml); replaces the options above.",
    ),
    kernel: int = typer.Option(AESpec.kernel, help="Kernel size of every convolution."),
    downsample: str = typer.Option(AESpec.downsample, help="stride or pool."),
    upsample: str = typer.Option(
        AESpec.upsample, help="transpose (transposed convolutions) or upsample (nearest + conv)."
    ),
    batch_norm: bool = typer.Option(False, help="Batch norm after each hidden convolution."),
    loss: str = typer.Option(AESpec.loss, help="bce or mse (per pixel)."),
    image_size: int = typer.Option(
        AETrainConfig.image_size, help="Side of the square images of folders and face sets."
    ),
    colour: str = typer.Option(AETrainConfig.colour, help="grey or rgb (folders and face sets)."),
    epochs: int = typer.Option(AETrainConfig.epochs, help=opt.EPOCHS_HELP),
    batch_size: int = typer.Option(AETrainConfig.batch_size),
    optimizer: str = opt.OPTIMIZER,
    lr: float = typer.Option(AETrainConfig.lr, help=opt.LR_HELP),
    momentum: float = opt.MOMENTUM,
    beta1: float = opt.BETA1,
    beta2: float = opt.BETA2,
    schedule: str = opt.SCHEDULE,
    decay_rate: float = opt.DECAY_RATE,
    decay_steps: int = opt.DECAY_STEPS,
    seed: int = opt.SEED,
    resplit: bool = opt.RESPLIT,
    scaling: str = typer.Option(
        AETrainConfig.scaling,
        help="Encoder input: unit, standard, image or none (the target is always [0, 1]).",
    ),
    device: str = opt.DEVICE,
    precision: str = opt.PRECISION,
    max_train: int = opt.MAX_TRAIN,
    max_test: int = opt.MAX_TEST,
    threads: int = THREADS,
    resume: Path = opt.RESUME,
    overwrite: bool = opt.OVERWRITE,
    data_dir: Path = DATA_DIR,
) -> None:
    """Train a convolutional autoencoder; each finished epoch is committed to the run folder."""
    options = locals()
    cfg = config_from(AETrainConfig, options)
    from mapscope.ae.train import train  # torch: once the settings are found good

    if resume:
        check_resume_options(ctx)
        metrics = train(resume, cfg, resume=True, data_root=data_dir)
        out = resume
    else:
        if out is None:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR).")
        if config:
            _check_config_alone(ctx)
            spec = load_spec(config)
        else:
            spec = AESpec(
                latent=latent,
                filters=tuple(parse_ints(filters, "--filters")),
                kernel=kernel,
                downsample=downsample,
                upsample=upsample,
                batch_norm=batch_norm,
                loss=loss,
            )  # validated against the data's image shape once the data is read
        metrics = train(out, cfg, spec, data_root=data_dir, overwrite=overwrite)
    typer.echo(
        f"test reconstruction loss {metrics['test_loss']:.4f} ({metrics['loss']}){tested_on(metrics)}, "
        f"{trained_for(metrics)}, "
        f"{metrics['train_seconds']:.1f} s training"
    )
    wrote_run(out)


SPEC_OPTIONS = ("latent", "filters", "kernel", "downsample", "upsample", "batch_norm", "loss")


def _check_config_alone(ctx: typer.Context) -> None:
    """--config describes the whole network; an option that would describe it too is refused
    rather than silently overruled."""
    given = [flag for name, flag in given_options(ctx).items() if name in SPEC_OPTIONS]
    if given:
        raise ConfigError(
            f"--config describes the whole network; leave out {', '.join(given)} or set them "
            "in the file."
        )


@app.command(name="reconstruct")
def reconstruct_command(
    model: Path = MODEL,
    index: list[int] = typer.Option(..., "--index", help="Image index in the split; repeatable."),
    out: Path = typer.Option(
        ..., help="PNG file to write (and a JSON beside it).", callback=out_image
    ),
    split: str = typer.Option("test", help="train or test."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Originals beside their reconstructions, with the per-image error."""
    from mapscope.workflows.autoencoder import reconstruct, write_reconstruction

    result = reconstruct(model, index, split, data_dir)
    typer.echo(result.summary())
    wrote(*write_reconstruction(result, out))


@app.command(name="latent")
def latent_command(
    model: Path = MODEL,
    out: Path = typer.Option(
        ..., help="Folder for latent.json and the pictures.", callback=out_folder
    ),
    n: int = typer.Option(1000, help="Vectors drawn from each sampler."),
    b: float = typer.Option(1.5, help="Half-width of the uniform sampler's box [-b, b]."),
    truncate: float = typer.Option(
        None, help="Truncate the mnd sampler at this Mahalanobis radius."
    ),
    components: int = typer.Option(10, help="Components of the gmm sampler."),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Where the codes live: components, radii, correlations, PCA, fragmentation."""
    from mapscope.workflows.autoencoder import latent_study, write_latent

    result = latent_study(model, n, b, truncate, components, seed, data_dir)
    typer.echo(result.summary())
    wrote(*write_latent(result, out))


@app.command(name="generate")
def generate_command(
    model: Path = MODEL,
    out: Path = typer.Option(..., help="Folder for the pictures and tables.", callback=out_folder),
    sampler: list[str] = typer.Option(
        list(SAMPLERS), "--sampler", help="uniform, normal, mnd or gmm; repeatable (default all)."
    ),
    n: int = typer.Option(100, help="Images per sampler."),
    b: float = typer.Option(1.5, help="Half-width of the uniform sampler's box [-b, b]."),
    truncate: float = typer.Option(
        None, help="Truncate the mnd sampler at this Mahalanobis radius."
    ),
    components: int = typer.Option(10, help="Components of the gmm sampler."),
    judge: Path = typer.Option(
        None, help="A CNN run trained on the same dataset, which judges the images."
    ),
    judge_layer: str = typer.Option(
        None, help="The judge's feature layer for the Fréchet distance (default Dense_1)."
    ),
    between: list[str] = typer.Option(
        [f"{i},{j}" for i, j in PAIRS],
        "--between",
        help="Two test indices to interpolate between, like 0,1; repeatable.",
    ),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Decode vectors from statistical samplers; judged by a CNN when --judge is given."""
    from mapscope.workflows.autoencoder import generate, write_generation

    pairs = []
    for text in between:
        values = parse_ints(text, "--between")
        if len(values) != 2:
            raise ConfigError(f"--between takes two test indices like 0,1; got {text!r}.")
        pairs.append((values[0], values[1]))
    result = generate(
        model,
        sampler,
        n,
        b,
        truncate,
        components,
        judge,
        judge_layer,
        seed,
        pairs,
        data_root=data_dir,
    )
    typer.echo(result.summary())
    wrote(*write_generation(result, out))
