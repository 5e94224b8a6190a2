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

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class EpochRecord:
    """The schema of one row of ``history.json`` (checked by ``runs.epochs.check_history``)."""

    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    lr: float | None
    seconds: float | None  # None: an old MLP history that did not time its epochs


EPOCH_KEYS = tuple(f.name for f in fields(EpochRecord))


def epoch_record(
    epoch: int,
    loss: float | None,
    accuracy: float | None,
    val_loss: float,
    val_accuracy: float | None,
    lr: float | None,
    seconds: float | None,
) -> dict[str, Any]:
    return asdict(EpochRecord(epoch, loss, accuracy, val_loss, val_accuracy, lr, seconds))


def from_stored(stored: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(epochs, batches) of a stored history in this schema or an older one; rows that are not
    tables are dropped (a reader checks the shape apart, with the file's name)."""
    if isinstance(stored, list):
        return [row for row in stored if isinstance(row, dict)], []
    if not isinstance(stored, dict):
        return [], []
    batches = [row for row in stored.get("batch", []) if isinstance(row, dict)]
    per_epoch: dict[Any, int] = {}
    for batch in batches:
        per_epoch[batch.get("epoch")] = per_epoch.get(batch.get("epoch"), 0) + 1
    epochs, before = [], 0.0
    for entry in stored.get("epoch", []):
        if not isinstance(entry, dict):
            continue
        old: Any = entry  # an old row: its values are checked by whoever reads them
        total = old.get("seconds", 0.0)  # cumulative in the old MLP history
        loss = old.get("loss")
        if isinstance(loss, int | float) and per_epoch.get(old.get("epoch")):
            loss = loss / per_epoch[old.get("epoch")]  # the old loss was the epoch's sum
        epochs.append(
            epoch_record(
                old.get("epoch"),
                loss,
                old.get("train_accuracy"),
                old.get("test_loss"),
                old.get("test_accuracy"),
                old.get("lr"),
                total - before if isinstance(total, int | float) else None,
            )
        )
        before = total if isinstance(total, int | float) else before
    return epochs, batches


def total_seconds(epochs: list[dict[str, Any]]) -> float:
    return float(sum(row["seconds"] or 0.0 for row in epochs))
