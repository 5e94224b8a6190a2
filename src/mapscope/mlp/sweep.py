"""One MLP run per value of one parameter (the Lambda2 study of the original experiments)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mapscope.errors import ConfigError
from mapscope.io import read_json, write_csv, write_json
from mapscope.mlp.train import MLPConfig, train
from mapscope.report.figures import save_figure
from mapscope.report.sweeps import plot_sweep
from mapscope.runfolder import check_new_run

SWEEPABLE = (
    "l2",
    "l1",
    "lr",
    "decrease",
    "momentum",
    "batch_size",
    "init_scale",
    "cluster_features",
    "epochs",
)


@dataclass
class Sweep:
    """One MLP run per value of ``param`` (the runs themselves are ordinary run folders)."""

    param: str
    base: MLPConfig
    rows: list[dict[str, Any]]
    histories: dict[float, dict]

    def summary(self) -> str:
        p = self.param
        lines = [f"{p:>10} {'train':>8} {'test':>8} {'best':>8} {'epochs to converge':>20}"]
        for r in self.rows:
            lines.append(
                f"{r[p]:>10} {r['train_accuracy']:>8.4f} {r['test_accuracy']:>8.4f} "
                f"{r['best_test_accuracy']:>8.4f} {r['epochs_to_converge']:>20}"
            )
        return "\n".join(lines)


def sweep(
    runs_into: str | Path,
    param: str,
    values: list[float],
    base: MLPConfig = MLPConfig(),
    data_root: str | Path | None = None,
    overwrite: bool = False,
) -> Sweep:
    """Train one run per value into ``runs_into/PARAM=VALUE``; the table comes back as a result.
    Runs of an earlier sweep there are replaced only with ``overwrite``."""
    if param not in SWEEPABLE:
        raise ConfigError(f"cannot sweep {param!r}; choose one of {', '.join(SWEEPABLE)}.")
    if not values:
        raise ConfigError("give at least one value to sweep, like --values 0.01,0.1.")
    runs_into = Path(runs_into)
    integer = "int" in str({f.name: f.type for f in fields(MLPConfig)}[param])
    for value in values:
        if integer and value != int(value):
            raise ConfigError(f"{param} takes whole numbers; got {value}.")
    values = [int(v) if integer else float(v) for v in values]
    configs = [MLPConfig(**{**asdict(base), param: value}).validate() for value in values]
    runs = [runs_into / f"{param}={value}" for value in values]
    for run in runs:  # refuse before the first run trains, not after
        check_new_run(run, overwrite)
    rows, histories = [], {}
    for i, (value, config, run) in enumerate(zip(values, configs, runs, strict=True), start=1):
        tqdm.write(f"run {i} of {len(values)}: {param}={value}")
        metrics = train(run, config, data_root, overwrite)
        histories[value] = read_json(run / "history.json")
        rows.append(
            {
                param: value,
                "train_accuracy": metrics["train_accuracy"],
                "test_accuracy": metrics["test_accuracy"],
                "best_test_accuracy": metrics["best_test_accuracy"],
                "epochs_to_converge": metrics["epochs_to_converge"],
                "train_seconds": metrics["train_seconds"],
                "run": str(run),
            }
        )
    return Sweep(param, base, rows, histories)


def write_sweep(result: Sweep, out: str | Path) -> list[Path]:
    out, rows = Path(out), result.rows
    header = list(rows[0])
    return [
        write_json(
            out / "sweep.json", {"param": result.param, "base": asdict(result.base), "rows": rows}
        ),
        write_csv(out / "sweep.csv", header, [[r[h] for h in header] for r in rows]),
        save_figure(plot_sweep(result.param, rows, result.histories), out / "sweep.png"),
    ]
