"""`mapscope data ...`: check, fetch and show datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from mapscope.cli.common import DATA_DIR, out_image, wrote
from mapscope.data import datasets
from mapscope.data.bundle import DataBundle
from mapscope.errors import MapscopeError

app = typer.Typer(help="Check, download and look at the datasets.", no_args_is_help=True)


@app.command()
def check(
    names: list[str] = typer.Argument(None, help="Datasets to check (default: all)."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Verify datasets: where found, checksums, sizes and class counts. Exit 0 only if all pass."""
    names = names or list(datasets.DATASETS)
    for name in names:
        datasets.spec(name)  # unknown names fail before anything is read
    failures = 0
    for name in names:
        folder, _ = datasets.locate(name, data_dir)
        try:
            data = datasets.load_dataset(name, data_dir)
        except MapscopeError as exc:
            failures += 1
            typer.echo(f"{name:14s} FAILED   in {folder}\n  {exc}")
            continue
        n_train = data.canonical_train or len(data.y)
        parts = (
            [("train", data.y[:n_train]), ("test", data.y[n_train:])]
            if data.canonical_train
            else [("all", data.y)]
        )
        shape = "x".join(str(s) for s in data.x.shape[1:])
        split = (
            f"train {data.canonical_train} / test {len(data.y) - data.canonical_train}"
            if data.canonical_train
            else f"{len(data.y)} samples"
        )
        typer.echo(f"{name:14s} verified in {folder}  {split}, samples {shape} {data.x.dtype}")
        for part, labels in parts:
            counts = np.bincount(labels, minlength=data.n_classes)
            typer.echo(f"{'':14s} {part} class counts: {' '.join(str(c) for c in counts)}")
    if failures:
        typer.echo(f"{failures} of {len(names)} dataset(s) failed the check.")
        raise typer.Exit(2)
    typer.echo(f"all {len(names)} dataset(s) present and verified.")


@app.command()
def fetch(
    names: list[str] = typer.Argument(..., help="Datasets to download."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Download datasets from their official mirrors and verify their SHA-256."""
    for name in names:
        datasets.fetch(name, data_dir)
        typer.echo(f"{name}: present and verified in {datasets.data_dir(data_dir) / name}")


@app.command()
def show(
    name: str = typer.Argument(..., help="mnist, fashion-mnist or wifi."),
    split: str = typer.Option("test", help="train or test."),
    index: list[int] = typer.Option(..., "--index", help="Index within the split; repeatable."),
    out: Path = typer.Option(..., help="PNG file to write.", callback=out_image),
    resplit_seed: int = typer.Option(
        None, help="Use the re-split of this seed instead of the canonical split."
    ),
    data_dir: Path = DATA_DIR,
) -> None:
    """Draw samples with their labels (a table of the row for WIFI)."""
    from mapscope.report.figures import save_figure
    from mapscope.report.samples import image_tiles, table_figure

    mode = "canonical" if resplit_seed is None else "resplit"
    bundle = DataBundle.create(name, "none", mode, resplit_seed or 0, data_root=data_dir)
    raw, labels = bundle.raw(split, index), bundle.labels(split, index)
    names = bundle.dataset.class_names
    title = f"{name}, {split} split ({bundle.split.mode})"
    if bundle.dataset.is_image:
        fig = image_tiles(
            raw, [f"#{i}: {names[y]}" for i, y in zip(index, labels, strict=True)], suptitle=title
        )
        for i, y in zip(index, labels, strict=True):
            typer.echo(f"{split} #{i}: label {names[y]}")
    else:
        header = ["index"] + [f"WLAN-{k}" for k in range(raw.shape[1])] + ["room"]
        rows = [[i, *r.tolist(), names[y]] for i, r, y in zip(index, raw, labels, strict=True)]
        widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=True)]
        for row in [header, *rows]:  # a table with its header, columns aligned
            typer.echo("  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)))
        fig = table_figure(header, rows, title)
    wrote(save_figure(fig, out))
