import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from mapscope.data.prepare import (
    Standardizer,
    arrange,
    one_hot,
    per_image_standardize,
    prepare_inputs,
)
from mapscope.data.split import Split, make_split
from mapscope.errors import ConfigError

LABELS = np.arange(700) % 10


def test_canonical_split_keeps_published_order():
    split = make_split("mnist", LABELS, 600)
    np.testing.assert_array_equal(split.train, np.arange(600))
    assert split.pool_index("test", 13) == 613


def test_resplit_is_seeded_and_complete():
    a = make_split("mnist", LABELS, 600, "resplit", seed=3)
    b = make_split("mnist", LABELS, 600, "resplit", seed=3)
    c = make_split("mnist", LABELS, 600, "resplit", seed=4)
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)
    assert len(a.train) == 600 and len(a.test) == 100
    assert np.array_equal(np.sort(np.concatenate([a.train, a.test])), np.arange(700))


def test_stratified_split_balances_classes():
    labels = np.repeat(np.arange(4), 500)
    split = make_split("wifi", labels, None, seed=0, test_size=500)
    assert split.mode == "stratified"
    np.testing.assert_array_equal(np.bincount(labels[split.test]), [125] * 4)
    assert len(np.intersect1d(split.train, split.test)) == 0


def test_split_round_trip(tmp_path):
    split = make_split("mnist", LABELS, 600, "resplit", seed=7)
    back = Split.load(split.save(tmp_path / "split.npz"))
    assert (back.dataset, back.mode, back.seed) == ("mnist", "resplit", 7)
    np.testing.assert_array_equal(back.test, split.test)
    np.testing.assert_array_equal(back.train, split.train)


def test_index_out_of_range_names_valid_range():
    split = make_split("mnist", LABELS, 600)
    with pytest.raises(ConfigError, match=r"valid indices are 0\.\.99"):
        split.pool_index("test", 100)


def test_standardizer_matches_sklearn(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (50, 4, 4)).astype(np.uint8)
    x[:, 0, 0] = 0  # a constant pixel: scale 1 as in sklearn
    ours = Standardizer().fit(x)
    ref = StandardScaler().fit(x.reshape(50, -1).astype(np.float64))
    np.testing.assert_allclose(
        ours.transform(x).reshape(50, -1), ref.transform(x.reshape(50, -1)), rtol=1e-4, atol=1e-4
    )
    back = Standardizer.load(ours.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(back.transform(x), ours.transform(x))


def test_per_image_standardize_and_layouts():
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    z = per_image_standardize(x)
    np.testing.assert_allclose(z.reshape(3, -1).mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(z.reshape(3, -1).std(1), 1, atol=1e-4)
    assert arrange(z, "nchw").shape == (3, 1, 28, 28)
    assert arrange(z, "nhwc").shape == (3, 28, 28, 1)
    assert prepare_inputs(x, "unit").max() <= 1.0
    assert prepare_inputs(x, "unit").shape == (3, 784)


def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ConfigError, match="0..2"):
        one_hot(np.array([3]), 3)
