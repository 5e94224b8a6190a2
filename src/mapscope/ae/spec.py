"""A convolutional autoencoder described as data: typed, validated, readable from TOML.

The encoder halves the image ``len(filters)`` times (stride-2 convolutions, or convolution and
2x2 max-pooling), a dense ``Latent`` layer without activation gives the code, and the decoder
mirrors the encoder (transposed stride-2 convolutions, or nearest upsampling and convolution)
back to the input's shape with a sigmoid output. Every layer has a name (``Enc_Conv_1`` ...
``Latent``, ``Dec_Dense``, ``Dec_Conv_1`` ... ``Dec_Output``) by which ``activations``,
``oip`` and the atlas address it, as they address the CNN's layers.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mapscope.checks import Problems
from mapscope.errors import ConfigError
from mapscope.schema import check_size

DOWNSAMPLING = ("stride", "pool")
UPSAMPLING = ("transpose", "upsample")
LOSSES = ("bce", "mse")
ACTIVATIONS = ("relu", "elu", "tanh", "selu", "sigmoid")


@dataclass(frozen=True)
class AESpec:
    input_shape: tuple[int, int, int] = (1, 28, 28)
    latent: int = 16
    filters: tuple[int, ...] = (32, 64)
    kernel: int = 3
    downsample: str = "stride"
    upsample: str = "transpose"
    activation: str = "relu"
    batch_norm: bool = False
    loss: str = "bce"

    def validate(self, source: str = "autoencoder spec") -> AESpec:
        """Every field against its allowed values, all problems in one ConfigError."""
        problems = Problems()
        shape = self.input_shape
        if len(shape) != 3 or not all(_is_count(v) for v in shape):
            problems.add(f"input_shape must be [channels, height, width], got {list(shape)}")
        if not _is_count(self.latent):
            problems.add(f"latent must be a whole number >= 1, got {self.latent!r}")
        if not self.filters or not all(_is_count(f) for f in self.filters):
            problems.add(f"filters must be a list of whole numbers >= 1, got {list(self.filters)}")
        if not _is_count(self.kernel) or self.kernel % 2 == 0:
            problems.add(f"kernel must be an odd whole number like 3 or 5, got {self.kernel!r}")
        problems.choice("downsample", self.downsample, DOWNSAMPLING)
        problems.choice("upsample", self.upsample, UPSAMPLING)
        problems.choice("activation", self.activation, ACTIVATIONS)
        problems.choice("loss", self.loss, LOSSES)
        if not isinstance(self.batch_norm, bool):
            problems.add(f"batch_norm must be true or false, got {self.batch_norm!r}")
        if not problems.found and len(shape) == 3:
            factor = 2 ** len(self.filters)
            if shape[1] % factor or shape[2] % factor:
                problems.add(
                    f"{len(self.filters)} halvings need a height and width divisible by "
                    f"{factor}, got {shape[1]}x{shape[2]}; use fewer filters or resize the "
                    "images (--image-size)"
                )
        if problems.found:
            raise ConfigError(f"{source}: " + "; ".join(problems.found) + ".")
        self.check_size(source)
        return self

    def check_size(self, source: str) -> None:
        """The size budget, from the spec alone: the encoder's parameters and maps counted
        twice (the decoder mirrors them), parameters at 16 bytes (with gradient and two
        optimizer moments) and maps at 8 bytes for a batch of 128 (with their gradients)."""
        channels, height, width = self.input_shape
        params, maps, before = 0, channels * height * width, channels
        for i, filters in enumerate(self.filters, start=1):
            params += before * self.kernel**2 * filters + filters
            maps += filters * (height >> (i - 1)) * (width >> (i - 1))
            before = filters
        code = math.prod(self.code_map)
        params = 2 * params + 2 * code * self.latent
        check_size(
            16 * params + 8 * 128 * 2 * maps,
            f"the autoencoder ({params:,} parameters)",
            source,
            ConfigError,
        )

    @property
    def code_map(self) -> tuple[int, int, int]:
        """The shape the encoder's last convolution hands to the latent layer."""
        factor = 2 ** len(self.filters)
        return (self.filters[-1], self.input_shape[1] // factor, self.input_shape[2] // factor)

    @property
    def layer_names(self) -> list[str]:
        n = len(self.filters)
        names = []
        for i in range(1, n + 1):
            names.append(f"Enc_Conv_{i}")
            if self.downsample == "pool":
                names.append(f"Enc_Pool_{i}")
        names += ["Enc_Flatten", "Latent", "Dec_Dense", "Dec_Reshape"]
        names += [f"Dec_Conv_{i}" for i in range(1, n)]
        return [*names, "Dec_Output"]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"], out["filters"] = list(self.input_shape), list(self.filters)
        return out


FIELDS = set(AESpec.__dataclass_fields__)


def spec_from_dict(raw: Any, source: str = "config") -> AESpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the autoencoder spec must be a table of fields.")
    unknown = set(raw) - FIELDS
    if unknown:
        raise ConfigError(
            f"{source}: unknown field(s) {sorted(unknown)}; allowed: {', '.join(sorted(FIELDS))}."
        )
    values = dict(raw)
    for name in ("input_shape", "filters"):
        if name in values:
            if not isinstance(values[name], list | tuple):
                raise ConfigError(f"{source}: {name} must be a list, got {values[name]!r}.")
            values[name] = tuple(values[name])
    return AESpec(**values).validate(source)


def load_spec(path: str | Path) -> AESpec:
    """An autoencoder spec from a TOML file of ``AESpec`` fields (see configs/ae.toml)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ConfigError(
            f"--config {path} is not a file; give a TOML file like configs/ae.toml."
        ) from exc
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text (TOML) file.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from exc
    if "input_shape" in raw:
        raise ConfigError(
            f"{path}: input_shape is taken from the dataset; remove it from the file."
        )
    return spec_from_dict(raw, str(path))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
