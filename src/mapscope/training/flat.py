"""Optimizers that keep all of a network's parameters, and their gradients, in one buffer.

torch's fused Adam and SGD update a list of tensors one tensor at a time, each pass its own
parallel region; the reference CNN has ten parameter tensors, so a step paid ten region starts
for 209000 numbers. Here every parameter becomes a view into one flat tensor (keeping its shape
and memory format, so channels-last kernels stay channels-last), its gradient a view into a
second one, and the optimizer updates the flat tensor in a single pass. Autograd accumulates
each parameter's gradient into its view, so ``zero_grad`` zeroes the flat gradient in place
rather than dropping it. Adam and SGD are element-wise, so the weights are those of one tensor
per parameter up to the last bit of a few numbers (the fused kernel runs the numbers left over
from its vector width in scalar code, and where a tensor ends moved). Measured in a bare loop
of the reference CNN's bf16 steps on 2 cores, alternating 30 blocks of 40 steps: 0.21 ms less
per step (median of the pairs), of 5-7 ms.

``state_dict`` and ``load_state_dict`` speak the per-parameter format of the plain optimizer,
so a checkpoint written here resumes with a plain optimizer and the other way round.

torch's ``Optimizer`` keeps ``torch.compile`` out of ``add_param_group``, ``state_dict``,
``load_state_dict``, ``zero_grad`` and ``step`` with wrappers that import ``torch._dynamo`` on
their first call: 0.9 s on an Intel Xeon, 2.2-2.4 s on an AMD EPYC (2026-12-07), in every
process that makes an optimizer, where a CLI training of 2000 images takes 0.4 s. These
optimizers call the methods underneath the wrappers, and ``FlatAdam`` takes its first step
itself, so an eager training never imports it; torch's own step, for what ``FlatAdam.step`` does
not cover and for ``FlatSGD``, still does.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import (
    _device_dtype_check_for_fused,
    _get_scalar_dtype,
    _global_optimizer_post_hooks,
    _global_optimizer_pre_hooks,
)


def flatten_(parameters: list[nn.Parameter]) -> nn.Parameter:
    """Move ``parameters`` (in place) into views of one new buffer; returns the buffer as a
    parameter whose gradient is the flat gradient the parameters' gradients are views of."""
    first = parameters[0]
    total = sum(p.numel() for p in parameters)
    flat = torch.empty(total, dtype=first.dtype, device=first.device)
    grad = torch.zeros_like(flat)
    offset = 0
    for p in parameters:
        view = flat.as_strided(p.shape, p.stride(), offset)
        view.copy_(p.detach())
        p.data = view
        p.grad = grad.as_strided(p.shape, p.stride(), offset)
        offset += p.numel()
    buffer = nn.Parameter(flat)
    buffer.grad = grad
    return buffer


def can_flatten(parameters: list[nn.Parameter]) -> bool:
    """One dtype and device, and each parameter dense in memory (any order of its axes): what
    a view into one buffer can hold."""
    if not parameters:
        return False
    first = parameters[0]
    return all(
        p.dtype == first.dtype and p.device == first.device and _dense(p) for p in parameters
    )


def _dense(p: torch.Tensor) -> bool:
    """Whether ``p``'s strides cover exactly ``p.numel()`` numbers with no gaps or overlaps."""
    order = sorted((s, n) for s, n in zip(p.stride(), p.shape, strict=True) if n > 1)
    expected = 1
    for stride, size in order:
        if stride != expected:
            return False
        expected *= size
    return True


def _eager(method):
    """``method`` of torch's ``Optimizer`` without the wrapper that keeps ``torch.compile`` out
    of it and imports ``torch._dynamo`` on its first call (the module docstring); the method as
    it is where a torch release does not wrap it."""
    return getattr(method, "__wrapped__", method)


