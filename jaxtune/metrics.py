"""Classification metrics in pure `jax.numpy`: jittable, vmappable, equal to scikit-learn's.

The contract, once:

* `y_true` holds integer (or bool) class labels of any shape; every element is a
  sample. To score many label arrays at once (one per member of a population),
  `jax.vmap` over a leading axis.
* `y_pred` is one of
    - integer (or bool) labels with the same shape as `y_true`;
    - scores, logits or probabilities with one more trailing axis than `y_true`
      (shape `y_true.shape + (num_classes,)`); the prediction is
      `argmax(y_pred, -1)`, ties going to the lower class, and `num_classes` is
      read from that axis;
    - floats with the same shape as `y_true`: probabilities of label 1 in a binary
      task, thresholded so that `y_pred > 0.5` predicts 1 and anything else 0
      (a logit needs `jax.nn.sigmoid` first). This implies `num_classes=2`.
* `num_classes`, `average`, `pos_label` and `zero_division` are *static* Python
  values, validated eagerly (they fix the shapes of the computation), so under
  `jax.jit` bind them with `functools.partial` or `static_argnames`. Label values
  are data, possibly tracers, and are not validated: a label outside
  `[0, num_classes)` (negative ones included) belongs to no class. It counts in no
  row or column of `confusion_matrix`; a sample whose true label is valid but whose
  prediction is not is a false negative of its true class, and the converse is a
  false positive of its predicted class. This equals scikit-learn called with
  `labels=range(num_classes)`.
* `average` is "binary" (the class `pos_label` of a two-class task), "macro"
  (unweighted mean over classes), "micro" (global counts) or "weighted" (mean
  weighted by each class's support), with scikit-learn's meanings. `zero_division`
  (0.0, 1.0 or nan) is the score used where a denominator is 0; with nan such
  classes are left out of macro and weighted averages, as in scikit-learn.
  scikit-learn's default, "warn", behaves as 0.0 plus a warning; ours is 0.0, silent.
* `sample_weight`, optional, is a non-negative array with the shape of `y_true`.

Scores are float scalars (float32 unless x64 is enabled).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxtune._checks import check_nonnegative

AVERAGES = ("binary", "macro", "micro", "weighted")
_SCORES = ("precision", "recall", "f1")
METRIC_NAMES = ("accuracy",) + tuple(f"{s}_{a}" for s in _SCORES for a in AVERAGES)


# ----------------------------------------------------------------------------- validation


def _check_num_classes(num_classes: Any) -> int | None:
    if num_classes is None:
        return None
    if isinstance(num_classes, (bool, jax.core.Tracer)) or not isinstance(
        num_classes, numbers.Integral
    ):
        raise TypeError(
            "`num_classes` must be a Python int (it fixes array shapes, so it is static), "
            f"got {type(num_classes).__name__} {num_classes!r}."
        )
    num_classes = operator.index(num_classes)
    if num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2, got num_classes={num_classes}."
        )
    return num_classes


def _check_average(average: Any) -> str:
    if not isinstance(average, str) or average not in AVERAGES:
        raise ValueError(
            f"`average` must be one of {', '.join(repr(a) for a in AVERAGES)}, "
            f"got average={average!r}."
        )
    return average


def _check_zero_division(zero_division: Any) -> float:
    if (
        isinstance(zero_division, numbers.Real)
        and not isinstance(zero_division, bool)
        and (zero_division in (0, 1) or math.isnan(zero_division))
    ):
        return float(zero_division)
    raise ValueError(
        "`zero_division` must be 0.0, 1.0 or nan (the score used where a denominator "
        f"is 0), got zero_division={zero_division!r}. scikit-learn's 'warn' acts as 0.0."
    )


def _check_pos_label(pos_label: Any) -> int:
    if isinstance(pos_label, (bool, jax.core.Tracer)) or not isinstance(
        pos_label, numbers.Integral
    ):
        raise TypeError(
            f"`pos_label` must be the Python int 0 or 1, got {type(pos_label).__name__} "
            f"{pos_label!r}."
        )
    if pos_label not in (0, 1):
        raise ValueError(
            f"`pos_label` must be 0 or 1 for average='binary', got pos_label={pos_label}; "
            "to score class c of a multiclass task, pass `y_true == c` and the labels "
            "`y_pred == c` with pos_label=1."
        )
    return int(pos_label)


def _as_array(name: str, value: Any) -> jax.Array:
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a numeric array, got {type(value).__name__} {value!r}."
        ) from error


def _is_label_dtype(dtype: Any) -> bool:
    return jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)


def _prepare(
    y_true: Any, y_pred: Any, num_classes: Any, sample_weight: Any, *, default_classes: int | None
) -> tuple[jax.Array, jax.Array, int | None, jax.Array | None]:
    """Returns flat int32 labels, flat int32 predictions, the class count and weights."""
    num_classes = _check_num_classes(num_classes)
    y_true = _as_array("y_true", y_true)
    y_pred = _as_array("y_pred", y_pred)
    if not _is_label_dtype(y_true.dtype):
        raise TypeError(
            f"`y_true` must hold integer (or bool) class labels, got dtype {y_true.dtype}; "
            "if the values are whole numbers, pass `y_true.astype(jnp.int32)`."
        )
    if y_true.size == 0:
        raise ValueError(f"`y_true` is empty (shape {y_true.shape}); metrics need samples.")

    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[:-1] == y_true.shape:
        classes = y_pred.shape[-1]
        if classes < 2:
            raise ValueError(
                f"scores in `y_pred` need a trailing class axis of size >= 2, got "
                f"y_pred.shape={y_pred.shape}; for one logit per sample pass "
                "`jax.nn.sigmoid(y_pred[..., 0])` as a probability of label 1."
            )
        if num_classes is not None and num_classes != classes:
            raise ValueError(
                f"`num_classes`={num_classes} does not match the trailing class axis of "
                f"`y_pred` (shape {y_pred.shape}); drop `num_classes` or fix the scores."
            )
        num_classes = classes
        y_pred = jnp.argmax(y_pred, axis=-1)
    elif y_pred.shape == y_true.shape:
        if _is_label_dtype(y_pred.dtype):
            if num_classes is None:
                num_classes = default_classes
        elif jnp.issubdtype(y_pred.dtype, jnp.floating):
            if num_classes not in (None, 2):
                raise ValueError(
                    "a float `y_pred` with the shape of `y_true` is read as probabilities "
                    f"of label 1 in a binary task, but num_classes={num_classes}; pass "
                    "integer labels or scores with a trailing class axis."
                )
            num_classes = 2
            y_pred = y_pred > 0.5
        else:
            raise TypeError(
                f"`y_pred` must hold integer labels or real scores, got dtype {y_pred.dtype}."
            )
    else:
        raise ValueError(
            "`y_pred` must have the shape of `y_true` (labels or binary probabilities) or "
            "that shape plus a trailing class axis (scores), got "
            f"y_true.shape={y_true.shape} and y_pred.shape={y_pred.shape}."
        )

    if sample_weight is not None:
        sample_weight = _as_array("sample_weight", sample_weight)
        if sample_weight.shape != y_true.shape:
            raise ValueError(
                "`sample_weight` must have the shape of `y_true`, got "
                f"sample_weight.shape={sample_weight.shape} and y_true.shape={y_true.shape}."
            )
        check_nonnegative("sample_weight", sample_weight)
        sample_weight = jnp.ravel(sample_weight).astype(jnp.result_type(float))
    return (
        jnp.ravel(y_true).astype(jnp.int32),
        jnp.ravel(y_pred).astype(jnp.int32),
        num_classes,
        sample_weight,
    )


def _need_classes(num_classes: int | None, what: str) -> int:
    if num_classes is None:
        raise ValueError(
            f"`num_classes` is required for {what} when `y_pred` holds labels; pass "
            "num_classes=K, or pass scores with a trailing class axis of size K."
        )
    return num_classes


# ----------------------------------------------------------------------------- computation


def _class_counts(
    y_true: jax.Array, y_pred: jax.Array, num_classes: int, sample_weight: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-class true positives, predicted counts and true counts (support)."""
    # Exact int32 counts unless weighted; out-of-range labels one-hot to all zeros.
    dtype = jnp.int32 if sample_weight is None else sample_weight.dtype
    true_hot = jax.nn.one_hot(y_true, num_classes, dtype=dtype)
    pred_hot = jax.nn.one_hot(y_pred, num_classes, dtype=dtype)
    if sample_weight is not None:
        true_hot = true_hot * sample_weight[:, None]
    tp = jnp.sum(true_hot * (pred_hot != 0), axis=0)
    if sample_weight is not None:
        pred_hot = pred_hot * sample_weight[:, None]
    return tp, jnp.sum(pred_hot, axis=0), jnp.sum(true_hot, axis=0)


