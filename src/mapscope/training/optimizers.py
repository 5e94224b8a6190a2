"""The optimizer a training config names, over a network's parameters."""

from __future__ import annotations

import torch

from mapscope.training.config import TrainConfig
from mapscope.training.flat import FlatAdam, FlatSGD, can_flatten


def make_optimizer(
    name: str,
    params,
    lr: float,
    momentum: float,
    *,
    beta1: float = TrainConfig.beta1,
    beta2: float = TrainConfig.beta2,
) -> torch.optim.Optimizer:
    """Adam and SGD use torch's fused kernels (one pass per tensor instead of ~10 small ops per
    tensor, about 0.4 ms of a 10 ms CPU step for the reference network) over all parameters in
    one buffer (``training/flat.py``: one pass in all, 0.2 ms less of a 5-7 ms step).
    ``beta1`` and ``beta2`` are the Adam family's betas (torch's 0.9 and 0.999 by default)."""
    params = list(params)
    flat = can_flatten(params)
    betas = (beta1, beta2)
    if name == "sgd":
        sgd = FlatSGD if flat else torch.optim.SGD
        return sgd(params, lr=lr, momentum=momentum, fused=True)
    if name == "adam":
        return (FlatAdam if flat else torch.optim.Adam)(params, lr=lr, betas=betas, fused=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)  # Keras defaults
    chosen = {"nadam": torch.optim.NAdam, "adamax": torch.optim.Adamax}[name]
    return chosen(params, lr=lr, betas=betas)
