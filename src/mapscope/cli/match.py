"""`mapscope match RUN_A RUN_B ...`: do independently trained runs learn the same units?"""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import DATA_DIR, out_folder, wrote


def run_labels(paths: list[Path]) -> list[str]:
    """Each run's folder name, with its parent's where two names are alike."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]


def match(
    runs: list[Path] = typer.Argument(
        ..., help="Two or more run folders (CNN, MLP or autoencoder)."
    ),
    out: Path = typer.Option(..., help="Folder for the tables and pictures.", callback=out_folder),
    layers: str = typer.Option(
        None, help="Comma-separated layers to match (default: every layer with weights)."
    ),
    images: int = typer.Option(None, help="Test images to correlate over (default: all)."),
    sample: int = typer.Option(
        1000,
        help="The first N test images for CKA (its Gram matrices are N x N), for the map units' "
        "spatial positions and for the untrained baseline.",
    ),
    positions: bool = typer.Option(
        True,
        help="Match map units over every spatial position of the sample (Li et al.); "
        "--no-positions: over their per-image means (which follow the ink of an image, so "
        "that even random filters correlate).",
    ),
    oips: bool = typer.Option(True, help="Search the OIPs of the units the pictures show."),
    oip_steps: int = typer.Option(
        600, help="Steps of those OIP searches (fewer: faster, fainter)."
    ),
    seed: int = typer.Option(0, help="Seed of the untrained baseline, the shuffle and the OIPs."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Correlation matching of units (Hungarian), linear CKA of layers, against an untrained
    network and shuffled images; the best and worst matched units with their OIPs."""
    from mapscope.errors import ConfigError
    from mapscope.inspect.oip.settings import OIPSettings
    from mapscope.runs import Run
    from mapscope.workflows.match import match_runs, write_match

    if len(runs) < 2:
        raise ConfigError("give at least two run folders to match, like RUN_A RUN_B.")
    if len(set(p.resolve() for p in runs)) != len(runs):
        raise ConfigError("a run folder is given twice; give different runs.")
    inspections = [Run.open(path).inspection(data_dir) for path in runs]
    chosen = [n.strip() for n in layers.split(",") if n.strip()] if layers else None
    result = match_runs(
        inspections,
        run_labels(runs),
        chosen,
        images,
        sample,
        positions,
        oips,
        seed,
        OIPSettings(seed=seed, steps=oip_steps).validate(),
    )
    written = write_match(result, out)
    typer.echo(result.summary())
    wrote(*written)
