"""Do two networks learn the same units? Correlation matching and CKA on any ``nn.Module``.

Following Li et al., "Convergent Learning" (ICLR 2016): each unit (a channel of a map layer, a
node of a dense layer) is described by its activations over the same images; two units are
alike when these correlate (Pearson); the one-to-one matching of run A's units to run B's that
maximises the total correlation is found by the Hungarian method
(``scipy.optimize.linear_sum_assignment``). Following Kornblith et al., "Similarity of Neural
Network Representations Revisited" (ICML 2019): linear CKA compares whole layers, also of
different widths, and finds corresponding layers.

Everything here takes arrays or modules and returns numbers; pictures are in ``report/match.py``
and the run-level workflow in ``inspect/compare_runs.py``.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from mapscope.device import INFERENCE_BATCH
from mapscope.inspect.taps import (
    evaluation_mode,
    find_layer,
    forward_to,
    layer_names,
    module_device,
)

RELIABLE = 0.9  # a unit matched above this is "learned reliably" (Li et al. use the same bar)
POOR = 0.5  # below this a unit has no real counterpart in the other network


def weighted_layers(module: nn.Module) -> list[str]:
    """The layers that learn (conv and dense layers): those with parameters of their own."""
    if getattr(module, "layer_names", None) is not None:
        return [
            n for n in layer_names(module) if any(True for _ in find_layer(module, n).parameters())
        ]
    return [
        name
        for name, m in module.named_modules()
        if name and any(True for _ in m.parameters(recurse=False))
    ]


@dataclass
class LayerFeatures:
    """One layer's outputs over the images, reduced for matching and CKA."""

    units: np.ndarray  # (images, units): each map's spatial mean, or each node's value
    positions: np.ndarray | None  # (sample, positions, units) of a map layer: every position
    gram: np.ndarray | None  # (sample, sample) centred Gram matrix of the flattened output
    # positions: standardised (every unit centred, norm 1), see ``standardized``

    def head(self, n: int) -> LayerFeatures:
        """The same features for the first ``n`` images only (the sample's images)."""
        return LayerFeatures(self.units[:n], self.positions, self.gram)


@torch.no_grad()
def layer_features(
    module: nn.Module,
    inputs: np.ndarray,
    layers: list[str],
    sample: int = 1000,
    positions: bool = True,
    gram: bool = True,
    batch: int = INFERENCE_BATCH,
) -> dict[str, LayerFeatures]:
    """One batched forward pass over ``inputs`` (stopping after the deepest layer asked for)
    gives, for every layer, the units' activations over all images, and over the first
    ``sample`` images the activations at every spatial position and the Gram matrix for CKA."""
    device = module_device(module)
    k = min(sample, len(inputs))
    units: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    heads: dict[str, np.ndarray] = {}  # the sample's outputs, (k, height, width, units) for maps
    # a private channels-last copy on the CPU: faster convolutions here, and each position's
    # units are then contiguous (the caller's module keeps its memory format)
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    net = copy.deepcopy(module).to(memory_format=layout)
    with evaluation_mode(net):
        for i in range(0, len(inputs), batch):
            x = torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch])).to(device)
            if x.dim() == 4:
                x = x.contiguous(memory_format=layout)
            for name, out in forward_to(net, x, layers).items():
                out = out.detach().float().cpu()
                maps = out.dim() == 4
                units[name].append(out.mean((2, 3)).numpy() if maps else out.flatten(1).numpy())
                if i < k:
                    head = out[: k - i].permute(0, 2, 3, 1) if maps else out[: k - i].flatten(1)
                    if name not in heads:
                        heads[name] = np.empty((k, *head.shape[1:]), np.float32)
                    heads[name][i : i + len(head)] = head.numpy()
    features = {}
    for name in layers:
        head = heads[name]
        features[name] = LayerFeatures(
            np.concatenate(units[name]),
            standardized(head) if positions and head.ndim == 4 else None,
            centred_gram(head.reshape(k, -1)) if gram else None,  # CKA ignores feature order
        )
    return features


def standardized(maps: np.ndarray) -> np.ndarray:
    """(k, height, width, units) maps -> (k, positions, units) with every unit centred and
    scaled to norm 1 over all images and positions (in place: the maps are not kept), so that
    the correlation of two units is one product."""
    maps = maps.reshape(maps.shape[0], -1, maps.shape[-1])
    maps -= maps.mean((0, 1))
    norm = np.sqrt(np.einsum("ipc,ipc->c", maps, maps, dtype=np.float64))
    maps *= (1.0 / np.where(norm > 1e-6, norm, np.inf)).astype(np.float32)  # dead units: 0
    return maps


def centred_gram(features: np.ndarray) -> np.ndarray:
    """H X X^T H for the (k, p) features X: what linear CKA needs of a layer, (k, k) whatever
    the layer's width (conv maps have tens of thousands of values per image)."""
    x = features - features.mean(0, keepdims=True)  # numpy's pairwise float32 sums
    return (x @ x.T).astype(np.float64)


