"""Demo datasets: the bundled digits split and the synthetic Gaussian blobs."""

import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets

import jaxtune as jt
from jaxtune import data as data_module


@pytest.fixture(scope="module")
def raw_digits():
    x, y = sklearn.datasets.load_digits(return_X_y=True)
    return x.astype(np.float64), y.astype(np.int64)


def _sorted_rows(x, y):
    rows = np.concatenate([x, y[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_shapes_and_dtypes():
    data = jt.load_digits()
    assert isinstance(data, jt.Dataset)
    assert data.num_classes == 10
    assert data.x_train.dtype == np.float32 and data.x_valid.dtype == np.float32
    assert data.y_train.dtype == np.int32 and data.y_valid.dtype == np.int32
    assert data.x_train.shape == (data.y_train.size, 64)
    assert data.x_valid.shape == (data.y_valid.size, 64)
    assert data.y_train.size + data.y_valid.size == 1797


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.75])
def test_stratified_split_sizes_and_proportions(raw_digits, fraction):
    _, y = raw_digits
    data = jt.load_digits(validation_fraction=fraction, seed=3)
    for label in range(10):
        n_c = np.sum(y == label)
        n_valid = np.sum(data.y_valid == label)
        assert n_valid == int(np.floor(fraction * n_c + 0.5))
        assert np.sum(data.y_train == label) == n_c - n_valid
        assert n_valid > 0 and n_c - n_valid > 0
    train_share = np.bincount(data.y_train, minlength=10) / data.y_train.size
    valid_share = np.bincount(data.y_valid, minlength=10) / data.y_valid.size
    np.testing.assert_allclose(train_share, valid_share, atol=0.01)
    assert data.y_valid.size == pytest.approx(fraction * 1797, abs=10)


def test_split_is_a_partition_of_the_bundled_data(raw_digits):
    x, y = raw_digits
    data = jt.load_digits(standardize=False, seed=1)
    x_all = np.concatenate([data.x_train, data.x_valid]).astype(np.float64)
    y_all = np.concatenate([data.y_train, data.y_valid])
    np.testing.assert_array_equal(_sorted_rows(x_all, y_all), _sorted_rows(x, y))
    # Shuffled: the classes are not in blocks.
    assert np.any(np.diff(data.y_train) < 0) and not np.all(np.diff(data.y_train) >= 0)


def test_deterministic_per_seed():
    a, b = jt.load_digits(seed=7), jt.load_digits(seed=7)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
    c = jt.load_digits(seed=8)
    assert not np.array_equal(a.y_train, c.y_train)
    assert not np.array_equal(a.x_valid, c.x_valid)


def test_standardization_uses_training_statistics():
    raw = jt.load_digits(standardize=False, seed=2)
    data = jt.load_digits(seed=2)
    np.testing.assert_array_equal(raw.y_train, data.y_train)
    mean = raw.x_train.astype(np.float64).mean(0)
    std = raw.x_train.astype(np.float64).std(0)
    varies = std > 0
    assert 0 < np.sum(~varies) < 64  # digits has border pixels that are always 0
    assert np.all(np.isfinite(data.x_train)) and np.all(np.isfinite(data.x_valid))
    np.testing.assert_allclose(data.x_train[:, varies].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train[:, varies].std(0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(
        data.x_valid[:, varies], (raw.x_valid[:, varies] - mean[varies]) / std[varies],
        rtol=1e-5, atol=1e-5,
    )
    assert np.all(data.x_train[:, ~varies] == 0) and np.all(data.x_valid[:, ~varies] == 0)


def test_unstandardized_features_are_raw_pixels():
    data = jt.load_digits(standardize=False)
    assert data.x_train.min() == 0 and data.x_train.max() == 16
    assert np.all(data.x_train == np.round(data.x_train))


def test_the_bundled_file_is_read_without_importing_sklearn(raw_digits, monkeypatch):
    code = ("import sys, jaxtune as jt; jt.load_digits(); "
            "assert 'sklearn' not in sys.modules, 'sklearn imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    x, y = data_module._bundled_digits()
    np.testing.assert_array_equal(x, raw_digits[0])
    np.testing.assert_array_equal(y, raw_digits[1])
    assert x.dtype == np.float64 and y.dtype == np.int32
    # Where the package keeps its file elsewhere, through `sklearn.datasets.load_digits`.
    monkeypatch.setattr(data_module.pathlib.Path, "is_file", lambda self: False)
    fallback = data_module._bundled_digits()
    np.testing.assert_array_equal(fallback[0], x)
    np.testing.assert_array_equal(fallback[1], y)


def test_missing_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxtune\[demo\]'"):
        jt.load_digits()


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_validation_fraction_out_of_range(bad):
    with pytest.raises(ValueError, match=r"`validation_fraction`"):
        jt.load_digits(validation_fraction=bad)


def test_validation_fraction_messages():
    with pytest.raises(ValueError, match=r"`validation_fraction` must lie in \(0.0, 1.0\), "
                                         r"got validation_fraction=1.5"):
        jt.load_digits(validation_fraction=1.5)
    with pytest.raises(ValueError, match=r"must be finite"):
        jt.load_digits(validation_fraction=float("nan"))
    with pytest.raises(ValueError, match=r"leaves class \d \(\d+ samples\) with no "
                                         r"validation sample"):
        jt.load_digits(validation_fraction=0.001)
    with pytest.raises(ValueError, match=r"with no training sample"):
        jt.load_digits(validation_fraction=0.999)


@pytest.mark.parametrize("bad", ["0.2", True, None, np.array(0.2)])
def test_validation_fraction_wrong_kind(bad):
    with pytest.raises(TypeError, match=r"`validation_fraction` must be a Python float"):
        jt.load_digits(validation_fraction=bad)


def test_bad_seed_and_standardize():
    with pytest.raises(ValueError, match=r"`seed` must be an integer >= 0, got seed=-1"):
        jt.load_digits(seed=-1)
    with pytest.raises(TypeError, match=r"`seed` must be a Python int, got float 1.5"):
        jt.load_digits(seed=1.5)
    with pytest.raises(TypeError, match=r"`standardize` must be True or False, got str"):
        jt.load_digits(standardize="yes")


# ----------------------------------------------------------------------------- synthetic


def test_blobs_shapes_dtypes_and_balance():
    x, y = jt.make_classification_data(103, 7, 4, seed=0)
    assert x.shape == (103, 7) and x.dtype == np.float32
    assert y.shape == (103,) and y.dtype == np.int32
    counts = np.bincount(y, minlength=4)
    assert counts.tolist() == [26, 26, 26, 25]
    assert np.any(np.diff(y) < 0)  # shuffled, not in blocks


def test_blobs_deterministic_per_seed():
    a = jt.make_classification_data(50, 3, 2, seed=4)
    b = jt.make_classification_data(50, 3, 2, seed=4)
    c = jt.make_classification_data(50, 3, 2, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_blobs_are_gaussian_around_class_centres():
    x, y = jt.make_classification_data(6000, 20, 3, seed=1, noise=0.5)
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    residual = x - means[y]
    np.testing.assert_allclose(residual.std(0), 0.5, rtol=0.05)
    # Well-separated in 20 dimensions: nearest class mean recovers the labels.
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == y) > 0.95


def test_blobs_errors():
    with pytest.raises(ValueError, match=r"`n` must be at least `num_classes`.*n=2 and "
                                         r"num_classes=3"):
        jt.make_classification_data(2, 4, 3)
    with pytest.raises(ValueError, match=r"`num_classes` must be an integer >= 2, got "
                                         r"num_classes=1"):
        jt.make_classification_data(10, 4, 1)
    with pytest.raises(ValueError, match=r"`num_features` must be an integer >= 1"):
        jt.make_classification_data(10, 0, 2)
    with pytest.raises(TypeError, match=r"`n` must be a Python int, got float 10.0"):
        jt.make_classification_data(10.0, 4, 2)
    with pytest.raises(ValueError, match=r"`noise` must be positive, got noise=0.0"):
        jt.make_classification_data(10, 4, 2, noise=0.0)
    with pytest.raises(TypeError, match=r"`noise` must be a Python float"):
        jt.make_classification_data(10, 4, 2, noise="1")
    with pytest.raises(ValueError, match=r"`seed` must be an integer >= 0"):
        jt.make_classification_data(10, 4, 2, seed=-2)
