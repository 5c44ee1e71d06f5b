"""Hypergradients through training (`jaxtune.hypergradient`) and the `HyperGradient` strategy.

The workload is ridge regression trained by full-batch gradient descent from zero, whose
weights after T steps are known in closed form, w_T = (I - (I - eta A)^T) A^-1 b with
A = X'X/n + lambda I and b = X'y/n; the reference derivatives are central finite
differences of that formula in float64, so float32 training is checked against exact
arithmetic. The design is orthogonal (X'X/n = diag(A_DIAG)) and the training targets
carry a planted error, b = A0 (w_true + c), so the validation loss (noise-free targets)
has an interior optimum in lambda.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
from conftest import rounding

import jaxtune as jt
from jaxtune.hypergradient import hypergradient, scales_of
from jaxtune.strategies.hypergradient import HyperGradient

A_DIAG = np.array([0.6, 0.8, 1.0, 1.3])
W_TRUE = np.array([1.0, -1.0, 0.5, -0.5])
PLANTED = np.array([0.4, -0.3, 0.3, -0.2])
N, D = 64, 4


def _ridge_data():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(N, D + 1)))
    x = q[:, :D] * np.sqrt(N * A_DIAG)
    residual = q[:, D] * 0.5 * np.sqrt(N)  # orthogonal to the columns: b is unchanged
    y = x @ (W_TRUE + PLANTED) + residual
    xv, _ = np.linalg.qr(rng.normal(size=(128, D)))
    xv = xv * np.sqrt(128)  # Xv'Xv / n = I
    return (x.astype(np.float32), y.astype(np.float32),
            xv.astype(np.float32), (xv @ W_TRUE).astype(np.float32))


X, Y, XV, YV = _ridge_data()


def loss_fn(w, batch, ridge):
    x, y = batch
    return 0.5 * jnp.mean((x @ w - y) ** 2) + 0.5 * ridge * jnp.sum(w ** 2)


def val_loss(w, data):
    x, y = data
    return 0.5 * jnp.mean((x @ w - y) ** 2)


def make_optimizer(learning_rate):
    return optax.sgd(learning_rate)


def _closed_form(log_lr, log_ridge, steps):
    """float64 validation loss after `steps` of GD from zero."""
    x, y, xv, yv = (a.astype(np.float64) for a in (X, Y, XV, YV))
    a = x.T @ x / N + np.exp(log_ridge) * np.eye(D)
    b = x.T @ y / N
    contraction = np.linalg.matrix_power(np.eye(D) - np.exp(log_lr) * a, steps)
    w = (np.eye(D) - contraction) @ np.linalg.solve(a, b)
    return 0.5 * np.mean((xv @ w - yv) ** 2)


def _finite_differences(lr, ridge, steps, h=1e-4):
    """Central differences of the closed form in log learning rate and log ridge."""
    f = lambda u, v: _closed_form(u, v, steps)
    u, v = np.log(np.float64(lr)), np.log(np.float64(ridge))
    return {"learning_rate": (f(u + h, v) - f(u - h, v)) / (2 * h),
            "ridge": (f(u, v + h) - f(u, v - h)) / (2 * h)}


HPARAMS = {"learning_rate": np.array([0.05, 0.1, 0.08, 0.03], np.float32),
           "ridge": np.array([0.02, 0.1, 1.0, 0.3], np.float32)}
STEPS = 30
SCALE = {"learning_rate": "log", "ridge": "log"}


def _own_loop(mode="forward", window=None, steps=STEPS, params=None, opt_state=None):
    if params is None:
        params, opt_state = jt.init_population(make_optimizer, jnp.zeros(D), HPARAMS)
    batches = (np.stack([X] * steps), np.stack([Y] * steps))
    return hypergradient(loss_fn, make_optimizer, params, opt_state, HPARAMS, batches, val_loss,
                         (XV, YV), scale=SCALE, mode=mode, window=window)


def _relative_errors(grads):
    errors = []
    for member in range(4):
        exact = _finite_differences(HPARAMS["learning_rate"][member],
                                    HPARAMS["ridge"][member], STEPS)
        for name, value in exact.items():
            errors.append(abs(float(grads[name][member]) - value) / abs(value))
    return np.array(errors)


def test_forward_mode_equals_finite_differences_of_the_closed_form():
    out = _own_loop()
    assert out.losses.shape == (4, STEPS)
    values = [_closed_form(np.log(np.float64(lr)), np.log(np.float64(r)), STEPS)
              for lr, r in zip(*HPARAMS.values())]
    np.testing.assert_allclose(out.value, values, rtol=1e-4)
    assert _relative_errors(out.grads).max() <= 1e-3


def test_reverse_mode_agrees_with_forward_mode():
    forward, reverse = _own_loop(), _own_loop("reverse")
    for name in SCALE:
        np.testing.assert_allclose(reverse.grads[name], forward.grads[name], **rounding(STEPS))
    np.testing.assert_allclose(reverse.params, forward.params, **rounding(STEPS))


def test_a_truncated_window_differentiates_the_last_steps_only():
    window = 10
    head = _own_loop(steps=STEPS - window)
    tail = _own_loop(steps=window, params=head.params, opt_state=head.opt_state)
    truncated = _own_loop("reverse", window=window)
    for name in SCALE:
        np.testing.assert_allclose(truncated.grads[name], tail.grads[name], **rounding(STEPS))
    full = _own_loop()
    assert not np.allclose(truncated.grads["ridge"], full.grads["ridge"], rtol=1e-2)


def test_the_trainer_computes_the_same_hypergradients_and_trains_as_train_does():
    trainer = jt.Trainer(loss_fn, make_optimizer, init_params=jnp.zeros(D), data=(X, Y),
                         batch_size=N, eval_fn=val_loss, eval_data=(XV, YV))
    state = trainer.init(HPARAMS)
    plain, plain_losses = trainer.train(state, STEPS)
    trained, losses, _, grads = trainer.train_with_hypergradients(
        state, STEPS, ("learning_rate", "ridge"), "val_loss", scale=SCALE)
    assert _relative_errors(grads).max() <= 1e-3
    np.testing.assert_allclose(losses, plain_losses, **rounding(STEPS))
    np.testing.assert_allclose(trained.params, plain.params, **rounding(STEPS))
    np.testing.assert_array_equal(trained.hparams["ridge"], HPARAMS["ridge"])


def test_functions_receive_the_hyperparameters_the_engine_routes_to_them():
    # A loss with **kwargs gets only what it names, an optimizer with **kwargs all of them,
    # as the engine routes them (`jaxtune._routing`): the same as the Trainer's.
    received = {}

    def loss_with_kwargs(w, batch, ridge, **kwargs):
        received["loss"] = sorted(kwargs)
        return loss_fn(w, batch, ridge)

    def optimizer_with_kwargs(**kwargs):
        received["optimizer"] = sorted(kwargs)
        return make_optimizer(kwargs["learning_rate"])

    params, opt_state = jt.init_population(make_optimizer, jnp.zeros(D), HPARAMS)
    batches = (np.stack([X] * 3), np.stack([Y] * 3))
    with_kwargs = hypergradient(loss_with_kwargs, optimizer_with_kwargs, params, opt_state,
                                HPARAMS, batches, val_loss, (XV, YV), scale=SCALE)
    plain = hypergradient(loss_fn, make_optimizer, params, opt_state, HPARAMS, batches,
                          val_loss, (XV, YV), scale=SCALE)
    assert received == {"loss": [], "optimizer": ["learning_rate", "ridge"]}
    for name in HPARAMS:
        np.testing.assert_array_equal(with_kwargs.grads[name], plain.grads[name])


def test_bad_arguments_are_refused_naming_them():
    params, opt_state = jt.init_population(make_optimizer, jnp.zeros(D), HPARAMS)
    batches = (X[None], Y[None])
    call = lambda **kw: hypergradient(loss_fn, make_optimizer, params, opt_state,
                                      HPARAMS, batches, val_loss, (XV, YV), **kw)
    with pytest.raises(ValueError, match="`names` holds 'momentum'"):
        call(names=("momentum",))
    with pytest.raises(ValueError, match=r"`scale\['ridge'\]` must be 'log' or 'linear'"):
        call(scale={"ridge": "exp"})
    with pytest.raises(ValueError, match="`window` truncates reverse mode only"):
        call(window=3)
    space = jt.Space(lr=jt.loguniform(1e-3, 1), width=jt.choice([8, 16]), m=jt.uniform(0, 1))
    assert scales_of(space) == {"lr": "log", "m": "linear"}
    with pytest.raises(ValueError, match="'width' is a discrete dimension"):
        scales_of(space, ["width"])


def _optimum():
    """The ridge penalty minimising the validation loss of the converged weights (float64)."""
    result = scipy.optimize.minimize_scalar(lambda v: _closed_form(np.log(0.5), v, 10_000),
                                            bounds=(np.log(1e-2), np.log(3.0)), method="bounded",
                                            options={"xatol": 1e-8})
    return float(np.exp(result.x))


def test_the_strategy_moves_the_ridge_penalty_to_its_optimum():
    optimum = _optimum()
    assert 0.05 < optimum < 1.0  # interior: the planted error makes shrinking pay
    space = jt.Space(ridge=jt.loguniform(1e-2, 3.0), learning_rate=jt.fixed(0.5))
    result = jt.sweep(loss_fn, jnp.zeros(D), make_optimizer, space, data=(X, Y), batch_size=N,
                      steps=400, eval_every=20, configs=[{"ridge": 0.02, "learning_rate": 0.5},
                                                 {"ridge": 2.0, "learning_rate": 0.5}],
                      eval_fn=val_loss, eval_data=(XV, YV), metric="val_loss", mode="min",
                      progress=False, strategy=HyperGradient(lr=5.0, every=20, max_step=1.0))
    history = result.hparam_history["ridge"]
    np.testing.assert_allclose(history[:, -1], optimum, rtol=0.05)
    moves = np.abs(np.diff(np.log(history), axis=1))
    assert moves.max() <= 1.0 + 1e-5 and moves.max() >= 0.99  # the bound on a step binds


def test_the_strategy_refuses_what_has_no_gradient():
    with pytest.raises(ValueError, match="`max_step` must be None or a positive number"):
        HyperGradient(lr=1.0, every=10, max_step=0)
    with pytest.raises(ValueError, match="`lr` must be a positive step size"):
        HyperGradient(lr=-1.0, every=10)
    space = jt.Space(ridge=jt.randint(0, 3), learning_rate=jt.fixed(0.5))
    with pytest.raises(ValueError, match="'ridge' is an integer dimension"):
        jt.sweep(loss_fn, jnp.zeros(D), make_optimizer, space, data=(X, Y), batch_size=N,
                 steps=20, eval_every=10, trials=2, eval_fn=val_loss, eval_data=(XV, YV),
                 progress=False, strategy=HyperGradient(lr=1.0, every=10, names=["ridge"]))
