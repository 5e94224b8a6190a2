"""Loaders and commands on the real files in $MAPSCOPE_DATA (these must run in CI)."""

import shutil

import numpy as np
import pytest

from mapscope.data import load_dataset
from mapscope.data.bundle import DataBundle
from mapscope.errors import DataError


def test_mnist_counts_and_first_labels(mnist):
    assert mnist.x.shape == (70000, 28, 28) and mnist.x.dtype == np.uint8
    assert mnist.y.dtype == np.int64
    train, test = mnist.y[:60000], mnist.y[60000:]
    assert np.bincount(train).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.x[:60000].mean() == pytest.approx(33.3184, abs=1e-3)
    assert mnist.x[60000:].mean() == pytest.approx(33.7912, abs=1e-3)


def test_fashion_counts(real_data):
    data = load_dataset("fashion-mnist", real_data)
    assert data.x.shape == (70000, 28, 28)
    assert np.bincount(data.y[:60000]).tolist() == [6000] * 10
    assert data.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert data.x[:60000].mean() == pytest.approx(72.9404, abs=1e-3)


def test_an_unpacked_set_is_kept_in_the_cache_and_a_damaged_one_unpacked_again(
    real_data, tmp_path, monkeypatch
):
    """The arrays a command reads are the same whether unpacked from the gzipped originals or
    read from the user cache, and a damaged cache entry costs an unpacking, not an error."""
    from mapscope.data import datasets

    monkeypatch.setenv("MAPSCOPE_CACHE", str(tmp_path))
    datasets._read_idx_set.cache_clear()  # this process's copy: read through the cache
    unpacked = load_dataset("mnist", real_data)
    (entry,) = (tmp_path / "decoded").glob("*.npz")
    datasets._read_idx_set.cache_clear()
    with monkeypatch.context() as unpacking:
        unpacking.setattr(datasets, "read_idx", lambda *a: pytest.fail("unpacked, not cached"))
        cached = load_dataset("mnist", real_data)
    assert np.array_equal(cached.x, unpacked.x) and np.array_equal(cached.y, unpacked.y)
    assert cached.y.dtype == np.int64 and not cached.x.flags.writeable
    entry.write_bytes(entry.read_bytes()[:1000])  # cut short, as by a full disk
    datasets._read_idx_set.cache_clear()
    again = load_dataset("mnist", real_data)
    assert np.array_equal(again.x, unpacked.x) and entry.stat().st_size > 50_000_000
    datasets._read_idx_set.cache_clear()


def test_wifi_rows(real_data):
    data = load_dataset("wifi", real_data)
    assert data.x.shape == (2000, 7) and data.x.dtype == np.int16
    assert np.bincount(data.y).tolist() == [500] * 4
    assert data.x.min() >= -98 and data.x.max() <= -10


def test_corrupted_copy_is_refused(real_data, tmp_path):
    shutil.copytree(real_data / "mnist", tmp_path / "mnist")
    target = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    raw = bytearray(target.read_bytes())
    raw[200] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        load_dataset("mnist", tmp_path)


def test_bundle_test_image_1302_is_the_canonical_one(mnist, real_data):
    bundle = DataBundle.create("mnist", "standard", data_root=real_data)
    np.testing.assert_array_equal(bundle.raw("test", [1302])[0], mnist.x[61302])
    inputs = bundle.inputs("train", [0, 1], layout="nchw")
    assert inputs.shape == (2, 1, 28, 28) and inputs.dtype == np.float32


def test_cli_check_and_show(cli, console, real_data, tmp_path):
    ok = cli("data", "check")  # in this process; `data show` below starts a new interpreter
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all 3 dataset(s) present and verified" in ok.stdout
    out = tmp_path / "x.png"
    shown = console(
        "data",
        "show",
        "mnist",
        "--split",
        "test",
        "--index",
        "1302",
        "--out",
        str(out),
    )
    assert shown.returncode == 0, shown.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test #1302: label 1" in shown.stdout


def test_cli_check_fails_on_corrupt_copy(cli, real_data, tmp_path):
    shutil.copytree(real_data / "wifi", tmp_path / "wifi")
    target = tmp_path / "wifi" / "wifi_localization.txt"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"-64", b"-65", 1))
    bad = cli("data", "check", "wifi", data=tmp_path)
    assert bad.returncode == 2
    assert "wifi_localization.txt: SHA-256" in bad.stdout
