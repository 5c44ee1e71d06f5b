"""Small demo datasets that need no download.

* `load_digits` reads the 8x8 handwritten digits bundled inside scikit-learn
  (1797 images, 10 classes; scikit-learn is the optional `demo` extra), splits
  them into stratified training and validation sets by `seed` and standardizes
  the features with training statistics.
* `make_classification_data` draws Gaussian blobs with NumPy alone, for tests and
  examples that should not depend on scikit-learn.

Everything here is NumPy (float32 features, int32 labels) and deterministic per
`seed`; move arrays to devices with `jnp.asarray` or let the trainer do it.
Minibatching is the trainer's job, not this module's.
"""

from __future__ import annotations

import importlib.util
import numbers
import operator
import pathlib
from typing import Any, NamedTuple

import numpy as np

from jaxtune._checks import check_in_range, check_positive


class Dataset(NamedTuple):
    """A classification dataset split into training and validation sets."""

    x_train: np.ndarray  # float32 [num_train, num_features]
    y_train: np.ndarray  # int32 [num_train], labels in [0, num_classes)
    x_valid: np.ndarray  # float32 [num_valid, num_features]
    y_valid: np.ndarray  # int32 [num_valid]
    num_classes: int  # number of classes (10 for digits)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a Python int, got {type(value).__name__} {value!r}."
        )
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {name}={value}.")
    return value


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a Python float, got {type(value).__name__} {value!r}.")
    return float(value)


def _stratified_split(
    labels: np.ndarray, validation_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and validation indices with each class split in proportion."""
    train, valid = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        # Round half up: np.round would send 0.5 to the even neighbour.
        num_valid = int(np.floor(validation_fraction * members.size + 0.5))
        if num_valid == 0 or num_valid == members.size:
            split = "validation" if num_valid == 0 else "training"
            raise ValueError(
                f"`validation_fraction`={validation_fraction} leaves class {label} "
                f"({members.size} samples) with no {split} sample; use a value in "
                f"[{1 / members.size:.3g}, {1 - 1 / members.size:.3g}]."
            )
        valid.append(members[:num_valid])
        train.append(members[num_valid:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(valid))


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits bundled with scikit-learn: float64 [1797, 64] pixels, int32 labels.

    Read from the package's own file (`sklearn/datasets/data/digits.csv.gz`, the last
    column the label), which is what `sklearn.datasets.load_digits` reads, without
    importing scikit-learn: that import (SciPy's statistics with it) takes about 1.5 s,
    most of a small sweep's first run. Through `load_digits` where the file is not found.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ImportError(
            "`load_digits` reads the digits bundled with scikit-learn, which is not "
            "installed; install it with `pip install 'jaxtune[demo]'` (or "
            "`pip install scikit-learn`), or use `make_classification_data` instead.")
    path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        return table[:, :-1], table[:, -1].astype(np.int32)
    from sklearn import datasets  # another layout of the package

    features, labels = datasets.load_digits(return_X_y=True)
    return np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=np.int32)


def load_digits(
    *, validation_fraction: float = 0.2, seed: int = 0, standardize: bool = True
) -> Dataset:
    """The 8x8 digits bundled with scikit-learn, split and standardized.

    Each class is shuffled by `seed` and `round(validation_fraction * n_c)` of its
    `n_c` images go to the validation set, so both splits hold every class in the
    same proportions; the order within each split is shuffled too. With
    `standardize`, feature `j` becomes `(x_j - mean_j) / std_j` with the mean and
    standard deviation of the *training* split; features constant in training
    (some border pixels) are set to 0 in both splits.

    Args:
      validation_fraction: *static*, fraction of each class held out, in (0, 1).
      seed: *static* non-negative int, chooses the split.
      standardize: *static*; False keeps raw pixel intensities (0 to 16).

    Returns:
      A `Dataset` with float32 features of shape `[n, 64]`, int32 labels in
      `[0, 10)` and `num_classes=10`.

    Raises:
      ImportError: scikit-learn is not installed (`pip install 'jaxtune[demo]'`).

    Example:
      >>> import jaxtune as jt
      >>> data = jt.load_digits(validation_fraction=0.2, seed=0)
      >>> data.x_train.shape, data.x_valid.shape, data.num_classes
      ((1438, 64), (359, 64), 10)
    """
    validation_fraction = _check_real("validation_fraction", validation_fraction)
    check_in_range(
        "validation_fraction", validation_fraction, 0.0, 1.0,
        closed_low=False, closed_high=False,
    )
    seed = _check_int("seed", seed, 0)
    if not isinstance(standardize, (bool, np.bool_)):
        raise TypeError(
            f"`standardize` must be True or False, got {type(standardize).__name__} "
            f"{standardize!r}."
        )
    features, labels = _bundled_digits()
    train, valid = _stratified_split(labels, validation_fraction, np.random.default_rng(seed))
    x_train, x_valid = features[train], features[valid]
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        varies = std > 0
        scale = np.where(varies, std, 1.0)
        x_train = np.where(varies, (x_train - mean) / scale, 0.0)
        x_valid = np.where(varies, (x_valid - mean) / scale, 0.0)
    return Dataset(
        x_train=x_train.astype(np.float32),
        y_train=labels[train],
        x_valid=x_valid.astype(np.float32),
        y_valid=labels[valid],
        num_classes=10,
    )


def make_classification_data(
    n: int, num_features: int, num_classes: int, seed: int = 0, *, noise: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: a tiny synthetic classification set in pure NumPy.

    Class centres `mu_c ~ N(0, I)` in `num_features` dimensions; sample `i` has
    label `y_i` (classes balanced to within one sample, in shuffled order) and
    features `x_i = mu_{y_i} + noise * eps_i` with `eps_i ~ N(0, I)`. Larger
    `noise` or fewer features make the classes overlap more.

    Args:
      n: *static* number of samples, at least `num_classes`.
      num_features: *static* number of features, >= 1.
      num_classes: *static* number of classes, >= 2.
      seed: *static* non-negative int; the same seed gives the same data.
      noise: *static* positive standard deviation of each blob.

    Returns:
      `(x, y)`: float32 features `[n, num_features]` and int32 labels `[n]` in
      `[0, num_classes)`.

    Example:
      >>> import jaxtune as jt
      >>> x, y = jt.make_classification_data(100, 5, 3, seed=0)
      >>> x.shape, x.dtype, y.shape, y.dtype, sorted(set(y.tolist()))
      ((100, 5), dtype('float32'), (100,), dtype('int32'), [0, 1, 2])
    """
    num_classes = _check_int("num_classes", num_classes, 2)
    n = _check_int("n", n, 1)
    if n < num_classes:
        raise ValueError(
            f"`n` must be at least `num_classes` so that every class has a sample, "
            f"got n={n} and num_classes={num_classes}."
        )
    num_features = _check_int("num_features", num_features, 1)
    seed = _check_int("seed", seed, 0)
    noise = _check_real("noise", noise)
    check_positive("noise", noise)
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, num_features))
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
    features = centers[labels] + noise * rng.normal(size=(n, num_features))
    return features.astype(np.float32), labels
