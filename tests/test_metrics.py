"""Metrics: parity with scikit-learn, jit/vmap, input conventions and errors."""

import functools
import math

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxtune as jt
import jaxtune.metrics

SCORES = {"precision": jt.precision, "recall": jt.recall, "f1": jt.f1}
SKLEARN = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
NUM_SEEDS = 40
N, K = 25, 5


def _labels(rng, n, num_classes, low=0, high=None):
    """Labels drawn from a random subset of classes, so some classes are often absent."""
    high = num_classes if high is None else high
    pool = np.arange(low, high)
    subset = rng.choice(pool, size=rng.integers(1, pool.size + 1), replace=False)
    return rng.choice(subset, size=n).astype(np.int32)


def _batch(seed0, n, num_classes, low=0, high=None):
    rng = np.random.default_rng(seed0)
    y_true = np.stack([_labels(rng, n, num_classes, low, high) for _ in range(NUM_SEEDS)])
    y_pred = np.stack([_labels(rng, n, num_classes, low, high) for _ in range(NUM_SEEDS)])
    return y_true, y_pred


def _sklearn(score, y_true, y_pred, **kwargs):
    return SKLEARN[score](y_true, y_pred, **kwargs)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, math.nan])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("score", list(SCORES))
def test_multiclass_parity_jit_and_vmap(score, average, zero_division):
    y_true, y_pred = _batch(1, N, K)
    fn = functools.partial(
        SCORES[score], num_classes=K, average=average, zero_division=zero_division
    )
    jitted = jax.jit(fn)
    rows = []
    for t, p in zip(y_true, y_pred):
        expected = _sklearn(score, t, p, labels=list(range(K)), average=average,
                            zero_division=zero_division)
        got = jitted(jnp.asarray(t), jnp.asarray(p))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        rows.append(got)
    batched = jax.jit(jax.vmap(fn))(jnp.asarray(y_true), jnp.asarray(y_pred))
    assert batched.shape == (NUM_SEEDS,)
    np.testing.assert_allclose(batched, np.stack(rows), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, math.nan])
@pytest.mark.parametrize("pos_label", [0, 1])
@pytest.mark.parametrize("score", list(SCORES))
def test_binary_parity(score, pos_label, zero_division):
    y_true, y_pred = _batch(2, 12, 2)
    jitted = jax.jit(functools.partial(
        SCORES[score], pos_label=pos_label, zero_division=zero_division
    ))
    zero_division_seen = False
    for t, p in zip(y_true, y_pred):
        expected = _sklearn(score, t, p, average="binary", pos_label=pos_label,
                            zero_division=zero_division)
        zero_division_seen |= not np.any(p == pos_label) or not np.any(t == pos_label)
        np.testing.assert_allclose(jitted(t, p), expected, rtol=1e-6)
    assert zero_division_seen  # the seeds exercise the zero-denominator branch


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_out_of_range_labels_match_sklearn_with_labels(average):
    # Labels in [-1, K] with K classes: -1 and K belong to no class.
    y_true, y_pred = _batch(3, N, K, low=-1, high=K + 1)
    assert np.any(y_true == -1) and np.any(y_pred == K)
    for score in SCORES:
        fn = jax.jit(functools.partial(SCORES[score], num_classes=K, average=average))
        for t, p in zip(y_true[:10], y_pred[:10]):
            expected = _sklearn(score, t, p, labels=list(range(K)), average=average,
                                zero_division=0.0)
            np.testing.assert_allclose(fn(t, p), expected, rtol=1e-6, atol=1e-7)


def test_confusion_matrix_parity():
    y_true, y_pred = _batch(4, N, K, low=-1, high=K + 1)
    cm = jax.jit(functools.partial(jt.confusion_matrix, num_classes=K))
    batched = jax.vmap(cm)(y_true, y_pred)
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if np.any((t >= 0) & (t < K)):
            expected = skm.confusion_matrix(t, p, labels=list(range(K)))
        else:  # sklearn refuses y_true without any listed label; nothing is counted.
            expected = np.zeros((K, K), int)
        got = cm(t, p)
        assert got.dtype == jnp.int32 and got.shape == (K, K)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(batched[i], expected)


