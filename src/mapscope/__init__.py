"""mapscope: train small classifiers on MNIST-like data and look inside them."""

__version__ = "0.1.0"
