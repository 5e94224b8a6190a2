"""The one shape of a training history, for every run kind.

``history.json`` is a list of per-epoch records, numbered from 1, each with the same keys::

    epoch         1, 2, ...
    loss          mean training loss over the epoch's steps (per image; per pixel for images)
    accuracy      share of training images classified right during the epoch (null: no classes)
    val_loss      loss on the test split after the epoch, float32
    val_accuracy  accuracy on the test split after the epoch (null: no classes)
    lr            the learning rate of the epoch's last step
    seconds       training time of this epoch alone (validation not counted)

Per-batch records (the MLP's cost, error and regularisation share of every mini-batch) are kept
apart, in ``batches.json``. Runs written before this schema are still read (``from_stored``):
the MLP's old ``{"batch": [...], "epoch": [...]}`` with ``train_accuracy``/``test_accuracy``,
a summed loss and cumulative seconds.
"""

from __future__ import annotations

from typing import Any

EPOCH_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def epoch_record(
    epoch: int,
    loss: float | None,
    accuracy: float | None,
    val_loss: float,
    val_accuracy: float | None,
    lr: float | None,
    seconds: float,
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "loss": loss,
        "accuracy": accuracy,
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "lr": lr,
        "seconds": seconds,
    }


def from_stored(stored: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(epochs, batches) of a stored history in this schema or an older one; rows that are not
    tables are dropped (a reader checks the shape apart, with the file's name)."""
    if isinstance(stored, list):
        return [row for row in stored if isinstance(row, dict)], []
    if not isinstance(stored, dict):
        return [], []
    batches = [row for row in stored.get("batch", []) if isinstance(row, dict)]
    per_epoch = {}
    for row in batches:
        per_epoch[row.get("epoch")] = per_epoch.get(row.get("epoch"), 0) + 1
    epochs, before = [], 0.0
    for row in stored.get("epoch", []):
        if not isinstance(row, dict):
            continue
        total = row.get("seconds", 0.0)  # cumulative in the old MLP history
        loss = row.get("loss")
        if isinstance(loss, int | float) and per_epoch.get(row.get("epoch")):
            loss = loss / per_epoch[row.get("epoch")]  # the old loss was the epoch's sum
        epochs.append(
            epoch_record(
                row.get("epoch"),
                loss,
                row.get("train_accuracy"),
                row.get("test_loss"),
                row.get("test_accuracy"),
                row.get("lr"),
                total - before if isinstance(total, int | float) else None,
            )
        )
        before = total if isinstance(total, int | float) else before
    return epochs, batches


def total_seconds(epochs: list[dict[str, Any]]) -> float:
    return float(sum(row["seconds"] or 0.0 for row in epochs))
