"""One MLP run per value of one parameter (the Lambda2 study of the original experiments)."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from mapscope.errors import ConfigError
from mapscope.io import read_json, write_csv, write_json
from mapscope.mlp.train import MLPConfig, train
from mapscope.report.figures import save_figure
from mapscope.report.sweeps import plot_sweep

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


def sweep(
    out: str | Path,
    param: str,
    values: list[float],
    base: MLPConfig = MLPConfig(),
    data_root: str | Path | None = None,
) -> list[dict[str, Any]]:
    if param not in SWEEPABLE:
        raise ConfigError(f"cannot sweep {param!r}; choose one of {', '.join(SWEEPABLE)}.")
    out = Path(out)
    types = {f.name: f.type for f in fields(MLPConfig)}
    rows, histories = [], {}
    for value in values:
        value = int(value) if "int" in str(types[param]) else float(value)
        run = out / f"{param}={value}"
        metrics = train(run, MLPConfig(**{**asdict(base), param: value}), data_root)
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
    write_json(out / "sweep.json", {"param": param, "base": asdict(base), "rows": rows})
    header = list(rows[0])
    write_csv(out / "sweep.csv", header, [[r[h] for h in header] for r in rows])
    save_figure(plot_sweep(param, rows, histories), out / "sweep.png")
    return rows
