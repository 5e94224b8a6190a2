"""Named sets of training settings for the reference CNN (Conv 32/64/128, Dense 100/10).

``default`` is ``TrainConfig``'s own defaults. ``fast`` is the shortest time to 99 % test
accuracy on MNIST on a two-core CPU, found with ``mapscope sweep cnn`` (the sweep's table is in
the README, "Ninety-nine in seconds"): one pass over part of the training set with large steps
early and a cosine anneal to zero; the smallest part whose mean over seeds stays above 99 % in
bf16 and in fp32 alike. A recipe only fills the settings a user leaves out; the settings it set
are stored in config.json like any others, with the recipe's name.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {
        "epochs": 1,
        "max_train": 33000,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 8e-3,
        "schedule": "onecycle",
        "label_smoothing": 0.1,
    },
}
