"""The run folder's owner: ``Run.open(dir)`` reads and validates ``config.json`` once and hands
out everything a command needs from a run, whatever its kind. Writing is each kind's business
(its ``saved`` module, see ``registry.py``); shared pieces are in ``folder.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mapscope.data.bundle import DataBundle, DataTable
from mapscope.data.prepare import Standardizer
from mapscope.data.split import Split
from mapscope.errors import RunError
from mapscope.inspect.inspection import Inspection
from mapscope.runs.folder import COMMON_FILES, read_config, read_metrics
from mapscope.runs.registry import KINDS


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path, kind: str | None = None, check_files: bool = True) -> Run:
        """Read ``config.json`` once and check it against its kind (and ``kind``, if given),
        then every file of the run (``check_files``): weights, split, scaler, history ... A
        damaged file is one ``RunError`` naming it; nothing is loaded by running code."""
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"{path} is not a folder; pass the --out folder of a training run.")
        config = read_config(path, kind)
        found = config.get("kind")
        if not isinstance(found, str) or found not in KINDS:
            raise RunError(
                f"{path}/config.json: unknown run kind {found!r}; expected one of {', '.join(KINDS)}."
            )
        DataTable.check(config.get("data"), f"{path}/config.json")
        KINDS[found].check_config(config, f"{path}/config.json")
        run = cls(path, config)
        if check_files:
            run.check_files()
        return run

    def check_files(self) -> None:
        """The files every kind shares (split, scaler), then the kind's own."""
        Split.load(self.path / COMMON_FILES["split"])
        if self.config["data"]["scaling"] == "standard":
            Standardizer.load(self.path / COMMON_FILES["scaler"])
        self._owner.check_files(self.path, self.config)

    @property
    def kind(self) -> str:
        return self.config["kind"]

    def _repr_html_(self) -> str:
        """A card in Jupyter: kind, data, epochs, accuracy and the training curves."""
        from mapscope.report.display import html_card

        files = self.files
        metrics: dict[str, Any] = {}
        try:
            metrics = read_metrics(files["metrics"]) if "metrics" in files else {}
        except (RunError, OSError):  # a damaged metrics file: the card shows what it can
            metrics = {}
        data = self.config["data"]
        facts: list[tuple[str, object]] = [
            ("folder", str(self.path)),
            ("data", f"{data['dataset']} ({data['scaling']} scaling)"),
        ]
        for key, label in (
            ("epochs", "epochs"),
            ("test_accuracy", "test accuracy"),
            ("train_accuracy", "training accuracy"),
            ("train_seconds", "training seconds"),
            ("precision", "precision"),
        ):
            value = metrics.get(key)
            if isinstance(value, int | float | str) and not isinstance(value, bool):
                facts.append((label, f"{value:.4g}" if isinstance(value, float) else value))
        curves = files.get("curves")
        picture = curves.read_bytes() if curves is not None else None
        return html_card(f"mapscope {self.kind.upper()} run", facts, picture)

    @property
    def _owner(self) -> ModuleType:
        return KINDS[self.kind]

    @property
    def files(self) -> dict[str, Path]:
        """The run's files that exist, by role (``model``, ``history``, ``split`` ...)."""
        owner = self._owner
        if hasattr(owner, "paths"):  # a kind whose files move (the CNN's committed epoch)
            paths = owner.paths(self.path)
        else:
            paths = {role: self.path / name for role, name in owner.FILES.items()}
        return {role: p for role, p in paths.items() if p.exists()}

    @property
    def is_neural(self) -> bool:
        return self._owner.NEURAL

    @property
    def layer_names(self) -> list[str]:
        return self._owner.layer_names(self.config)

    def bundle(self, data_root: str | Path | None = None) -> DataBundle:
        """The run's exact inputs: its dataset, its saved split and its saved scaler."""
        return DataBundle.restore(self.path, self.config["data"], data_root)

    def predictor(self):
        """An object with ``predict(bundle, part, indices=None)`` -> class indices."""
        return self._owner.load_predictor(self.path, self.config)

    def module(self):
        """The trained network as an ``nn.Module`` in eval mode (neural runs only)."""
        if not self.is_neural:
            raise RunError(
                f"{self.path} holds a {self.kind!r} run, which has no network to look inside; "
                "give a CNN, MLP or autoencoder run."
            )
        return self._owner.load_module(self.path, self.config)

    def inspection(self, data_root: str | Path | None = None) -> Inspection:
        """The trained network with its exact inputs, for activations, compare and OIPs."""
        return Inspection(self.module(), self.bundle(data_root), str(self.path), self.config)

    def live(self, port: int = 0, atlas: str | Path | None = None, data_root=None, **options):
        """``Inspection.live()`` for this run; its unit pages are the pages of ``atlas``, by
        default an atlas of this run found inside or beside its folder."""
        from mapscope.live import atlas_beside  # a door up to the web app (tests/test_house.py)

        atlas = atlas if atlas is not None else atlas_beside(self.path)
        return self.inspection(data_root).live(port, atlas, **options)
