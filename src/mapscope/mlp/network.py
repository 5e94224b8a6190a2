"""The MLP itself: parameters, forward pass, loss and back-propagation.

Conventions of the original experiments: weights uniform in +-(scale / sqrt(fan_in)), the batch
cost is the *sum* of per-sample losses plus the regularisation term
``Lambda2 * 0.5 * sum(w**2) + Lambda1 * sum(|w|)`` (biases excluded), and the gradient is the
gradient of exactly that cost. Everything is float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapscope.errors import ConfigError, RunError
from mapscope.io import read_arrays, write_npz
from mapscope.schema import check_size

HIDDEN = ("sigmoid", "relu", "tanh")
LOSSES = ("logloss", "crossentropy", "mse")  # logloss/mse use sigmoid outputs, crossentropy softmax


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # here: scipy.special costs 0.4 s at every command's start

    return expit(z)


def _softmax(z: np.ndarray) -> np.ndarray:
    from scipy.special import softmax  # as in _sigmoid

    return softmax(z, axis=1)


def _activate(z: np.ndarray, kind: str) -> np.ndarray:
    if kind == "sigmoid":
        return _sigmoid(z)
    if kind == "relu":
        return np.maximum(z, 0)
    return np.tanh(z)


def _derivative(a: np.ndarray, kind: str) -> np.ndarray:
    """d activation / dz expressed through the activation a itself (no need to keep z)."""
    if kind == "sigmoid":
        return a * (1 - a)
    if kind == "relu":
        return (a > 0).astype(a.dtype)
    return 1 - a * a


@dataclass
class BatchResult:
    cost: float  # data loss + regularisation, summed over the batch
    regularization: float
    error: float  # mean absolute difference between outputs and one-hot targets
    outputs: np.ndarray


def check_mlp_size(layers: tuple[int, ...] | list[int], source: str, error=ConfigError) -> None:
    """The size budget of an MLP before it is built: its weights with their gradients and
    momentum (three float64 arrays each)."""
    weights = sum(a * b + b for a, b in zip(layers, layers[1:], strict=False))
    check_size(24 * weights, f"the MLP {list(layers)} ({weights:,} weights)", source, error)


class MLP:
    """A fully connected network; parameters in ``__init__``, learned state ends in ``_``."""

    def __init__(
        self,
        layers: tuple[int, ...] = (784, 70, 30, 10),
        activation: str = "sigmoid",
        loss: str = "logloss",
        init_scale: float = 1.0,
        seed: int = 0,
    ):
        self.layers = tuple(int(n) for n in layers)
        self.activation = activation
        self.loss = loss
        self.init_scale = init_scale
        self.seed = seed
        self._validate()

    def _validate(self) -> None:
        if len(self.layers) < 2 or any(n < 1 for n in self.layers):
            raise ConfigError(
                f"layers must be at least two positive sizes like 784,70,30,10; got {self.layers}."
            )
        if self.activation not in HIDDEN:
            raise ConfigError(
                f"activation {self.activation!r} unknown; choose one of {', '.join(HIDDEN)}."
            )
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r} unknown; choose one of {', '.join(LOSSES)}.")
        if not self.init_scale > 0:
            raise ConfigError(f"init_scale must be > 0, got {self.init_scale}.")

    def initialize(self) -> MLP:
        rng = np.random.default_rng(self.seed)
        self.weights_, self.biases_ = [], []
        for fan_in, fan_out in zip(self.layers[:-1], self.layers[1:], strict=True):
            bound = self.init_scale / np.sqrt(fan_in)
            self.weights_.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
            self.biases_.append(np.zeros(fan_out, dtype=np.float32))
        if self.loss != "crossentropy":
            # Sigmoid outputs start at the class prior 1/C instead of 0.5. Otherwise the first
            # hundreds of batches only learn that every output should be small (a plateau).
            prior = 1.0 / self.layers[-1]
            self.biases_[-1][:] = np.log(prior / (1 - prior))
        return self

    # ---- forward -------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer, input first; the last entry is the network's output."""
        self._check_input(x)
        acts = [x]
        for i, (w, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            z = acts[-1] @ w
            z += b
            last = i == len(self.weights_) - 1
            if not last:
                acts.append(_activate(z, self.activation))
            elif self.loss == "crossentropy":
                acts.append(_softmax(z))
            else:
                acts.append(_sigmoid(z))
        return acts

    def predict_proba(self, x: np.ndarray, batch: int = 10000) -> np.ndarray:
        return np.concatenate([self.forward(x[i : i + batch])[-1] for i in range(0, len(x), batch)])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    # ---- loss and gradient ---------------------------------------------------------------
    def data_loss(self, out: np.ndarray, target: np.ndarray) -> float:
        eps = np.float32(1e-7)
        if self.loss == "logloss":
            o = np.clip(out, eps, 1 - eps)
            return float(-(target * np.log(o) + (1 - target) * np.log(1 - o)).sum())
        if self.loss == "crossentropy":
            return float(-(target * np.log(np.clip(out, eps, 1))).sum())
        return float(0.5 * ((out - target) ** 2).sum())

    def regularization(self, l1: float, l2: float) -> float:
        total = 0.0
        for w in self.weights_:
            if l2:
                total += 0.5 * l2 * float(np.vdot(w, w))
            if l1:
                total += l1 * float(np.abs(w).sum())
        return total

    def gradients(self, x: np.ndarray, target: np.ndarray, l1: float = 0.0, l2: float = 0.0):
        """Back-propagation: (BatchResult, weight gradients, bias gradients) of the batch cost."""
        acts = self.forward(x)
        out = acts[-1]
        delta = out - target  # sigmoid+logloss and softmax+crossentropy share this output delta
        if self.loss == "mse":
            delta = delta * out * (1 - out)
        grads_w, grads_b = [None] * len(self.weights_), [None] * len(self.weights_)
        for i in range(len(self.weights_) - 1, -1, -1):
            grads_w[i] = acts[i].T @ delta
            grads_b[i] = delta.sum(axis=0)
            if l2:
                grads_w[i] += l2 * self.weights_[i]
            if l1:
                grads_w[i] += l1 * np.sign(self.weights_[i])
            if i:
                delta = (delta @ self.weights_[i].T) * _derivative(acts[i], self.activation)
        reg = self.regularization(l1, l2)
        result = BatchResult(
            self.data_loss(out, target) + reg, reg, float(np.abs(out - target).mean()), out
        )
        return result, grads_w, grads_b

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        arrays = {f"w{i}": w for i, w in enumerate(self.weights_)}
        arrays.update({f"b{i}": b for i, b in enumerate(self.biases_)})
        return write_npz(path, **arrays)

    def load_parameters(self, path: str | Path) -> MLP:
        n = len(self.layers) - 1
        expected = {f"w{i}": ("float", 2) for i in range(n)} | {
            f"b{i}": ("float", 1) for i in range(n)
        }
        f = read_arrays(path, expected, what=f"MLP model for layers {self.layers}")
        for i, (fan_in, fan_out) in enumerate(zip(self.layers[:-1], self.layers[1:], strict=True)):
            if f[f"w{i}"].shape != (fan_in, fan_out) or f[f"b{i}"].shape != (fan_out,):
                raise RunError(
                    f"{path}: weight shapes {f[f'w{i}'].shape} and {f[f'b{i}'].shape} do not fit "
                    f"layers {self.layers}."
                )
        self.weights_ = [f[f"w{i}"].astype(np.float32) for i in range(n)]
        self.biases_ = [f[f"b{i}"].astype(np.float32) for i in range(n)]
        return self

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim != 2 or x.shape[1] != self.layers[0]:
            raise ConfigError(f"MLP expects input of shape (N, {self.layers[0]}), got {x.shape}.")
        if not hasattr(self, "weights_"):
            raise ConfigError("the MLP has no parameters yet; call initialize() or train it first.")