def _accuracy(y_true: jax.Array, y_pred: jax.Array, sample_weight: jax.Array | None) -> jax.Array:
    correct = (y_true == y_pred).astype(jnp.result_type(float))
    if sample_weight is None:
        return jnp.mean(correct)
    return jnp.sum(correct * sample_weight) / jnp.sum(sample_weight)


def _divide(numerator: jax.Array, denominator: jax.Array, zero_division: float) -> jax.Array:
    float_dtype = jnp.result_type(float)
    numerator = numerator.astype(float_dtype)
    denominator = denominator.astype(float_dtype)
    zero = denominator == 0
    ratio = numerator / jnp.where(zero, 1, denominator)
    return jnp.where(zero, jnp.asarray(zero_division, float_dtype), ratio)


def _nan_average(values: jax.Array, weights: jax.Array | None) -> jax.Array:
    """scikit-learn's average that skips NaN entries (falls back to unweighted)."""
    valid = ~jnp.isnan(values)
    values = jnp.where(valid, values, 0)
    count = jnp.sum(valid)
    plain = jnp.sum(values) / jnp.maximum(count, 1)
    if weights is not None:
        weights = jnp.where(valid, weights.astype(values.dtype), 0)
        total = jnp.sum(weights)
        weighted = jnp.sum(values * weights) / jnp.where(total == 0, 1, total)
        plain = jnp.where(total == 0, plain, weighted)
    return jnp.where(count == 0, jnp.nan, plain)