class FlatParameters:
    """Mixin for a torch optimizer: the parameters in one buffer (see the module docstring)."""

    def __init__(self, params: Iterable[nn.Parameter], **settings: Any):
        self.parameters_ = list(params)
        self.flat_ = flatten_(self.parameters_)
        super().__init__([self.flat_], **settings)  # type: ignore[call-arg]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _eager(torch.optim.Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient in place: the parameters' gradients are views of it."""
        assert self.flat_.grad is not None
        self.flat_.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """The plain optimizer's format: one entry per parameter, buffers in its shape."""
        flat = _eager(torch.optim.Optimizer.state_dict)(self)
        groups = [
            {**group, "params": list(range(len(self.parameters_)))}
            for group in flat["param_groups"]
        ]
        buffers = flat["state"].get(0, {})
        state = {}
        if buffers:
            for i, (p, offset) in enumerate(self._offsets()):
                state[i] = {key: _split(key, value, p, offset) for key, value in buffers.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take a plain optimizer's state (``state_dict``'s format); ValueError where it does
        not fit these parameters."""
        state, groups = state_dict.get("state"), state_dict.get("param_groups")
        if not isinstance(state, dict) or not isinstance(groups, list) or len(groups) != 1:
            raise ValueError("the optimizer state has not one group of per-parameter buffers")
        group = groups[0]
        if not isinstance(group, dict) or group.get("params") != list(range(len(self.parameters_))):
            raise ValueError("the optimizer state names other parameters than this network's")
        buffers: dict[str, Any] = {}
        if state:
            if sorted(state) != list(range(len(self.parameters_))):
                raise ValueError("the optimizer state has buffers for some parameters only")
            keys = state[0].keys() if isinstance(state[0], dict) else ()
            for i, (p, offset) in enumerate(self._offsets()):
                entry = state[i]
                if not isinstance(entry, dict) or entry.keys() != keys:
                    raise ValueError(f"the optimizer state of parameter {i} has other buffers")
                for key, value in entry.items():
                    if key == "step" or value is None:  # a counter of its own, or no buffer
                        buffers[key] = value.clone() if isinstance(value, torch.Tensor) else value
                        continue
                    if not isinstance(value, torch.Tensor) or value.shape != p.shape:
                        raise ValueError(f"optimizer buffer {key!r} does not fit parameter {i}")
                    whole = buffers.setdefault(key, torch.zeros_like(self.flat_))
                    _piece(whole, p, offset).copy_(value)
        _eager(torch.optim.Optimizer.load_state_dict)(
            self,
            {"state": {0: buffers} if buffers else {}, "param_groups": [{**group, "params": [0]}]},
        )

    def _offsets(self):
        offset = 0
        for p in self.parameters_:
            yield p, offset
            offset += p.numel()


def _split(key: str, value: Any, p: torch.Tensor, offset: int) -> Any:
    """Parameter ``p``'s own copy of one flat state entry: the step counter (each parameter
    its own, as a plain optimizer keeps them), no buffer, or its part of a flat buffer."""
    if key == "step" or value is None:
        return value.clone() if isinstance(value, torch.Tensor) else value
    return _piece(value, p, offset).clone()


def _piece(flat: torch.Tensor, p: torch.Tensor, offset: int) -> torch.Tensor:
    """The part of ``flat`` that holds parameter ``p``, in ``p``'s shape and memory format."""
    return flat.as_strided(p.shape, p.stride(), flat.storage_offset() + offset)


# Adam's settings that ``FlatAdam.step`` leaves to torch's own step
_UNCOVERED = ("amsgrad", "decoupled_weight_decay", "capturable", "differentiable")


class FlatAdam(FlatParameters, torch.optim.Adam):
    """``torch.optim.Adam`` over one buffer of all the parameters."""

    def step(self, closure=None):
        """Adam's update of the flat buffer: torch's fused kernel, called directly.

        torch reaches the same kernel through ``Optimizer``'s wrapper (a profiler record, step
        hooks) and some 200 Python calls; right after a backward pass, with the interpreter's
        caches cold, they took 0.25-0.3 ms of a 5 ms step of the reference CNN on 2 cores,
        the kernel itself 0.1-0.15 ms. The first step makes Adam's state as torch's would
        (``_first_state``), so that a training never enters torch's step, which imports
        ``torch._dynamo``. Parameters on a GPU (where this call has not been run yet), and
        whatever it does not cover (a closure, step hooks, amsgrad, AdamW's decoupled weight
        decay, a tensor learning rate or betas, capturable or differentiable) go through
        torch's own step, wrapper included. Both run the same kernel on the same numbers."""
        group = self.param_groups[0]
        covered = group.get("fused") and not any(group.get(setting) for setting in _UNCOVERED)
        scalars = not any(isinstance(v, torch.Tensor) for v in (group["lr"], *group["betas"]))
        hooked = (
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or _global_optimizer_pre_hooks
            or _global_optimizer_post_hooks
        )
        on_cpu = self.flat_.device.type == "cpu"  # where the direct call has been checked
        direct = covered and scalars and on_cpu and not hooked and closure is None
        if not direct:
            return _hooked_step(torch.optim.Adam)(self, closure)
        state = self.state.get(self.flat_) or self._first_state()
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            state["step"].add_(1)
            torch._fused_adam_(
                [self.flat_],
                [self.flat_.grad],
                [state["exp_avg"]],
                [state["exp_avg_sq"]],
                [],
                [state["step"]],
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
            )
        return None

    def _first_state(self) -> dict[str, torch.Tensor]:
        """Adam's state before its first step, made as torch's fused Adam makes it: a step
        counter on the parameters' device and two moving averages of zeros."""
        _device_dtype_check_for_fused(self.flat_)
        flat = self.flat_
        state = self.state[flat] = {
            "step": torch.zeros((), dtype=_get_scalar_dtype(is_fused=True), device=flat.device),
            "exp_avg": torch.zeros_like(flat, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(flat, memory_format=torch.preserve_format),
        }
        return state

    # torch's Optimizer wraps a class's step in its profiler record and hooks on first use
    # unless it is marked as wrapped; ``step`` above runs them itself where it needs them
    step.hooked = True  # type: ignore[attr-defined]


@cache
def _hooked_step(optimizer_class: type[torch.optim.Optimizer]):
    """``optimizer_class.step`` inside Optimizer's profiler record and step hooks, as torch
    runs it (unwrapped first where an instance of that class has wrapped it already); made once
    per class, as a GPU's every step comes here."""
    step = optimizer_class.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__  # type: ignore[attr-defined]
    return torch.optim.Optimizer.profile_hook_step(step)


class FlatSGD(FlatParameters, torch.optim.SGD):
    """``torch.optim.SGD`` over one buffer of all the parameters."""
