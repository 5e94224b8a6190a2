"""Datasets: finding, verifying, reading, preparing and splitting them."""

from mapscope.data.datasets import DATASETS, Dataset, load_dataset
from mapscope.data.prepare import Standardizer, one_hot, per_image_standardize, prepare_inputs
from mapscope.data.split import Split, make_split

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "Standardizer",
    "load_dataset",
    "make_split",
    "one_hot",
    "per_image_standardize",
    "prepare_inputs",
]
