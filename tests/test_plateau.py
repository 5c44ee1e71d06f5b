"""`jt.PlateauDecay`: a hyperparameter decayed when a member's recorded metric stalls."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import interrupting

import jaxtune as jt

RNG = np.random.default_rng(4)
X = RNG.normal(size=(128, 4)).astype(np.float32)
Y = (X @ RNG.normal(size=(4, 1)) + 0.3 * RNG.normal(size=(128, 1))).astype(np.float32)
X_VALID = RNG.normal(size=(64, 4)).astype(np.float32)
Y_VALID = (X_VALID @ RNG.normal(size=(4, 1))).astype(np.float32)  # another line: it stalls


def loss_fn(w, batch):
    return jnp.mean((batch[0] @ w - batch[1]) ** 2)


def sgd(learning_rate):
    return optax.sgd(learning_rate, momentum=0.5)


def run(strategy, **kwargs):
    return jt.sweep(loss_fn, jnp.zeros((4, 1)), sgd,
                    jt.Space(learning_rate=jt.choice([0.01, 0.1, 0.5])), data=(X, Y),
                    batch_size=16, steps=80, eval_every=5, eval_data=(X_VALID, Y_VALID),
                    seeds=2, progress=False, strategy=strategy, **kwargs)


def replay(curve, start, factor, patience, rtol, cooldown):
    """The rule, written out plainly: the value in force during each record's chunk."""
    value, best, count, cooling, history = float(start), math.inf, 0, 0, []
    for metric in curve:
        history.append(value)
        if cooling:
            cooling -= 1
        elif math.isfinite(metric) and (best == math.inf or metric < best - rtol * abs(best)):
            best, count = metric, 0
        else:
            count += 1
            if count >= patience:
                value, count, cooling = float(np.float32(value * factor)), 0, cooldown
    return np.asarray(history, np.float32)


@pytest.mark.parametrize("patience, cooldown", [(1, 0), (2, 1)])
def test_each_member_follows_the_rule_replayed_on_its_recorded_curve(patience, cooldown):
    result = run(jt.PlateauDecay(factor=0.5, patience=patience, rtol=0.01, cooldown=cooldown))
    history = result.hparam_history["learning_rate"]
    curve = result.metrics["eval_loss"]
    for member in range(result.n_members):
        expected = replay(curve[member], result.hparams["learning_rate"][member], 0.5, patience,
                          0.01, cooldown)
        np.testing.assert_array_equal(history[member], expected)
    decayed = history[:, -1] < history[:, 0]
    assert decayed.any() and (result.status == "completed").all()


def test_a_metric_to_maximize_and_a_floor():
    result = run(jt.PlateauDecay(factor=0.1, patience=1, min_value=1e-3, metric="neg",
                                 mode="max"),
                 eval_fn=lambda w, data: {"neg": -loss_fn(w, data)}, mode="max")
    history = result.hparam_history["learning_rate"]
    assert history.min() == np.float32(1e-3)  # 0.01 -> 0.001, then held there
    for member in range(result.n_members):
        expected = replay(-result.metrics["neg"][member], history[member, 0], 0.1, 1, 1e-4, 0)
        np.testing.assert_array_equal(history[member], np.maximum(expected, np.float32(1e-3)))


InterruptedPlateau = interrupting(jt.PlateauDecay)


def test_a_resumed_sweep_decays_as_the_uninterrupted_one(tmp_path):
    settings = dict(factor=0.5, patience=2, rtol=0.01, cooldown=1)
    uninterrupted = run(InterruptedPlateau(0, **settings))
    with pytest.raises(jt.SweepInterrupted):
        run(InterruptedPlateau(7, **settings), checkpoint_dir=tmp_path)
    resumed = run(InterruptedPlateau(0, **settings), checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(resumed.hparam_history["learning_rate"],
                                  uninterrupted.hparam_history["learning_rate"])
    np.testing.assert_array_equal(resumed.metrics["eval_loss"], uninterrupted.metrics["eval_loss"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(factor=0.0), r"`factor` must lie in \(0.0, 1.0\]"),
    (dict(factor=1.5), r"`factor` must lie in"),
    (dict(patience=-1), r"`patience`"),
    (dict(rtol=-0.1), r"`rtol` must lie in"),
    (dict(hparam=3), r"`hparam` must be a hyperparameter name"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        jt.PlateauDecay(**kwargs)


def test_the_hyperparameter_must_be_swept_and_dynamic():
    with pytest.raises(ValueError, match=r"`hparam`='momentum' is not a dynamic hyperparameter"):
        run(jt.PlateauDecay("momentum"))
    with pytest.raises(ValueError, match=r"PlateauDecay: `metric`='accuracy' is not recorded"):
        run(jt.PlateauDecay(metric="accuracy"))
