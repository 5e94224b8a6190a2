"""`mapscope sweep` as Python functions: ``sweep`` trains the points of a grid (skipping the
finished ones, continuing interrupted ones) and returns a ``Sweep``; ``write_sweep`` writes its
table and plot.

    grid = make_grid(KINDS["cnn"], seeds=[0, 1, 2, 3, 4], fixed={"epochs": 2})
    result = sweep(grid, "runs/seeds")
    write_sweep(result, "runs/seeds")
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mapscope.data.datasets import DATASETS, verify
from mapscope.errors import ConfigError, MapscopeError
from mapscope.io import read_json, write_csv, write_json
from mapscope.report.display import RichDisplay, short
from mapscope.report.figures import save_figure
from mapscope.report.sweeps import plot_points
from mapscope.runs import Run
from mapscope.runs.folder import is_run, read_metrics
from mapscope.schema import read_as
from mapscope.sweep.engine import Task, local_layout, run_tasks
from mapscope.sweep.grid import Grid, Point
from mapscope.sweep.kinds import make_config, train_point

PLAN = "plan.json"  # the options of every point ever trained into the sweep folder


@dataclass(frozen=True)
class SweepPlan:
    """The schema of ``plan.json``: the run kind and the options of every point trained."""

    kind: str
    points: dict[str, dict[str, Any]]


def read_plan(out: Path, kind: str) -> dict[str, dict[str, Any]]:
    """The options of the points trained into ``out`` before (none for a new sweep folder);
    a sweep folder of another kind, or one that is a run folder itself, is refused."""
    if is_run(out):
        raise ConfigError(
            f"--out {out} is a run folder; a sweep writes one run folder per point into a folder "
            "of its own: give another --out."
        )
    path = out / PLAN
    if not path.exists():
        return {}
    try:
        stored = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); give another --out.") from None
    plan = read_as(SweepPlan, stored, str(path), error=ConfigError)
    if plan.kind != kind:
        raise ConfigError(
            f"{path}: {out} holds a sweep of {plan.kind} runs, not {kind}; give another --out."
        )
    return plan.points


@dataclass
class Outcome:
    point: Point
    status: str  # trained, continued, skipped (finished earlier) or failed
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = math.nan


@dataclass
class Sweep(RichDisplay):
    grid: Grid
    out: Path
    outcomes: list[Outcome]
    seconds: float
    workers: int | None
    threads_per_run: int | None
    scheduler: str | None

    @property
    def metric(self) -> str:
        return self.grid.kind.metric

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for o in self.outcomes:
            row = {**o.point.varied}
            for name in (self.metric, "train_accuracy", "train_loss", "epochs", "train_seconds"):
                if name in o.metrics:
                    row[name] = o.metrics[name]
            row.update(
                status=o.status,
                seconds=None if math.isnan(o.seconds) else round(o.seconds, 2),
                run=str(self.out / o.point.name),
                error=o.error,
            )
            rows.append(row)
        return rows

    def groups(self) -> list[dict[str, Any]]:
        """The metric over seeds for each combination of the other varied options."""
        others = [n for n in self.grid.varied_names if n != "seed"]
        grouped: dict[tuple, list[float]] = {}
        for o in self.outcomes:
            key = tuple(o.point.varied.get(n) for n in others)
            value = o.metrics.get(self.metric)
            grouped.setdefault(key, [])
            if value is not None:
                grouped[key].append(float(value))
        return [
            {
                **dict(zip(others, key, strict=True)),
                "runs": len(values),
                "mean": float(np.mean(values)) if values else None,
                "std": float(np.std(values)) if values else None,
                "min": float(np.min(values)) if values else None,
                "max": float(np.max(values)) if values else None,
            }
            for key, values in grouped.items()
        ]

    def _card(self):
        rows, grid = self.rows(), self.grid
        header = list(dict.fromkeys(k for row in rows for k in row))
        return (
            f"Sweep of {grid.kind.name}: {len(self.outcomes)} points",
            [
                ("metric", self.metric),
                ("failed", len(self.failed)),
                ("seconds", f"{self.seconds:.1f}"),
            ],
            lambda: plot_points(rows, grid.varied_names, self.metric, grid.kind.higher_is_better),
            (header, [[short(row.get(h)) for h in header] for row in rows]),
        )

    def summary(self) -> str:
        names = self.grid.varied_names
        width = max([len(o.point.name) for o in self.outcomes] + [5])
        lines = [f"{'point':<{width}}  {self.metric:>13}  {'status':<9}  seconds"]
        for o in self.outcomes:
            value = o.metrics.get(self.metric)
            shown = f"{value:13.4f}" if value is not None else f"{'-':>13}"
            seconds = "-" if math.isnan(o.seconds) else f"{o.seconds:.1f}"
            lines.append(f"{o.point.name:<{width}}  {shown}  {o.status:<9}  {seconds}")
            if o.error:
                lines.append(f"{'':<{width}}  error: {o.error}")
        if "seed" in names:
            for g in self.groups():
                if g["runs"]:
                    label = ", ".join(f"{k}={v}" for k, v in g.items() if k in names) or "all"
                    lines.append(
                        f"{label}: {self.metric} {g['mean']:.4f} +- {g['std']:.4f} over "
                        f"{g['runs']} seeds (min {g['min']:.4f}, max {g['max']:.4f})"
                    )
        where = self.scheduler or f"a local cluster of {self.workers} worker(s)"
        lines.append(
            f"{len(self.outcomes)} points in {self.seconds:.1f} s on {where}"
            + (f", {self.threads_per_run} thread(s) per run" if self.threads_per_run else "")
            + (f"; {len(self.failed)} FAILED" if self.failed else "")
        )
        return "\n".join(lines)


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(options))


def plan(
    grid: Grid, out: Path, overwrite: bool = False
) -> list[tuple[Point, str, int, dict[str, Any]]]:
    """(point, what to do, epochs to continue, metrics of the run there) for each point:
    ``train``, ``continue`` (a CNN or autoencoder run interrupted after some epochs) or ``skip``
    (finished earlier). A folder that this sweep did not make, or made with other options, is
    refused unless ``overwrite``."""
    planned = read_plan(out, grid.kind.name)
    steps = []
    for point in grid.points():
        folder = out / point.name
        if overwrite or not folder.exists():
            steps.append((point, "train", 0, {}))
            continue
        before, now = planned.get(point.name), _plain(point.options)
        if before is None or not is_run(folder):
            raise ConfigError(
                f"{folder} exists but was not trained by a sweep into {out}; give another --out, "
                "or --overwrite to replace it."
            )
        if before != now:
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise ConfigError(
                f"{folder} was trained with other options ({', '.join(changed)} differ); give "
                "another --out, or --overwrite to train it again."
            )
        metrics = _finished_metrics(folder)
        steps.append((point, *_progress(grid, point, metrics), metrics))
    return steps


def _progress(grid: Grid, point: Point, metrics: dict[str, Any]) -> tuple[str, int]:
    if not grid.kind.resumable:
        return "skip", 0
    wanted = make_config(grid.kind, point.options).epochs
    done = metrics.get("epochs")
    if done is None:
        return "train", 0
    return ("skip", 0) if done >= wanted else ("continue", wanted - done)


def sweep(
    grid: Grid,
    out: str | Path,
    data_root: str | Path | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    overwrite: bool = False,
) -> Sweep:
    """Train every point of ``grid`` that is not finished into ``out/POINT`` on Dask: a local
    cluster of ``workers`` processes (default: one per core, never more than points), or the
    cluster whose scheduler is at ``scheduler``. ``threads``: per run (default: cores/workers
    locally; each worker's free cores on a remote cluster)."""
    out = Path(out).absolute()
    steps = plan(grid, out, overwrite)
    todo = [(p, action, epochs) for p, action, epochs, _ in steps if action != "skip"]
    if scheduler:
        if workers is not None:
            raise ConfigError(
                "--workers sizes a local cluster; with --scheduler the cluster has its own."
            )
    else:
        workers, default_threads = local_layout(len(todo), workers)
        threads = threads or default_threads
    if todo and not scheduler:  # missing data is the user's to fix, not five failed points
        _check_data(grid, [p for p, _, _ in todo], data_root)
    out.mkdir(parents=True, exist_ok=True)
    planned = read_plan(out, grid.kind.name)
    planned.update({p.name: _plain(p.options) for p, *_ in steps})
    write_json(out / PLAN, {"kind": grid.kind.name, "points": planned})

    root = None if data_root is None else str(Path(data_root).absolute())
    outcomes = {
        p.name: Outcome(p, "skipped", metrics)
        for p, action, _, metrics in steps
        if action == "skip"
    }
    actions = {p.name: (p, action) for p, action, _ in todo}
    logs = out / "logs"  # what each point's training printed
    logs.mkdir(exist_ok=True)
    tasks = [
        Task(
            p.name,
            (
                grid.kind.name,
                str(out / p.name),
                p.options,
                root,
                threads,
                epochs,
                str(logs / f"{p.name}.log"),
            ),
        )
        for p, _, epochs in todo
    ]
    tqdm.write(
        f"{len(steps)} points: {len(todo)} to train, {len(steps) - len(todo)} finished earlier"
    )
    began = time.perf_counter()
    for k, done in enumerate(run_tasks(train_point, tasks, scheduler, workers or 1), start=1):
        point, action = actions[done.name]
        if done.error:
            outcome = Outcome(point, "failed", error=done.error)
            tqdm.write(f"[{k}/{len(tasks)}] {point.name}: FAILED: {done.error}")
        else:
            status = "continued" if action == "continue" else "trained"
            outcome = Outcome(
                point, status, _finished_metrics(out / point.name), None, done.seconds
            )
            value = outcome.metrics.get(grid.kind.metric)
            tqdm.write(
                f"[{k}/{len(tasks)}] {point.name}: {status}, {grid.kind.metric} "
                f"{value if value is None else round(value, 4)} in {done.seconds:.1f} s"
            )
        outcomes[point.name] = outcome
    seconds = time.perf_counter() - began
    ordered = [outcomes[p.name] for p, *_ in steps]
    return Sweep(grid, out, ordered, seconds, workers, threads, scheduler)


def _check_data(grid: Grid, points: list[Point], data_root: str | Path | None) -> None:
    """Verify each dataset the points read (their files and checksums) before any worker
    starts; image folders and face sets are checked by the runs themselves."""
    names = {make_config(grid.kind, p.options).dataset for p in points}
    for name in sorted(n for n in names if n in DATASETS):
        verify(name, data_root)


def _finished_metrics(folder: Path) -> dict[str, Any]:
    """The metrics of the finished run in ``folder`` ({} when there is no usable run)."""
    try:
        path = Run.open(folder).files.get("metrics")
        return read_metrics(path) if path else {}
    except MapscopeError:
        return {}


def write_sweep(result: Sweep, out: str | Path) -> list[Path]:
    out, rows = Path(out), result.rows()
    header = list(dict.fromkeys(k for row in rows for k in row))
    grid = result.grid
    record = {
        "kind": grid.kind.name,
        "metric": result.metric,
        "fixed": _plain(grid.fixed),
        "axes": _plain(grid.axes),
        "rows": rows,
        "groups": result.groups(),
        "seconds": result.seconds,
        "workers": result.workers,
        "threads_per_run": result.threads_per_run,
        "scheduler": result.scheduler,
    }
    figure = plot_points(rows, grid.varied_names, result.metric, grid.kind.higher_is_better)
    return [
        write_json(out / "sweep.json", record),
        write_csv(out / "sweep.csv", header, [[r.get(h) for h in header] for r in rows]),
        save_figure(figure, out / "sweep.png"),
    ]
