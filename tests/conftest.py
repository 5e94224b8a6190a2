"""Shared fixtures. Real-data tests read $MAPSCOPE_DATA and fail (never skip) when it is missing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


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
