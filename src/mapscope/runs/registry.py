"""Run kinds: the one place that maps ``config.json``'s ``kind`` to the module that owns it.

Each kind module (``cnn/saved.py``, ``mlp/saved.py``, ``cluster/saved.py``, ``ae/saved.py``) provides:
``KIND``, ``FILES`` (role -> file name), ``NEURAL``, ``check_config(config, source)``,
``layer_names(config)``, ``load_predictor(run_dir, config)`` and, for neural kinds,
``load_module(run_dir, config)``; a kind whose files are not all at fixed places in the run
folder also gives ``paths(run_dir)`` (role -> path). A new kind is one such module and one line below.
"""

from __future__ import annotations

from types import ModuleType

from mapscope.ae import saved as ae_run
from mapscope.cluster import saved as kmeans_run
from mapscope.cnn import saved as cnn_run
from mapscope.mlp import saved as mlp_run

KINDS: dict[str, ModuleType] = {
    cnn_run.KIND: cnn_run,
    mlp_run.KIND: mlp_run,
    kmeans_run.KIND: kmeans_run,
    ae_run.KIND: ae_run,
}
