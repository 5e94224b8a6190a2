"""Run kinds: the one place that maps ``config.json``'s ``kind`` to the module that owns it.

Each kind module (``cnn/saved.py``, ``mlp/saved.py``, ``cluster/saved.py``, ``ae/saved.py``) provides:
``KIND``, ``FILES`` (role -> file name), ``NEURAL``, ``check_config(config, source)``,
``layer_names(config)``, ``load_predictor(run_dir, config)`` and, for neural kinds,
``load_module(run_dir, config)``; a kind whose files are not all at fixed places in the run
folder also gives ``paths(run_dir)`` (role -> path). A new kind is one such module and one line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType


class _Kinds(Mapping):
    """kind -> its module, imported when first asked for: a command that opens a CNN run
    does not pay for scikit-learn, which only the KMeans kind needs (about 0.7 s)."""

    def __init__(self, modules: dict[str, str]):
        self._modules = modules

    def __getitem__(self, kind: str) -> ModuleType:
        if kind not in self._modules:
            raise KeyError(kind)
        return importlib.import_module(self._modules[kind])

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


KINDS: Mapping[str, ModuleType] = _Kinds(
    {
        "cnn": "mapscope.cnn.saved",
        "mlp": "mapscope.mlp.saved",
        "kmeans": "mapscope.cluster.saved",
        "ae": "mapscope.ae.saved",
    }
)
