"""A multilayer perceptron in numpy: readable like a textbook, vectorised like a library."""

from mapscope.mlp.network import MLP

__all__ = ["MLP"]
