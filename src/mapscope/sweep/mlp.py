"""`mapscope mlp sweep`: the Lambda2 study of the original experiments as a case of the general
sweep (one MLP run per value of one option), with its own second picture: the share of the
regularisation terms in each batch's cost."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from mapscope.mlp.saved import read_history
from mapscope.mlp.train import MLPConfig
from mapscope.report.figures import save_figure
from mapscope.report.sweeps import plot_regularisation
from mapscope.sweep.grid import make_grid
from mapscope.sweep.kinds import KINDS
from mapscope.sweep.run import Sweep, sweep, write_sweep


def mlp_sweep(
    out: str | Path,
    param: str,
    values: list[str],
    base: MLPConfig = MLPConfig(),
    data_root: str | Path | None = None,
    **engine,
) -> Sweep:
    """One MLP run per value of ``param`` over ``base`` into ``out/PARAM=VALUE``; ``engine``:
    the options of ``sweep`` (scheduler, workers, threads, overwrite)."""
    fixed = {k: v for k, v in asdict(base).items() if k != param}
    grid = make_grid(KINDS["mlp"], None, param, values, None, fixed)
    return sweep(grid, out, data_root, **engine)


def write_mlp_sweep(result: Sweep, out: str | Path) -> list[Path]:
    """The sweep's table and plot, and ``regularisation.png``."""
    out = Path(out)
    written = write_sweep(result, out)
    param = result.grid.varied_names[0] if result.grid.varied_names else None
    batches = {
        o.point.options[param]: read_history(out / o.point.name)[1]
        for o in result.outcomes
        if param and o.status != "failed"
    }
    if batches:
        figure = plot_regularisation(param, batches)
        written.append(save_figure(figure, out / "regularisation.png"))
    return written
