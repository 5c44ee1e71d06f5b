"""The own-loop layer: a population loop equals the single-model loop, member by member."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rounding

import jaxtune as jt

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1).astype(np.float32)
HPARAMS = {"learning_rate": np.array([1e-3, 1e-2, 5e-2], np.float32),
           "weight_decay": np.array([0.0, 1e-2, 1e-1], np.float32)}
PARAMS = {"w": jnp.zeros((3, 1)), "b": jnp.zeros(1)}


def loss_fn(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def make_optimizer(learning_rate, weight_decay):
    schedule = jt.warmup_cosine_decay_schedule(0.0, learning_rate, 5, 20)
    return optax.adamw(schedule, weight_decay=weight_decay)


def batch(step):
    rows = np.arange(step * 8, step * 8 + 8) % X.shape[0]
    return X[rows], Y[rows]


def single_model(i):
    optimizer = make_optimizer(**{k: float(v[i]) for k, v in HPARAMS.items()})
    params, opt_state = PARAMS, optimizer.init(PARAMS)
    for step in range(20):
        grads = jax.grad(loss_fn)(params, batch(step))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_population_loop_equals_the_single_model_loop():
    params, opt_state = jt.init_population(make_optimizer, PARAMS, HPARAMS)
    grad_fn = jax.vmap(jax.grad(loss_fn), in_axes=(0, None))
    for step in range(20):
        grads = grad_fn(params, batch(step))
        updates, opt_state = jt.update_population(make_optimizer, grads, opt_state, params,
                                                  HPARAMS)
        params = optax.apply_updates(params, updates)
    for i in range(3):
        for got, want in zip(jax.tree_util.tree_leaves(jt.get_member(params, i)),
                             jax.tree_util.tree_leaves(single_model(i))):
            np.testing.assert_allclose(got, want, **rounding(20))


def test_step_population_equals_the_single_model_loop():
    params, opt_state = jt.init_population(make_optimizer, PARAMS, HPARAMS)
    for step in range(20):
        params, opt_state, losses = jt.step_population(loss_fn, make_optimizer, params,
                                                       opt_state, HPARAMS, batch(step))
    assert losses.shape == (3,)
    for got, want in zip(jax.tree_util.tree_leaves(jt.get_member(params, 2)),
                         jax.tree_util.tree_leaves(single_model(2))):
        np.testing.assert_allclose(got, want, **rounding(20))


def test_set_member_copies_one_member_into_another():
    params, opt_state = jt.init_population(make_optimizer, PARAMS, HPARAMS)
    params, opt_state, _ = jt.step_population(loss_fn, make_optimizer, params, opt_state,
                                              HPARAMS, batch(0))
    copied = jt.set_member(params, 0, jt.get_member(params, 2))
    np.testing.assert_array_equal(copied["w"][0], params["w"][2])
    np.testing.assert_array_equal(copied["w"][1], params["w"][1])


def test_hparams_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="`hparams` must map each hyperparameter name to a 1-D"):
        jt.init_population(make_optimizer, PARAMS, {"learning_rate": np.ones(2),
                                                    "weight_decay": np.ones(3)})
