"""Everything about the run folder, in layers:

- ``folder``, ``lock``, ``epochs``: writing a run as a transaction (config.json with versions,
  metrics, provenance; one writer per run; an epoch's files committed as a set). Models and the
  trainer write through these, so they import nothing from the layers above.
- ``registry``: run kind -> the module that saves and loads that kind.
- ``run``: the ``Run`` handle that every command reads a run through::

    run = Run.open("runs/cnn")
    run.kind                 # "cnn", "mlp", "kmeans" or "ae"
    bundle = run.bundle()    # the exact inputs: dataset, saved split, saved scaler
    run.predictor().predict(bundle, "test")
    net = run.module()       # neural runs (CNN, MLP, autoencoder): an nn.Module in eval mode

``Run``, ``KINDS``, ``provenance`` and ``versions`` are imported from here when first used, so
that writing a run (``mapscope.runs.folder``) does not load the handle and its kinds.
"""

from __future__ import annotations

import importlib

__all__ = ["KINDS", "Run", "provenance", "versions"]

_LAZY = {
    "Run": "mapscope.runs.run",
    "KINDS": "mapscope.runs.registry",
    "provenance": "mapscope.runs.folder",
    "versions": "mapscope.runs.folder",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mapscope.runs' has no attribute {name!r}")
