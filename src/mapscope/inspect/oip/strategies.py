"""How OIPs are searched: plain, precursor and coarse-to-fine, all with dead-start retries.

- ``plain``: one multi-scale noise image per unit, then gradient ascent.
- ``precursor``: draw M start images per unit, keep the one that activates the unit most, ascend.
- ``coarse-to-fine``: ascend with only the longest wavelengths first, then add finer noise and
  allow finer gradient components stage by stage.

A unit whose activation and gradient are zero at the start cannot climb: it is retried with fresh
noise of ever longer wavelengths (the finest scale dropped on each retry). A unit that no noise
wakes may still fire on real images (a detector of one thin stroke, say): given ``images``, it
starts from the one that drives it most, as Lucent's users start from a dataset example. It is
reported as dead only if neither wakes it, which with the split's images is what the atlas calls
dead: it never fires on them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn

from mapscope.device import pick_device
from mapscope.errors import ConfigError
from mapscope.inspect.oip.ascent import Ascent, ascend, gradient, objective
from mapscope.inspect.oip.objectives import check_units, every_objective
from mapscope.inspect.oip.settings import OIPSettings
from mapscope.inspect.oip.start import (
    check_scales,
    lowpass,
    multiscale_noise,
    standardize,
    upscale,
)
from mapscope.inspect.taps import forward_to, layer_outputs


@dataclass
class OIPResult:
    layer: str
    units: list[int]
    node: tuple[int, int] | None
    images: np.ndarray  # (B, H, W)
    start_images: np.ndarray
    start_activation: np.ndarray
    final_activation: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    retries: np.ndarray
    dead: np.ndarray
    start_image: np.ndarray  # (B,) the index in ``images`` a unit started from; -1: noise
    trace: np.ndarray  # (steps, B) objective per step
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)


def _wake_dead(net, layer, start, units, node, generator, scales, factors, retries):
    """Redraw starts whose gradient is exactly zero, with ever longer wavelengths."""
    tries = np.zeros(len(start), dtype=np.int64)
    _, grad = gradient(net, layer, start, units, node)
    dead = grad.flatten(1).abs().amax(1) == 0
    for attempt in range(1, retries + 1):
        if not dead.any():
            break
        keep = max(1, len(scales) - attempt)
        rows = dead.nonzero().squeeze(1)
        start[rows] = multiscale_noise(
            len(rows), generator, start.shape[-1], scales[:keep], factors[:keep]
        )
        tries[rows.numpy()] = attempt
        _, grad = gradient(net, layer, start[rows], units[rows], node)
        dead[rows] = grad.flatten(1).abs().amax(1) == 0
    return start, tries, dead


def _start_from_images(net, layer, start, units, node, images, dead):
    """Each unit still ``dead`` after the noise starts from the image of ``images`` that drives
    it most, standardised as every image of the search is, where that image's gradient is not
    zero; returns the starts, the units still dead, and each unit's image index (-1: its
    noise start kept)."""
    from_image = torch.full((len(start),), -1, dtype=torch.long)
    rows = dead.nonzero().squeeze(1)
    if len(rows) == 0 or images is None or len(images) == 0:
        return start, dead, from_image.numpy()
    images = torch.as_tensor(np.asarray(images), dtype=start.dtype)
    if images[0].numel() != start[0].numel():
        raise ConfigError(
            f"images hold {images[0].numel()} values each; the OIP search's inputs have "
            f"{tuple(start.shape[1:])}: give images as the module takes them."
        )
    images = standardize(images.reshape(-1, *start.shape[1:]))  # as every search image is
    outputs = torch.from_numpy(layer_outputs(net, images.numpy(), [layer])[layer])
    best = every_objective(outputs, units[rows], node).argmax(0)
    _, grad = gradient(net, layer, images[best], units[rows], node)
    woke = grad.flatten(1).abs().amax(1) > 0
    start, dead = start.clone(), dead.clone()
    start[rows[woke]] = images[best[woke]]
    dead[rows[woke]] = False
    from_image[rows[woke]] = best[woke]
    return start, dead, from_image.numpy()


def run_oip(
    net: nn.Module,
    layer: str,
    units: list[int] | None = None,
    node: tuple[int, int] | None = None,
    settings: OIPSettings | None = None,
    snapshot_steps: tuple[int, ...] = (),
    input_shape: tuple[int, int, int] | None = None,
    images: np.ndarray | torch.Tensor | None = None,
    **options,
) -> OIPResult:
    """OIPs for ``units`` of ``layer`` in one batched optimisation (row i drives unit i).

    ``images`` (real inputs as the module takes them, (N, channels, height, width)): a unit
    that no noise start wakes starts from the one that drives it most (``start_image`` says
    which); without them such a unit is reported dead.

    ``settings`` (default ``OIPSettings()``) with any of its fields changed by ``options``
    (``steps=30, device="cpu"``). Works on any module whose layer ``layer`` is reached by a
    forward hook; ``input_shape`` (channels, height, width) defaults to the module's
    ``spec.input_shape``. The module passed in is never changed: the search runs on a copy, on
    the settings' device (auto: a GPU when torch sees one).
    """
    settings = (settings or OIPSettings()).with_options(**options)
    strategy, steps, epsilon = settings.strategy, settings.steps, settings.epsilon
    scales, factors, seed = tuple(settings.scales), tuple(settings.factors), settings.seed
    retries, precursors = settings.retries, settings.precursors
    tol, patience = settings.tol, settings.patience
    device = settings.device
    device = pick_device(device)
    channels, *size = _input_shape(net, input_shape)
    size = tuple(size)
    check_scales(scales, factors, size)
    # the search works on a private copy: the caller's module keeps its training flag,
    # requires_grad, memory format and device
    net = copy.deepcopy(net).eval().requires_grad_(False).to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(seed)  # noise is drawn on the CPU: same on any device
    with torch.no_grad():
        probe = forward_to(net, torch.zeros(1, channels, *size, device=device), [layer])[layer]
    output_shape = tuple(probe.shape[1:])
    if units is None:
        units = list(range(output_shape[0]))
    check_units(output_shape, units, node, layer)
    unit_tensor = torch.tensor(units, dtype=torch.long)
    n = len(units)
    if strategy == "precursor":
        candidates = multiscale_noise(n * precursors, generator, size, scales, factors, channels)
        with torch.no_grad():
            score = objective(
                net, layer, candidates, unit_tensor.repeat_interleave(precursors), node
            )
        best = score.view(n, precursors).argmax(1)
        start = candidates.view(n, precursors, channels, *size)[torch.arange(n), best]
        first_scales = scales
    elif strategy == "coarse-to-fine":
        first_scales = scales[:1]
        start = multiscale_noise(n, generator, size, first_scales, factors[:1], channels)
    else:
        first_scales = scales
        start = multiscale_noise(n, generator, size, scales, factors, channels)
    start, tries, dead = _wake_dead(
        net,
        layer,
        start,
        unit_tensor,
        node,
        generator,
        first_scales,
        factors[: len(first_scales)],
        retries,
    )
    start = start * settings.start_level  # a faint start for noise; real images as they are
    start, dead, start_image = _start_from_images(
        net, layer, start, unit_tensor, node, images, dead
    )
    with torch.no_grad():
        start_activation = objective(net, layer, start, unit_tensor, node).numpy()
    alive = ~dead
    # every ascent of this search shares these arguments; only start, steps and filter vary
    climb = partial(
        ascend,
        net,
        layer,
        units=unit_tensor,
        node=node,
        epsilon=epsilon,
        tol=tol,
        patience=patience,
        active=alive,
        smooth=settings.smooth,
    )
    if strategy == "coarse-to-fine":
        result = _coarse_to_fine(
            climb, start, steps, scales, factors, generator, alive, snapshot_steps
        )
    else:
        result = climb(start, steps=steps, snapshot_steps=snapshot_steps)
    trace = np.stack(result.trace) if result.trace else np.zeros((0, n))
    return OIPResult(
        layer,
        units,
        node,
        pictures(result.images),
        pictures(start),
        start_activation,
        result.activation,
        result.steps,
        result.converged,
        tries,
        dead.numpy(),
        start_image,
        trace,
        result.snapshots,
    )


def _coarse_to_fine(
    climb, start, steps, scales, factors, generator, alive, snapshot_steps=()
) -> Ascent:
    """Stage k lets the gradient act on wavelengths down to scales[k] and adds that scale's noise."""
    size = tuple(start.shape[-2:])
    per_stage = max(1, steps // len(scales))
    x, taken, trace, snapshots = start, np.zeros(len(start), dtype=np.int64), [], {}
    result = None
    for k, scale in enumerate(scales):
        if k > 0:
            noise = factors[k] * upscale(
                torch.rand(len(x), x.shape[1], scale, scale, generator=generator) * 2 - 1, size
            )
            x = standardize(x + noise * alive.view(-1, 1, 1, 1))
        offset = k * per_stage  # stage k covers global steps offset+1 .. offset+per_stage
        local = [s - offset for s in snapshot_steps if offset < s <= offset + per_stage]
        result = climb(
            x,
            steps=per_stage,
            snapshot_steps=local,
            gradient_filter=lambda g, s=scale: lowpass(g, s),
        )
        snapshots.update({offset + s: image for s, image in result.snapshots.items()})
        x, taken = result.images, taken + result.steps
        trace += result.trace
    result.steps, result.trace, result.snapshots = taken, trace, snapshots
    return result


def pictures(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(K, C, H, W) search images as pictures are stored: (K, H, W) grey, (K, H, W, C) colour."""
    images = np.asarray(images)
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def _input_shape(net: nn.Module, input_shape: tuple[int, int, int] | None) -> tuple[int, ...]:
    spec = getattr(net, "spec", None)
    shape = input_shape or (spec.input_shape if spec is not None else None)
    if shape is None:
        raise ConfigError("run_oip needs input_shape=(channels, height, width) for this module.")
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input_shape must be (channels, height, width), got {shape}.")
    return tuple(int(v) for v in shape)
