"""The numpy MLP as a scikit-learn classifier, like ``sklearn.neural_network.MLPClassifier``.

``fit`` trains for ``epochs`` epochs with the conventions of the original experiments (summed
batch cost, momentum, ``lr / (1 + decrease * epoch)``, L1/L2 on the weights); ``partial_fit``
trains one more epoch. Parameters live in ``__init__`` and are validated at ``fit``; learned
state ends in ``_``. Labels may be any classes (strings too): they are encoded in ``classes_``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mapscope.data.prepare import one_hot
from mapscope.errors import ConfigError
from mapscope.mlp.network import MLP
from mapscope.mlp.train import MLPConfig, Velocity, train_epoch


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron trained by mini-batch gradient descent with momentum.

    Parameters
    ----------
    hidden_layer_sizes : sizes of the hidden layers (input and output sizes come from the data).
    activation : hidden activation, "sigmoid", "relu" or "tanh".
    loss : "logloss" (sigmoid outputs), "crossentropy" (softmax) or "mse".
    batch_size, epochs, lr, decrease, momentum, l2, l1, init_scale : as in ``MLPConfig``.
    random_state : seed of the initial weights and of the batch order.
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (70, 30),
        activation: str = "sigmoid",
        loss: str = "logloss",
        batch_size: int = 500,
        epochs: int = 60,
        lr: float = 1.5e-3,
        decrease: float = 0.02,
        momentum: float = 0.9,
        l2: float = 0.1,
        l1: float = 0.0,
        init_scale: float = 1.0,
        random_state: int = 0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.decrease = decrease
        self.momentum = momentum
        self.l2 = l2
        self.l1 = l1
        self.init_scale = init_scale
        self.random_state = random_state

    def _config(self) -> MLPConfig:
        return MLPConfig(
            batch_size=self.batch_size,
            epochs=self.epochs,
            lr=self.lr,
            decrease=self.decrease,
            momentum=self.momentum,
            l2=self.l2,
            l1=self.l1,
            init_scale=self.init_scale,
        ).validate()

    def _start(self, X: np.ndarray, classes: np.ndarray) -> None:
        hidden = tuple(self.hidden_layer_sizes)
        if any(not isinstance(n, int | np.integer) or n < 1 for n in hidden):
            raise ConfigError(
                f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}."
            )
        if len(classes) < 2:
            raise ConfigError(
                f"MLPClassifier needs samples of at least 2 classes in y; got 1 class ({classes[0]!r})."
            )
        self.classes_ = classes
        layers = (X.shape[1], *hidden, len(classes))
        seed = 0 if self.random_state is None else self.random_state
        self.network_ = MLP(layers, self.activation, self.loss, self.init_scale, seed).initialize()
        self.velocity_ = Velocity.zeros(self.network_)
        self.rng_ = np.random.default_rng(seed)
        self.n_epochs_ = 0
        self.loss_curve_: list[float] = []

    def _epoch(self, X: np.ndarray, y: np.ndarray, config: MLPConfig) -> None:
        codes = np.searchsorted(self.classes_, y)
        targets = one_hot(codes, len(self.classes_))
        x = X.astype(np.float32)
        loss, _ = train_epoch(
            self.network_, self.velocity_, x, targets, config, self.n_epochs_, self.rng_
        )
        self.loss_curve_.append(loss / len(x))
        self.n_epochs_ += 1

    def fit(self, X, y) -> MLPClassifier:
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        config = self._config()
        self._start(X, np.unique(y))
        for _ in range(config.epochs):
            self._epoch(X, y, config)
        return self

    def partial_fit(self, X, y, classes=None) -> MLPClassifier:
        """One more epoch over ``X``; the first call needs ``classes`` (all labels there are)."""
        first = not hasattr(self, "network_")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ConfigError("the first partial_fit call needs classes=[every label].")
            self._start(X, np.unique(classes))
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ConfigError(f"labels {unknown.tolist()} are not in classes_ {self.classes_}.")
        self._epoch(X, y, self._config())
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        out = self.network_.predict_proba(X.astype(np.float32)).astype(np.float64)
        # sigmoid outputs (logloss, mse) are per-class scores: normalise rows to sum to 1
        return out / np.maximum(out.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)

    def predict(self, X) -> np.ndarray:
        best = self.predict_proba(X).argmax(axis=1)  # checks that the model is fitted
        return self.classes_[best]
