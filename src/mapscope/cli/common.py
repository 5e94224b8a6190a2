"""What every command shares: parsing lists, reporting outputs, the error boundary."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import typer

from mapscope.checks import LARGEST_INT, LARGEST_SEED
from mapscope.errors import ConfigError
from mapscope.runs.folder import check_out_folder

DATA_DIR = typer.Option(
    None,
    "--data-dir",
    help="Folder with mnist/, fashion-mnist/, wifi/ (default: $MAPSCOPE_DATA, else ~/.cache/mapscope).",
)


LIST_SYNTAX = "1,2,3, a range 2..12 or 10..170/10 (inclusive, with a step), or 4,5,...,25"


def parse_ints(text: str, name: str) -> list[int]:
    """Whole numbers in the one list syntax of every option: comma-separated items, each a
    number or a range ``a..b`` / ``a..b/step`` (inclusive), and ``...`` continuing the step of
    the two numbers before it up to the one after it (``4,5,...,25``, ``10,20,...,170``)."""
    items = [v for v in text.replace(" ", "").split(",") if v]
    values: list[int] = []
    try:
        for k, item in enumerate(items):
            if item == "...":
                if k < 2 or k + 1 >= len(items) or len(values) < 2:
                    raise ValueError(item)
                step = values[-1] - values[-2]
                end = int(items[k + 1])
                if step == 0 or (end - values[-1]) * step <= 0:
                    raise ValueError(item)
                values += list(range(values[-1] + step, end, step))
            elif ".." in item:
                span, _, step = item.partition("/")
                low, high = (int(v) for v in span.split(".."))
                expanded = list(range(low, high + 1, int(step) if step else 1))
                if not expanded:
                    raise ValueError(item)
                values += expanded
            else:
                values.append(int(item))
    except ValueError as exc:
        raise ConfigError(
            f"{name} must be whole numbers like {LIST_SYNTAX}; got {text!r}."
        ) from exc
    if not values:
        raise ConfigError(f"{name} names no number; give whole numbers like {LIST_SYNTAX}.")
    return values


def parse_floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise ConfigError(
            f"{name} must be comma-separated numbers like 0.1,0.2; got {text!r}."
        ) from exc


Config = TypeVar("Config")


def tested_on(metrics: dict[str, Any]) -> str:
    """ " on N test images" for a training's summary line (``--max-test`` may have cut N)."""
    return f" on {metrics['n_test']} test images" if "n_test" in metrics else ""


def trained_for(metrics: dict[str, Any]) -> str:
    """ "N epochs on M images" for a training's summary line, "1 epoch" in the singular."""
    epochs = metrics["epochs"]
    return f"{epochs} epoch{'' if epochs == 1 else 's'} on {metrics['n_train']} images"


def config_from(cls: type[Config], options: dict[str, Any], **overrides: Any) -> Config:
    """A config dataclass from a command's options, field by field by keyword: an option the
    config does not have is ignored, a field the command does not offer keeps its default."""
    names = {f.name for f in fields(cls)}
    chosen = {k: v for k, v in {**options, **overrides}.items() if k in names}
    config = cls(**chosen)
    return config.validate() if hasattr(config, "validate") else config


def check_options(values: dict[str, Any], flags: dict[str, str]) -> None:
    """What holds for every option of every command, checked in this one place before any
    command runs: numbers are finite, whole numbers fit, seeds are 0..2**32-1, text and paths
    are not empty. ``flags`` maps parameter names to their ``--flag``."""
    for name, value in values.items():
        flag = flags.get(name, name)
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, bool) or item is None:
                continue
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{flag} must be a finite number, got {item}.")
            if isinstance(item, int) and name.endswith("seed") and not 0 <= item <= LARGEST_SEED:
                raise ConfigError(f"{flag} must be in 0..{LARGEST_SEED}, got {item}.")
            if isinstance(item, int) and abs(item) > LARGEST_INT:
                raise ConfigError(f"{flag} {item} is out of range (at most {LARGEST_INT}).")
            if isinstance(item, str | Path) and not str(item).strip():
                raise ConfigError(f"{flag} is empty; give a value (see --help).")
            if isinstance(item, str | Path) and "\x00" in str(item):
                raise ConfigError(f"{flag} contains a NUL character.")


def checked(callback: Callable[..., Any], flags: dict[str, str]) -> Callable[..., Any]:
    """``callback`` with ``check_options`` run on its arguments first."""

    @functools.wraps(callback)
    def wrapper(**kwargs: Any) -> Any:
        check_options(kwargs, flags)
        return callback(**kwargs)

    return wrapper


def out_folder(path: Path | None) -> Path | None:
    """Callback of --out options that name a folder of outputs."""
    return None if path is None else check_out_folder(path)


IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def out_image(path: Path | None) -> Path | None:
    """Callback of --out options that name one picture: its folder must be usable and its
    suffix one matplotlib writes."""
    if path is None:
        return None
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(
            f"--out {path}: a picture file must end in {', '.join(IMAGE_SUFFIXES)}; "
            f"got {path.suffix or 'no suffix'!r}."
        )
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file name like {path / 'out.png'}.")
    check_out_folder(path.parent)
    return path


def wrote(*paths: str | Path) -> None:
    for path in paths:
        typer.echo(f"wrote {path}")