def test_accuracy_parity_labels_logits_and_probabilities():
    rng = np.random.default_rng(5)
    jitted = jax.jit(jt.accuracy)
    for _ in range(NUM_SEEDS):
        t = rng.integers(0, K, size=N)
        logits = rng.normal(size=(N, K)).astype(np.float32)
        expected = skm.accuracy_score(t, logits.argmax(-1))
        np.testing.assert_allclose(jitted(t, logits.argmax(-1)), expected, rtol=1e-6)
        np.testing.assert_allclose(jitted(t, logits), expected, rtol=1e-6)
        binary = rng.integers(0, 2, size=N)
        probs = rng.uniform(size=N).astype(np.float32)
        np.testing.assert_allclose(
            jitted(binary, probs), skm.accuracy_score(binary, probs > 0.5), rtol=1e-6
        )


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_logits_infer_num_classes(average):
    rng = np.random.default_rng(6)
    for _ in range(10):
        t = rng.integers(0, K, size=N)
        logits = rng.normal(size=(N, K)).astype(np.float32)
        for score in SCORES:
            expected = _sklearn(score, t, logits.argmax(-1), labels=list(range(K)),
                                average=average, zero_division=0.0)
            got = SCORES[score](t, logits, average=average)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
            # Passing the matching num_classes explicitly is also accepted.
            got = SCORES[score](t, logits, K, average=average)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_logit_ties_go_to_lower_class():
    logits = jnp.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    np.testing.assert_array_equal(
        jt.confusion_matrix(jnp.array([0, 1]), logits), [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    )


@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_probabilities_threshold_at_half(pos_label):
    rng = np.random.default_rng(7)
    t = rng.integers(0, 2, size=40)
    probs = rng.uniform(size=40).astype(np.float32)
    probs[:3] = 0.5  # exactly one half predicts label 0
    hard = (probs > 0.5).astype(int)
    assert hard[:3].tolist() == [0, 0, 0]
    for score in SCORES:
        expected = _sklearn(score, t, hard, pos_label=pos_label)
        np.testing.assert_allclose(SCORES[score](t, probs, pos_label=pos_label), expected,
                                   rtol=1e-6)
    # Two-class scores give the same as their class-1 probability.
    two = np.stack([1 - probs, probs], axis=-1)
    two[:3] = [0.5, 0.5]
    np.testing.assert_allclose(jt.f1(t, two, pos_label=pos_label),
                               _sklearn("f1", t, hard, pos_label=pos_label), rtol=1e-6)
    np.testing.assert_array_equal(jt.confusion_matrix(t, probs),
                                  skm.confusion_matrix(t, hard, labels=[0, 1]))


@pytest.mark.parametrize("average", ["binary", "macro", "micro", "weighted"])
def test_sample_weight_parity(average):
    rng = np.random.default_rng(8)
    num_classes = 2 if average == "binary" else K
    for _ in range(10):
        t = _labels(rng, N, num_classes)
        p = _labels(rng, N, num_classes)
        w = rng.uniform(size=N).astype(np.float32)
        w[rng.uniform(size=N) < 0.3] = 0.0
        for score in SCORES:
            expected = _sklearn(score, t, p, labels=list(range(num_classes)), average=average,
                                sample_weight=w, zero_division=0.0)
            got = SCORES[score](t, p, num_classes, average=average, sample_weight=w)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jt.accuracy(t, p, sample_weight=w),
                                   skm.accuracy_score(t, p, sample_weight=w), rtol=1e-5)
        np.testing.assert_allclose(
            jt.confusion_matrix(t, p, num_classes, sample_weight=w),
            skm.confusion_matrix(t, p, labels=list(range(num_classes)), sample_weight=w),
            rtol=1e-5, atol=1e-6,
        )


def test_weighted_average_falls_back_when_no_class_has_support():
    # All true labels out of range: every support is 0, sklearn averages unweighted.
    # Class 2 is never predicted, so with zero_division=1 the plain mean is 1/3.
    t = np.array([7, 7, 7, 7])
    p = np.array([0, 1, 1, 0])
    for zero_division in (0.0, 1.0, math.nan):
        expected = skm.precision_score(t, p, labels=[0, 1, 2], average="weighted",
                                       zero_division=zero_division)
        if zero_division == 1.0:
            assert expected == pytest.approx(1 / 3)
        got = jt.precision(t, p, 3, average="weighted", zero_division=zero_division)
        np.testing.assert_allclose(got, expected)


def test_all_nan_macro_is_nan_like_sklearn():
    t = np.array([3, 3])
    p = np.array([3, 3])
    expected = skm.recall_score(t, p, labels=[0, 1], average="macro", zero_division=math.nan)
    assert math.isnan(expected)
    assert math.isnan(float(jt.recall(t, p, 2, average="macro", zero_division=math.nan)))