def linear_cka(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
    """Linear CKA of two layers from their centred Gram matrices over the same images:
    HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); 1 for the same representation up to rotation
    and scale, near 0 for unrelated ones."""
    cross = float(np.vdot(gram_a, gram_b))
    norm = float(np.sqrt(np.vdot(gram_a, gram_a) * np.vdot(gram_b, gram_b)))
    return cross / norm if norm > 0 else 0.0


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``a`` (n, p) with every column of ``b`` (n, q);
    a unit that never changes (dead) correlates 0 with everything. Centred float32 columns
    (pairwise sums: errors ~1e-6 over a million rows), norms from the same products."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    norm_a = np.sqrt(np.einsum("ij,ij->j", a, a, dtype=np.float64))
    norm_b = np.sqrt(np.einsum("ij,ij->j", b, b, dtype=np.float64))
    corr = (a.T @ b).astype(np.float64) / np.maximum(np.outer(norm_a, norm_b), 1e-12)
    corr[norm_a < 1e-6, :] = 0.0
    corr[:, norm_b < 1e-6] = 0.0
    return corr


def unit_correlation(a: LayerFeatures, b: LayerFeatures) -> np.ndarray:
    """Correlation of the units of two layers: map units over every spatial position of the
    sample images (as Li et al. do: a map's mean mostly follows how much ink an image has, so
    even random filters correlate on means), node units and maps of different sizes over the
    images."""
    if (
        a.positions is not None
        and b.positions is not None
        and a.positions.shape[:2] == b.positions.shape[:2]
    ):
        za = a.positions.reshape(-1, a.positions.shape[2])
        zb = b.positions.reshape(-1, b.positions.shape[2])
        return (za.T @ zb).astype(np.float64)
    n = min(len(a.units), len(b.units))
    return correlation(a.units[:n], b.units[:n])


@dataclass
class UnitMatch:
    """The one-to-one matching of run A's units to run B's units in one layer."""

    corr: np.ndarray  # (units of A, units of B)
    partner: np.ndarray  # partner[i]: the unit of B matched to unit i of A (-1: none)
    matched: np.ndarray  # matched[i]: corr[i, partner[i]]

    @classmethod
    def of(cls, corr: np.ndarray) -> UnitMatch:
        rows, cols = linear_sum_assignment(corr, maximize=True)
        partner = np.full(corr.shape[0], -1)
        partner[rows] = cols
        matched = np.full(corr.shape[0], np.nan)
        matched[rows] = corr[rows, cols]
        return cls(corr, partner, matched)

    @property
    def alive(self) -> np.ndarray:
        """Units of A that respond at all (a dead unit correlates exactly 0 with everything)."""
        return (self.corr != 0).any(1)

    @property
    def both_alive(self) -> np.ndarray:
        """Units of A that respond and are matched to a unit of B that responds too."""
        paired = self.alive & (self.partner >= 0)
        paired[paired] = (self.corr != 0).any(0)[self.partner[paired]]
        return paired

    def numbers(self) -> dict[str, float | int]:
        """What the matching says about the live units of A: how alike the matched units are,
        how many are learned reliably, and whether the order is the same (against 1/C
        expected by chance). Dead units (no response to any test image) are counted apart."""
        live = self.alive & (self.partner >= 0)
        m = self.matched[live]
        units = max(len(m), 1)
        same = int((self.partner == np.arange(len(self.partner)))[live].sum())
        return {
            "units": len(self.partner),
            "dead": int((~self.alive).sum()),
            "mean": float(m.mean()) if len(m) else 0.0,
            "median": float(np.median(m)) if len(m) else 0.0,
            "std": float(m.std()) if len(m) else 0.0,
            "reliable": int((m > RELIABLE).sum()),
            "reliable_share": float((m > RELIABLE).sum() / units),
            "poor": int((m < POOR).sum()),
            "poor_share": float((m < POOR).sum() / units),
            "same_index": same,
            "same_index_share": same / units,
            "same_index_chance": 1 / max(self.corr.shape),
            # the best partner of each unit, allowing several units the same partner
            "mean_best": float(self.corr.max(1)[live].mean()) if len(m) else 0.0,
        }


def untrained_copy(module: nn.Module, seed: int) -> nn.Module:
    """The same architecture with fresh random weights, as its own initialisation makes them:
    a module whose ``reset_parameters`` takes a generator (mapscope's networks) initialises
    its whole subtree; any other module uses torch's own ``reset_parameters`` under a private
    seed (torch's global random state is left alone)."""
    fresh = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(seed)

    def reset(m: nn.Module) -> None:
        method = getattr(m, "reset_parameters", None)
        if method is not None and "generator" in inspect.signature(method).parameters:
            method(generator)
            return
        if method is not None:
            method()
        for child in m.children():
            reset(child)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reset(fresh)
    return fresh