def wrote_run(folder: Path) -> None:
    """Every file of the run folder a training committed."""
    from mapscope.runs import Run  # the run handle reads models: torch

    wrote(*Run.open(folder).files.values())


# options that --resume may take: the run keeps its own settings for everything else
RESUME_OPTIONS = {"resume", "epochs", "device", "threads", "data_dir"}

THREADS = typer.Option(
    None,
    help="CPU threads for training (default: $MAPSCOPE_THREADS, else the cores not busy with "
    "other work at the start; a second busy process makes 2-thread training 3x slower).",
)


def given_options(ctx: typer.Context) -> dict[str, str]:
    """{parameter name: its --flag} of the options typed on the command line (click tells,
    also when the value typed equals the default)."""
    return {
        param.name: param.opts[0]
        for param in ctx.command.params
        if param.opts
        and getattr(ctx.get_parameter_source(param.name), "name", None) == "COMMANDLINE"
    }


def check_resume_options(ctx: typer.Context) -> None:
    """--resume continues a run with the settings it was started with; an option given on the
    command line that would change them is refused rather than silently ignored (also when
    its value happens to equal the default: the run may have been started with another)."""
    given = [flag for name, flag in given_options(ctx).items() if name not in RESUME_OPTIONS]
    if given:
        raise ConfigError(
            f"--resume continues the run with its own settings; {', '.join(given)} cannot be "
            "changed (only --epochs, --device and --threads). Start a new run with --out to "
            "change them."
        )


# A user's own network instead of a run folder (activations, compare, oip, atlas, evaluate ...).
NETWORK_OPTIONS = {
    "module": (
        str,
        typer.Option(
            None,
            "--module",
            help="Your own PyTorch network instead of --model: FILE.py:NAME (a class or a "
            "function returning the nn.Module; the file's code runs), or a TorchScript file "
            "(evaluate only).",
        ),
    ),
    "weights": (
        Path,
        typer.Option(
            None,
            "--weights",
            help="Weights for --module: .safetensors, a torch.save(state_dict) file (read with "
            "weights_only=True) or a TorchScript file; nothing in them is run.",
        ),
    ),
    "dataset": (
        str,
        typer.Option(
            "mnist", "--dataset", help="Images for --module: mnist, fashion-mnist or folder:PATH."
        ),
    ),
    "input_shape": (
        str,
        typer.Option(
            None,
            "--input",
            help="Input shape CxHxW of --module, e.g. 1x28x28 or 3x32x32 (image folders are "
            "read at that size and colour; default: the dataset's own).",
        ),
    ),
    "preprocess": (
        str,
        typer.Option(
            "unit",
            "--preprocess",
            help="Pixels as --module expects them: unit ([0,1], torchvision ToTensor), "
            "normalize:MEAN/STD (ToTensor + Normalize, per channel, e.g. "
            "normalize:0.1307/0.3081), standard, image or none.",
        ),
    ),
    "data_dir": (Path, DATA_DIR),
}
NEURAL_RUN = "Run folder of `mapscope cnn train`, `mlp train` or `ae train` (or --module)."


@dataclass(frozen=True)
class NetworkChoice:
    """What a command was asked to look at: a run folder, or the user's module and its data."""

    command: str
    model: Path | None
    module: str | None
    weights: Path | None
    dataset: str
    input_shape: str | None
    preprocess: str
    data_dir: Path | None

    def check(self) -> None:
        if (self.model is None) == (self.module is None):
            raise ConfigError(
                f"{self.command} needs either --model RUN_FOLDER or --module FILE.py:NAME "
                "(with --weights)."
            )

    def inspection(self):
        """The network with its exact inputs: the run's, or the module's (``--module`` with
        ``--weights``, ``--dataset``, ``--input``, ``--preprocess``)."""
        from mapscope.inspect.inspection import Inspection
        from mapscope.runs import Run
        from mapscope.runs.module_file import load_module, load_weights_into

        self.check()
        if self.model is not None:
            return Run.open(self.model).inspection(self.data_dir)
        shape = parse_input_shape(self.input_shape)
        net = load_module(self.module)
        if self.weights is not None:
            load_weights_into(net, self.weights)
        return Inspection.from_module(
            net, self.dataset, self.preprocess, shape, self.data_dir, source=self.module
        )


def network_options(model_help: str = NEURAL_RUN):
    """Give a command ``--model`` and the ``--module`` options; it receives them as one
    ``network: NetworkChoice`` argument (typer reads the signature this sets)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "network"]
        model = inspect.Parameter(
            "model",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, help=model_help),
            annotation=Path,
        )
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
            for name, (kind, opt) in NETWORK_OPTIONS.items()
        ]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            names = ("model", *NETWORK_OPTIONS)
            choice = NetworkChoice(command.__name__, *(kwargs.pop(n) for n in names))
            return command(network=choice, **kwargs)

        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        wrapper.__signature__ = inspect.Signature([model, *keyword, *extra])
        wrapper.__annotations__ = {
            **{k: v for k, v in command.__annotations__.items() if k != "network"},
            "model": Path,
            **{name: kind for name, (kind, _) in NETWORK_OPTIONS.items()},
        }
        return wrapper

    return decorate


def parse_input_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 3 or not all(p.isdigit() and 0 < int(p) <= 4096 for p in parts):
        raise ConfigError(f"--input must be CHANNELSxHEIGHTxWIDTH like 1x28x28; got {text!r}.")
    return tuple(int(p) for p in parts)