@settings(max_examples=40, deadline=None)
@given(
    data=st.integers(1, 30).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.int32, n, elements=st.integers(0, 3)),
            hnp.arrays(np.int32, n, elements=st.integers(0, 3)),
        )
    ),
    average=st.sampled_from(["macro", "micro", "weighted"]),
    zero_division=st.sampled_from([0.0, 1.0, math.nan]),
)
def test_property_parity_any_length(data, average, zero_division):
    t, p = data
    for score in SCORES:
        expected = _sklearn(score, t, p, labels=[0, 1, 2, 3], average=average,
                            zero_division=zero_division)
        got = SCORES[score](t, p, 4, average=average, zero_division=zero_division)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_all_axes_are_samples():
    y_true, y_pred = _batch(9, N, K)
    got = jt.f1(y_true, y_pred, K, average="macro")
    expected = skm.f1_score(y_true.ravel(), y_pred.ravel(), labels=list(range(K)),
                            average="macro", zero_division=0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_array_equal(
        jt.confusion_matrix(y_true, y_pred, K),
        skm.confusion_matrix(y_true.ravel(), y_pred.ravel(), labels=list(range(K))),
    )


def test_new_label_values_do_not_retrace():
    y_true, y_pred = _batch(10, N, K)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def macro_f1(t, p):
        return jt.f1(t, p, K, average="macro")

    for t, p in zip(y_true[:5], y_pred[:5]):
        macro_f1(jnp.asarray(t), jnp.asarray(p))


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(11)
    t = rng.integers(0, K, size=N)
    logits = rng.normal(size=(N, K)).astype(np.float32)
    hard = logits.argmax(-1)
    names = [n for n in jaxtune.metrics.METRIC_NAMES if not n.endswith("binary")]
    out = jax.jit(functools.partial(jt.classification_metrics, metrics=names))(t, logits)
    assert sorted(out) == sorted(names)
    np.testing.assert_allclose(out["accuracy"], skm.accuracy_score(t, hard), rtol=1e-6)
    for name in names[1:]:
        score, average = name.rsplit("_", 1)
        expected = _sklearn(score, t, hard, labels=list(range(K)), average=average,
                            zero_division=0.0)
        np.testing.assert_allclose(out[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
    # Binary names with labels default to two classes.
    b_true, b_pred = rng.integers(0, 2, size=N), rng.integers(0, 2, size=N)
    out = jt.classification_metrics(b_true, b_pred, metrics=("f1_binary", "recall_macro"),
                                    pos_label=0)
    np.testing.assert_allclose(out["f1_binary"], skm.f1_score(b_true, b_pred, pos_label=0))
    np.testing.assert_allclose(out["recall_macro"],
                               skm.recall_score(b_true, b_pred, average="macro"), rtol=1e-6)



# ----------------------------------------------------------------------------- errors

T = jnp.array([0, 1, 1, 0])
P = jnp.array([0, 1, 0, 0])


def test_unknown_average_lists_valid_ones():
    with pytest.raises(ValueError, match=r"`average` must be one of 'binary', 'macro', "
                                         r"'micro', 'weighted', got average='samples'"):
        jt.f1(T, P, 2, average="samples")
    with pytest.raises(ValueError, match="got average=None"):
        jt.precision(T, P, 2, average=None)


@pytest.mark.parametrize("bad", [1, 0, -3])
def test_num_classes_too_small(bad):
    with pytest.raises(ValueError, match=rf"`num_classes` must be an integer >= 2, "
                                         rf"got num_classes={bad}"):
        jt.recall(T, P, bad, average="macro")


@pytest.mark.parametrize("bad", [2.0, True, "2", jnp.array(2)])
def test_num_classes_wrong_kind(bad):
    with pytest.raises(TypeError, match="`num_classes` must be a Python int"):
        jt.confusion_matrix(T, P, bad)


def test_num_classes_traced_is_rejected():
    with pytest.raises(TypeError, match="`num_classes` must be a Python int"):
        jax.jit(lambda k: jt.f1(T, P, k, average="macro"))(3)


def test_shape_mismatch_prints_both_shapes():
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\) and y_pred.shape=\(3,\)"):
        jt.accuracy(T, jnp.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\) and y_pred.shape=\(5, 3\)"):
        jt.f1(T, jnp.zeros((5, 3)), average="macro")


def test_labels_need_num_classes_for_multiclass_averages():
    with pytest.raises(ValueError, match=r"`num_classes` is required for average='macro'"):
        jt.f1(T, P, average="macro")
    with pytest.raises(ValueError, match=r"`num_classes` is required for `confusion_matrix`"):
        jt.confusion_matrix(T, P)
    with pytest.raises(ValueError, match=r"`num_classes` is required"):
        jt.classification_metrics(T, P, metrics=("f1_weighted",))


def test_logits_num_classes_mismatch():
    with pytest.raises(ValueError, match=r"`num_classes`=4 does not match the trailing class "
                                         r"axis of `y_pred` \(shape \(4, 3\)\)"):
        jt.f1(T, jnp.zeros((4, 3)), 4, average="macro")


def test_single_score_column_is_rejected():
    with pytest.raises(ValueError, match=r"trailing class axis of size >= 2, got "
                                         r"y_pred.shape=\(4, 1\).*sigmoid"):
        jt.accuracy(T, jnp.zeros((4, 1)))


def test_binary_needs_two_classes():
    with pytest.raises(ValueError, match=r"average='binary' needs a two-class task, got "
                                         r"num_classes=3; use average='macro'"):
        jt.f1(T, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="num_classes=5"):
        jt.precision(T, P, 5)
    with pytest.raises(ValueError, match="average='binary' needs a two-class task"):
        jt.classification_metrics(T, jnp.zeros((4, 3)), metrics=("f1_binary",))


def test_probabilities_with_more_classes():
    with pytest.raises(ValueError, match=r"read as probabilities of label 1 in a binary "
                                         r"task, but num_classes=3"):
        jt.f1(T, jnp.full((4,), 0.7), 3, average="macro")


def test_float_y_true_is_rejected():
    with pytest.raises(TypeError, match=r"`y_true` must hold integer \(or bool\) class "
                                        r"labels, got dtype float32"):
        jt.accuracy(T.astype(jnp.float32), P)


def test_non_numeric_inputs():
    with pytest.raises(TypeError, match=r"`y_pred` must be a numeric array, got str"):
        jt.accuracy(T, "abc")
    with pytest.raises(TypeError, match=r"`y_true` must be a numeric array, got NoneType"):
        jt.accuracy(None, P)
    with pytest.raises(TypeError, match=r"`y_pred` must hold integer labels or real "
                                        r"scores, got dtype complex64"):
        jt.accuracy(T, P.astype(jnp.complex64))


def test_empty_input():
    with pytest.raises(ValueError, match=r"`y_true` is empty \(shape \(0,\)\)"):
        jt.accuracy(jnp.zeros((0,), jnp.int32), jnp.zeros((0,), jnp.int32))


@pytest.mark.parametrize("bad", ["warn", 0.5, True, None])
def test_bad_zero_division(bad):
    with pytest.raises(ValueError, match=r"`zero_division` must be 0.0, 1.0 or nan"):
        jt.recall(T, P, zero_division=bad)
    with pytest.raises(ValueError, match=r"`zero_division` must be 0.0, 1.0 or nan"):
        jt.classification_metrics(T, P, 2, zero_division=bad)


def test_bad_pos_label():
    with pytest.raises(ValueError, match=r"`pos_label` must be 0 or 1 for average='binary', "
                                         r"got pos_label=2"):
        jt.f1(T, P, pos_label=2)
    with pytest.raises(TypeError, match=r"`pos_label` must be the Python int 0 or 1, got str"):
        jt.precision(T, P, pos_label="1")
    # Ignored (as in scikit-learn) for other averages.
    np.testing.assert_allclose(jt.f1(T, P, 2, average="macro", pos_label=7),
                               skm.f1_score(T, P, average="macro"), rtol=1e-6)


def test_bad_sample_weight():
    with pytest.raises(ValueError, match=r"sample_weight.shape=\(3,\) and y_true.shape=\(4,\)"):
        jt.accuracy(T, P, sample_weight=jnp.ones(3))
    with pytest.raises(ValueError, match=r"`sample_weight` must be non-negative"):
        jt.f1(T, P, sample_weight=jnp.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"`sample_weight` must be finite"):
        jt.confusion_matrix(T, P, 2, sample_weight=jnp.array([1.0, jnp.nan, 1.0, 1.0]))


def test_bad_metric_names():
    with pytest.raises(ValueError, match=r"got unknown names \['f2_macro'\]"):
        jt.classification_metrics(T, P, 2, metrics=("accuracy", "f2_macro"))
    with pytest.raises(ValueError, match=r"got an empty sequence"):
        jt.classification_metrics(T, P, 2, metrics=())
    with pytest.raises(TypeError, match=r"for one metric write metrics=\('accuracy',\)"):
        jt.classification_metrics(T, P, 2, metrics="accuracy")
