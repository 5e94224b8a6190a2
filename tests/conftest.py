"""Shared fixtures. Real-data tests read $MAPSCOPE_DATA and fail (never skip) when it is missing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mapscope.data.idx import write_idx


def pytest_configure(config):
    # keep the verification cache of test runs out of the user's real cache folder
    os.environ["MAPSCOPE_CACHE"] = tempfile.mkdtemp(prefix="mapscope-test-cache-")


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = os.environ.get("MAPSCOPE_DATA")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.fail(
            "real-data tests need MAPSCOPE_DATA pointing at a folder with mnist/, fashion-mnist/ "
            "and wifi/ (in this workplace: MAPSCOPE_DATA=../shared/data make test)."
        )
    return Path(root)


@pytest.fixture(scope="session")
def mnist(real_data):
    from mapscope.data import load_dataset

    return load_dataset("mnist", real_data)


@pytest.fixture()
def tiny_mnist_dir(tmp_path) -> Path:
    """A fake data folder: 120 train + 40 test random 'digits', with hashes pinned by monkeypatch."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (120, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(120) % 10)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(40) % 10)
    return tmp_path