def _score(
    score: str,
    counts: tuple[jax.Array, jax.Array, jax.Array],
    average: str,
    pos_label: int,
    zero_division: float,
) -> jax.Array:
    tp, pred_sum, true_sum = counts
    if average == "binary":
        tp, pred_sum, true_sum = tp[pos_label], pred_sum[pos_label], true_sum[pos_label]
    elif average == "micro":
        tp, pred_sum, true_sum = jnp.sum(tp), jnp.sum(pred_sum), jnp.sum(true_sum)
    if score == "precision":
        values = _divide(tp, pred_sum, zero_division)
    elif score == "recall":
        values = _divide(tp, true_sum, zero_division)
    else:  # f1 = 2 tp / (2 tp + fp + fn), as scikit-learn computes it.
        values = _divide(2 * tp, pred_sum + true_sum, zero_division)
    if average in ("binary", "micro"):
        return values
    return _nan_average(values, true_sum if average == "weighted" else None)


def _binary_classes(num_classes: int | None) -> int:
    if num_classes != 2:
        raise ValueError(
            f"average='binary' needs a two-class task, got num_classes={num_classes}; "
            "use average='macro', 'micro' or 'weighted' for more classes."
        )
    return num_classes


def _precision_recall_f1(
    score: str,
    y_true: Any,
    y_pred: Any,
    num_classes: Any,
    average: Any,
    pos_label: Any,
    zero_division: Any,
    sample_weight: Any,
) -> jax.Array:
    average = _check_average(average)
    zero_division = _check_zero_division(zero_division)
    if average == "binary":
        pos_label = _check_pos_label(pos_label)
    y_true, y_pred, num_classes, sample_weight = _prepare(
        y_true, y_pred, num_classes, sample_weight,
        default_classes=2 if average == "binary" else None,
    )
    if average == "binary":
        num_classes = _binary_classes(num_classes)
    num_classes = _need_classes(num_classes, f"average={average!r}")
    counts = _class_counts(y_true, y_pred, num_classes, sample_weight)
    return _score(score, counts, average, pos_label, zero_division)


# ----------------------------------------------------------------------------- public API


def confusion_matrix(
    y_true: Any, y_pred: Any, num_classes: int | None = None, *, sample_weight: Any = None
) -> jax.Array:
    """Counts of (true class, predicted class) pairs, scikit-learn's layout.

    `C[i, j]` is the number of samples of true class `i` predicted as class `j`
    (rows are true, columns predicted). Samples with a label outside
    `[0, num_classes)` in `y_true` or in the prediction are not counted.

    Args:
      y_true: integer class labels, any shape (*sweepable*: an array, may be traced).
      y_pred: labels, binary probabilities or scores, see the module docstring
        (*sweepable*).
      num_classes: *static* Python int >= 2; required when `y_pred` holds labels,
        read from the trailing axis of scores otherwise.
      sample_weight: optional non-negative weights with the shape of `y_true`
        (*sweepable*).

    Returns:
      An int32 array `[num_classes, num_classes]`, or a float one of summed weights
      when `sample_weight` is given.

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> jt.confusion_matrix(jnp.array([0, 1, 2, 2]), jnp.array([0, 2, 2, 1]), 3)
      Array([[1, 0, 0],
             [0, 0, 1],
             [0, 1, 1]], dtype=int32)
    """
    y_true, y_pred, num_classes, sample_weight = _prepare(
        y_true, y_pred, num_classes, sample_weight, default_classes=None
    )
    num_classes = _need_classes(num_classes, "`confusion_matrix`")
    dtype = jnp.int32 if sample_weight is None else sample_weight.dtype
    true_hot = jax.nn.one_hot(y_true, num_classes, dtype=dtype)
    pred_hot = jax.nn.one_hot(y_pred, num_classes, dtype=dtype)
    if sample_weight is not None:
        true_hot = true_hot * sample_weight[:, None]
    return true_hot.T @ pred_hot


