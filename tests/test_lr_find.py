"""The learning-rate range test: growth, stopping, suggestions, schedules, spaces, errors."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rounding

import jaxtune as jt

X = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
DATA = (X, 2 * X + 0.1 * np.random.default_rng(0).standard_normal(X.shape).astype(np.float32))
# Plain SGD on this quadratic diverges above lr = 2 / (2 E[x^2]) ~ 3.


def loss_fn(w, batch):
    return jnp.mean((batch[0] @ w - batch[1]) ** 2)


def sgd(learning_rate):
    return optax.sgd(learning_rate)


def find(make_optimizer=sgd, **kwargs):
    options = {"data": DATA, "batch_size": 16, "min_lr": 1e-4, "max_lr": 100.0, "steps": 100,
               "seeds": 2, "members_per_slice": 2}
    options.update(kwargs)
    return jt.lr_find(loss_fn, jnp.zeros((1, 1)), make_optimizer, **options)


def test_rates_grow_exponentially_and_members_stop_past_divergence():
    found = find()
    np.testing.assert_allclose(found.learning_rates[[0, -1]], [1e-4, 100.0], rtol=1e-6)
    np.testing.assert_allclose(np.diff(np.log(found.learning_rates)), np.log(1e6) / 99, rtol=1e-6)
    # curves end before the rate passes the divergence limit by much, and stop early
    last = np.array([np.flatnonzero(np.isfinite(row)).max() for row in found.smoothed])
    assert (found.learning_rates[last] < 20).all() and (found.learning_rates[last] > 0.5).all()
    assert (found.sweep.steps_trained < 100).all()
    for rule in ("valley", "steepest", "minimum"):
        lr = found.suggestion(rule)
        assert 1e-3 < lr < 3.0, (rule, lr)
        assert found.spread[rule].shape == (1,)
    assert found.suggestion("minimum") < found.learning_rates[last].min()
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    ax = found.plot()
    assert any(abs(line.get_xdata()[0] - found.suggestion()) < 1e-12 for line in ax.lines
               if len(line.get_xdata()) == 2)


def test_a_jaxtune_schedule_has_its_peak_driven():
    plain = find()
    scheduled = find(lambda learning_rate: optax.sgd(jt.constant_schedule(learning_rate)))
    np.testing.assert_allclose(scheduled.loss, plain.loss, **rounding(100))


def test_one_curve_per_configuration_of_a_small_space():
    found = find(lambda learning_rate, momentum: optax.sgd(learning_rate, momentum=momentum),
                 space=jt.Space(momentum=jt.choice([0.0, 0.9])))
    assert found.n_trials == 2 and found.loss.shape == (4, 100)
    assert sorted(set(found.hparams["momentum"].tolist())) == [0.0, pytest.approx(0.9)]
    momentum = found.hparams["momentum"][found.trial == 1][0]
    heavy, light = (1, 0) if momentum > 0.5 else (0, 1)
    # momentum 0.9 multiplies the effective step by ~10: a smaller rate is suggested
    assert found.suggestion("valley", heavy) < found.suggestion("valley", light)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_lr": 1e-4}, ValueError, "`max_lr` must be greater than `min_lr`"),
    ({"min_lr": 0.0}, ValueError, "`min_lr` must be positive"),
    ({"stop_factor": 1.0}, ValueError, "`stop_factor` must be greater than 1"),
    ({"smoothing": 1.0}, ValueError, r"`smoothing` must lie in \[0, 1\)"),
    ({"learning_rate": "lr"}, ValueError, "`make_optimizer` has no argument 'lr'"),
    ({"space": jt.Space(learning_rate=jt.choice([0.1]))}, ValueError, "must not contain"),
    ({"space": jt.Space(momentum=jt.uniform(0.0, 0.9))}, TypeError, "jt.choice"),
])
def test_bad_input_is_rejected_before_compiling(kwargs, error, message, no_training):
    with pytest.raises(error, match=message):
        find(**kwargs)

