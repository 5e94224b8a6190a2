"""What every unit of several layers does over a whole split, in one streamed forward pass.

A unit is a map of a conv/pool layer or a node of a dense layer. For each image the pass keeps
three numbers per unit (its mean over the map, its peak and where the peak is), so 10000 images
of a layer cost a few MB, not the GB its full maps would. Everything the atlas shows about a
unit (top images, histogram, class means, selectivity, deadness, correlated units) derives from
those arrays.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mapscope.device import INFERENCE_BATCH
from mapscope.inspect.compare import Separation, class_separation
from mapscope.inspect.taps import evaluation_mode, forward_to, module_device


@dataclass
class UnitStatistics:
    layer: str
    shape: tuple[int, ...]  # one image's output: (C, H, W) or (F,)
    mean: np.ndarray  # (N, K) per-image mean over the map (dense: the value)
    peak: np.ndarray  # (N, K) per-image maximum over the map (over ``inside`` when given)
    where: np.ndarray  # (N, K) flat position of that maximum (dense: 0)
    inside: np.ndarray | None = None  # (H, W) the positions ``peak`` looks at; None: all
    peak_anywhere: np.ndarray | None = None  # (N, K) maximum over every position, with ``inside``

    @property
    def units(self) -> int:
        return self.mean.shape[1]

    @property
    def is_map(self) -> bool:
        return len(self.shape) == 3

    def top(self, k: int) -> np.ndarray:
        """(K, k) positions of the images that drive each unit hardest (by peak), best first."""
        k = min(k, len(self.peak))
        part = np.argpartition(-self.peak, k - 1, axis=0)[:k]
        order = np.argsort(-np.take_along_axis(self.peak, part, 0), axis=0, kind="stable")
        return np.take_along_axis(part, order, 0).T

    def peak_position(self, image: int, unit: int) -> tuple[int, int]:
        """(row, column) of the unit's strongest response to image ``image``."""
        if not self.is_map:
            return 0, 0
        return divmod(int(self.where[image, unit]), self.shape[2])

    @property
    def highest(self) -> np.ndarray:
        """(N, K) the maximum over every position of the map, whatever ``inside`` says."""
        return self.peak if self.peak_anywhere is None else self.peak_anywhere

    @property
    def dead(self) -> np.ndarray:
        """Units that never fire on the split: never above zero in a layer that is never
        negative (after a ReLU), or constant over every image in any other layer."""
        highest = self.highest
        if highest.min() >= 0:
            return highest.max(0) <= 0
        return np.ptp(highest, axis=0) == 0

    def firing_rate(self) -> np.ndarray:
        """(K,) the share of images on which the unit is above zero anywhere (1 for every unit
        of a layer that can be negative: there, zero is not silence)."""
        highest = self.highest
        if highest.min() < 0:
            return np.ones(self.units)
        return (highest > 0).mean(0)

    def rarely_fires(self, rate: float = 0.01) -> np.ndarray:
        """(K,) units alive but above zero on fewer than ``rate`` of the images: their class
        selectivity is computed from a handful of images and means little."""
        return ~self.dead & (self.firing_rate() < rate)

    def bottom(self, k: int) -> np.ndarray:
        """(K, k) positions of the images that drive each unit least (by peak, then by map
        mean), weakest first."""
        k = min(k, len(self.peak))
        order = np.lexsort((self.mean, self.peak), axis=0)  # by peak, ties by mean
        return order[:k].T

    def across_range(self, k: int, seed: int = 0) -> np.ndarray:
        """(K, k) images spread evenly over each unit's range of peak values (one at random from
        each of k equal-count slices, as OpenAI Microscope samples), weakest first."""
        k = min(k, len(self.peak))
        order = np.argsort(self.peak, axis=0, kind="stable")  # (N, K)
        edges = np.linspace(0, len(self.peak), k + 1).astype(int)
        rng = np.random.default_rng(seed)
        picks = np.array([rng.integers(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)])
        return order[picks].T

    def values(self, of: str) -> np.ndarray:
        """(N, K) the per-image map mean (``of="mean"``) or peak (``of="peak"``)."""
        if of not in ("mean", "peak"):
            raise ValueError(f"of must be 'mean' or 'peak', got {of!r}")
        return self.peak if of == "peak" else self.mean

    def class_means(self, labels: np.ndarray, n_classes: int, of: str = "mean") -> np.ndarray:
        """(classes, K) each class's average of the per-image map mean (``of="mean"``) or of
        the per-image peak (``of="peak"``)."""
        members = np.zeros((n_classes, len(labels)))
        members[labels, np.arange(len(labels))] = 1.0
        sums = members @ self.values(of).astype(np.float64)  # np.add.at is ~50x slower
        return sums / np.maximum(members.sum(1, keepdims=True), 1)

    def selectivity(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        """Class selectivity index (Morcos et al. 2018): (mu_max - mu_rest) / (mu_max + mu_rest),
        0 for a unit that answers every class alike, 1 for one that answers a single class.
        Class means are shifted to be non-negative first, so logits get an index too."""
        means = self.class_means(labels, n_classes)
        means = means - np.minimum(means.min(0), 0)
        best = means.max(0)
        rest = (means.sum(0) - best) / max(n_classes - 1, 1)
        return np.where(best + rest > 0, (best - rest) / np.maximum(best + rest, 1e-12), 0.0)

    def preferred_class(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        """(K,) the class whose images drive each unit most on average; -1 for a dead unit."""
        preferred = self.class_means(labels, n_classes).argmax(0)
        return np.where(self.dead, -1, preferred)

    def class_z_scores(self, labels: np.ndarray, cls: int) -> np.ndarray:
        """(K,) how far the class's mean activation lies above the split's mean, in standard
        deviations of the per-image activation over the split."""
        spread = self.mean.std(0)
        return (self.mean[labels == cls].mean(0) - self.mean.mean(0)) / np.maximum(spread, 1e-12)

    def separation(self, labels: np.ndarray, class_a: int, class_b: int) -> Separation:
        """Units ranked by Cohen's d of their per-image mean, class a against class b: what
        ``mapscope compare --classes`` and the atlas's class pages show."""
        return class_separation(self.mean, labels, class_a, class_b)

    def histogram(self, bins: int = 24, of: str = "mean") -> tuple[np.ndarray, np.ndarray]:
        """(K, bins) counts of the per-image map mean (or ``of="peak"``), and (K, bins + 1)
        edges."""
        values = self.values(of)
        counts, edges = [], []
        for unit in range(self.units):
            c, e = np.histogram(values[:, unit], bins=bins)
            counts.append(c)
            edges.append(e)
        return np.array(counts), np.array(edges)

    def correlated(self, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
        """(K, n) the units whose per-image activations correlate most with each unit, and r."""
        x = self.mean - self.mean.mean(0)
        norm = np.sqrt((x * x).sum(0))
        r = (x.T @ x) / np.maximum(np.outer(norm, norm), 1e-12)
        np.fill_diagonal(r, -np.inf)
        n = min(n, self.units - 1)
        order = np.argsort(-r, axis=1)[:, :n]
        return order, np.take_along_axis(r, order, 1)


def unit_statistics(
    net: nn.Module,
    inputs: np.ndarray,
    layers: list[str],
    batch: int = INFERENCE_BATCH,
    inside: dict[str, np.ndarray] | None = None,
) -> dict[str, UnitStatistics]:
    """{layer: UnitStatistics} over all ``inputs`` (prepared, in the layout the network reads).

    One forward pass per batch feeds every layer; it stops after the deepest one asked for.
    ``inside``: per map layer, an (H, W) mask of the positions whose maximum counts as the
    unit's peak (``peak_anywhere`` keeps the maximum over all of them).
    """
    return statistics_and_scores(net, inputs, layers, batch, scores=False, inside=inside)[0]


@torch.no_grad()
def statistics_and_scores(
    net: nn.Module,
    inputs: np.ndarray,
    layers: list[str],
    batch: int = INFERENCE_BATCH,
    scores: bool = True,
    inside: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, UnitStatistics], np.ndarray | None]:
    """``unit_statistics`` and, with ``scores``, the network's outputs (N, classes) from the
    same pass (which then runs to the end).

    On the CPU the pass runs on a private channels-last copy of the network: convolutions and
    pooling are about 1.7x faster that way, and the caller's module is left as it was.
    """
    masks = {name: _usable_mask(m) for name, m in (inside or {}).items()}
    device = module_device(net)
    if device.type == "cpu" and inputs.ndim == 4:
        net = copy.deepcopy(net).to(memory_format=torch.channels_last)
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {name: [] for name in layers}
    shapes: dict[str, tuple[int, ...]] = {}
    outputs: list[np.ndarray] = []
    keep = (
        net.register_forward_hook(
            lambda _module, _inputs, out: outputs.append(out.detach().float().cpu().numpy())
        )
        if scores
        else None
    )
    try:
        with evaluation_mode(net):
            for i in range(0, len(inputs), batch):
                x = torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch])).to(device)
                for name, out in forward_to(net, x, layers, stop_early=not scores).items():
                    out = out.detach().float()
                    shapes[name] = tuple(out.shape[1:])
                    flat = out.flatten(2) if out.dim() == 4 else out.unsqueeze(2)
                    peak, where = flat.max(2)
                    part = [flat.mean(2), peak, where]
                    if masks.get(name) is not None:
                        allowed = torch.from_numpy(masks[name].reshape(-1)).to(flat.device)
                        part += list(flat.masked_fill(~allowed, -torch.inf).max(2))
                    parts[name].append(tuple(t.cpu().numpy() for t in part))
    finally:
        if keep is not None:
            keep.remove()
    stats = {}
    for name in layers:
        mean, peak, where, *masked = (
            np.concatenate([p[j] for p in parts[name]]) for j in range(len(parts[name][0]))
        )
        if masked:  # the peak inside the mask; the maximum anywhere kept beside it
            stats[name] = UnitStatistics(
                name, shapes[name], mean, masked[0], masked[1], masks[name], peak
            )
        else:
            stats[name] = UnitStatistics(name, shapes[name], mean, peak, where)
    return stats, np.concatenate(outputs) if scores else None


def _usable_mask(mask: np.ndarray | None) -> np.ndarray | None:
    """A boolean mask that leaves at least one position, or None (all positions)."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    return mask if mask.any() and not mask.all() else None