def accuracy(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> jax.Array:
    """Fraction of samples whose prediction equals the label (`sklearn.metrics.accuracy_score`).

    `accuracy = sum_i w_i [y_true_i == pred_i] / sum_i w_i`, with `w_i = 1`
    without `sample_weight` and `pred` from `y_pred` as the module docstring says
    (argmax of scores, `> 0.5` for binary probabilities).

    Args:
      y_true: integer class labels, any shape (*sweepable*).
      y_pred: labels, binary probabilities or scores (*sweepable*).
      sample_weight: optional non-negative weights shaped like `y_true` (*sweepable*).

    Returns:
      A float scalar in [0, 1].

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> float(jt.accuracy(jnp.array([0, 1, 2, 2]), jnp.array([0, 2, 2, 1])))
      0.5
    """
    y_true, y_pred, _, sample_weight = _prepare(
        y_true, y_pred, None, sample_weight, default_classes=None
    )
    return _accuracy(y_true, y_pred, sample_weight)


def precision(
    y_true: Any,
    y_pred: Any,
    num_classes: int | None = None,
    *,
    average: str = "binary",
    pos_label: int = 1,
    zero_division: float = 0.0,
    sample_weight: Any = None,
) -> jax.Array:
    """Precision `tp / (tp + fp)`, equal to `sklearn.metrics.precision_score`.

    Per class `c`: `tp_c / pred_c`, where `pred_c` counts samples predicted as `c`;
    averaged as `average` says (see the module docstring).

    Args:
      y_true: integer class labels, any shape (*sweepable*).
      y_pred: labels, binary probabilities or scores (*sweepable*).
      num_classes: *static* Python int >= 2; 2 by default for "binary", required
        for the other averages when `y_pred` holds labels, read from scores otherwise.
      average: *static*, one of "binary", "macro", "micro", "weighted".
      pos_label: *static*, the positive class (0 or 1) for "binary"; ignored otherwise.
      zero_division: *static*, 0.0, 1.0 or nan: the score where `pred_c == 0`.
      sample_weight: optional non-negative weights shaped like `y_true` (*sweepable*).

    Returns:
      A float scalar.

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> y_true, y_pred = jnp.array([0, 1, 2, 2]), jnp.array([0, 2, 2, 1])
      >>> round(float(jt.precision(y_true, y_pred, 3, average="macro")), 4)
      0.5
    """
    return _precision_recall_f1(
        "precision", y_true, y_pred, num_classes, average, pos_label, zero_division,
        sample_weight,
    )


def recall(
    y_true: Any,
    y_pred: Any,
    num_classes: int | None = None,
    *,
    average: str = "binary",
    pos_label: int = 1,
    zero_division: float = 0.0,
    sample_weight: Any = None,
) -> jax.Array:
    """Recall `tp / (tp + fn)`, equal to `sklearn.metrics.recall_score`.

    Per class `c`: `tp_c / true_c`, where `true_c` (the support) counts samples of
    true class `c`; averaged as `average` says (see the module docstring).

    Args:
      y_true: integer class labels, any shape (*sweepable*).
      y_pred: labels, binary probabilities or scores (*sweepable*).
      num_classes: *static* Python int >= 2; 2 by default for "binary", required
        for the other averages when `y_pred` holds labels, read from scores otherwise.
      average: *static*, one of "binary", "macro", "micro", "weighted".
      pos_label: *static*, the positive class (0 or 1) for "binary"; ignored otherwise.
      zero_division: *static*, 0.0, 1.0 or nan: the score where `true_c == 0`.
      sample_weight: optional non-negative weights shaped like `y_true` (*sweepable*).

    Returns:
      A float scalar.

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> y_true, y_pred = jnp.array([0, 1, 2, 2]), jnp.array([0, 2, 2, 1])
      >>> round(float(jt.recall(y_true, y_pred, 3, average="macro")), 4)
      0.5
    """
    return _precision_recall_f1(
        "recall", y_true, y_pred, num_classes, average, pos_label, zero_division,
        sample_weight,
    )


def f1(
    y_true: Any,
    y_pred: Any,
    num_classes: int | None = None,
    *,
    average: str = "binary",
    pos_label: int = 1,
    zero_division: float = 0.0,
    sample_weight: Any = None,
) -> jax.Array:
    """F1 score, the harmonic mean of precision and recall (`sklearn.metrics.f1_score`).

    Per class `c`: `2 tp_c / (pred_c + true_c)`, i.e. `2 tp / (2 tp + fp + fn)`,
    with `zero_division` where `pred_c + true_c == 0`; averaged as `average` says.

    Args:
      y_true: integer class labels, any shape (*sweepable*).
      y_pred: labels, binary probabilities or scores (*sweepable*).
      num_classes: *static* Python int >= 2; 2 by default for "binary", required
        for the other averages when `y_pred` holds labels, read from scores otherwise.
      average: *static*, one of "binary", "macro", "micro", "weighted".
      pos_label: *static*, the positive class (0 or 1) for "binary"; ignored otherwise.
      zero_division: *static*, 0.0, 1.0 or nan: the score where the class is
        neither present nor predicted.
      sample_weight: optional non-negative weights shaped like `y_true` (*sweepable*).

    Returns:
      A float scalar.

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> y_true, y_pred = jnp.array([0, 1, 2, 2]), jnp.array([0, 2, 2, 1])
      >>> round(float(jt.f1(y_true, y_pred, 3, average="macro")), 4)
      0.5
    """
    return _precision_recall_f1(
        "f1", y_true, y_pred, num_classes, average, pos_label, zero_division, sample_weight
    )


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    num_classes: int | None = None,
    *,
    metrics: Sequence[str] = ("accuracy", "f1_macro"),
    pos_label: int = 1,
    zero_division: float = 0.0,
    sample_weight: Any = None,
) -> dict[str, jax.Array]:
    """Several metrics at once from one pass of counting, as a dict (handy in `eval_fn`).

    Names are "accuracy" and "<score>_<average>" with score in precision, recall,
    f1 and average in binary, macro, micro, weighted (e.g. "f1_macro",
    "recall_weighted"); each value equals the matching function above.

    Args:
      y_true: integer class labels, any shape (*sweepable*).
      y_pred: labels, binary probabilities or scores (*sweepable*).
      num_classes: *static* Python int >= 2, as for `f1`.
      metrics: *static*, a sequence of metric names.
      pos_label: *static*, the positive class for the "*_binary" metrics.
      zero_division: *static*, 0.0, 1.0 or nan.
      sample_weight: optional non-negative weights shaped like `y_true` (*sweepable*).

    Returns:
      A dict from each requested name to a float scalar.

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> logits = jnp.array([[2.0, 0.1, 0.0], [0.0, 0.3, 1.0], [0.0, 0.0, 3.0]])
      >>> out = jt.classification_metrics(jnp.array([0, 1, 2]), logits)
      >>> {name: round(float(value), 4) for name, value in out.items()}
      {'accuracy': 0.6667, 'f1_macro': 0.5556}
    """
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(
            f"`metrics` must be a sequence of metric names, got {metrics!r}; "
            f"for one metric write metrics=({metrics!r},)."
        )
    unknown = [name for name in metrics if name not in METRIC_NAMES]
    if unknown or not metrics:
        got = f"got unknown names {unknown}" if unknown else "got an empty sequence"
        raise ValueError(
            f"`metrics` must name one or more of {', '.join(METRIC_NAMES)}; {got}."
        )
    zero_division = _check_zero_division(zero_division)
    averages = {name.rsplit("_", 1)[1] for name in metrics if name != "accuracy"}
    if "binary" in averages:
        pos_label = _check_pos_label(pos_label)
    y_true, y_pred, num_classes, sample_weight = _prepare(
        y_true, y_pred, num_classes, sample_weight,
        default_classes=2 if "binary" in averages else None,
    )
    if "binary" in averages:
        _binary_classes(num_classes)
    counts = None
    if averages:
        num_classes = _need_classes(num_classes, f"{sorted(averages)} averages")
        counts = _class_counts(y_true, y_pred, num_classes, sample_weight)
    results = {}
    for name in metrics:
        if name == "accuracy":
            results[name] = _accuracy(y_true, y_pred, sample_weight)
        else:
            score, average = name.rsplit("_", 1)
            results[name] = _score(score, counts, average, pos_label, zero_division)
    return results
