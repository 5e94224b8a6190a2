"""`mapscope sweep KIND`: many ordinary runs of one kind on a Dask cluster, and their table."""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import DATA_DIR, out_folder, parse_ints, wrote
from mapscope.errors import ConfigError

SCHEDULER = typer.Option(
    None,
    help="Address of a running Dask scheduler (tcp://HOST:8786) to send the runs to; default: a "
    "local cluster on this machine.",
)
WORKERS = typer.Option(
    None, help="Worker processes of the local cluster (default: one per core, at most the points)."
)
RUN_THREADS = typer.Option(
    None, help="Threads per run (default: the cores divided among the local workers)."
)


def parse_settings(settings: list[str] | None) -> dict[str, str]:
    """``--set NAME=VALUE`` options as a dict (values typed later, by the run kind)."""
    chosen: dict[str, str] = {}
    for item in settings or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: write NAME=VALUE, like --set epochs=2.")
        chosen[name.strip().replace("-", "_")] = value.strip()
    return chosen


def sweep(
    kind: str = typer.Argument(..., help="Run kind: cnn, mlp, ae or kmeans."),
    out: Path = typer.Option(
        ...,
        help="Folder for one run folder per point, the table and the plot.",
        callback=out_folder,
    ),
    seeds: str = typer.Option(None, help="Seeds, like 0..4 or 0,3,7: one run per seed."),
    param: str = typer.Option(None, help="An option to vary, like lr or batch_size."),
    values: str = typer.Option(None, help="Its values, comma-separated, like 0.001,0.002."),
    grid: Path = typer.Option(
        None, help="TOML file: [fixed] options for every point, [grid] lists to combine."
    ),
    settings: list[str] = typer.Option(
        None,
        "--set",
        help="A fixed option for every point, NAME=VALUE (also one the --grid file varies); repeatable.",
    ),
    scheduler: str = SCHEDULER,
    workers: int = WORKERS,
    threads: int = RUN_THREADS,
    overwrite: bool = typer.Option(
        False, help="Train every point again, replacing runs already in --out."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Check the grid and --out, print each point's options and what would happen to it "
        "(train, continue or skip), and stop: nothing is trained or written.",
    ),
    data_dir: Path = DATA_DIR,
) -> None:
    """One run folder per point (seeds x values x grid); finished points are skipped when the
    same sweep is started again; a failed point is reported and the others go on."""
    from mapscope.sweep.grid import make_grid
    from mapscope.sweep.kinds import kind as find_kind
    from mapscope.sweep.run import sweep as run_sweep
    from mapscope.sweep.run import write_sweep

    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}.")
    chosen = make_grid(
        find_kind(kind),
        parse_ints(seeds, "--seeds") if seeds is not None else None,
        param.replace("-", "_") if param else None,
        values.replace(" ", "").split(",") if values is not None else None,
        grid,
        parse_settings(settings),
    )
    if dry_run:
        from mapscope.sweep.run import plan

        steps = plan(chosen, out.absolute(), overwrite)
        for point, action, _, _ in steps:
            options = " ".join(f"{k}={v}" for k, v in point.options.items())
            typer.echo(f"{action:8} {point.name}: {options or 'the defaults'}")
        typer.echo(f"{len(steps)} points; nothing trained (--dry-run)")
        return
    result = run_sweep(chosen, out, data_dir, scheduler, workers, threads, overwrite)
    written = write_sweep(result, out)
    typer.echo(result.summary())
    wrote(*written)
    if result.failed:
        raise typer.Exit(1)
