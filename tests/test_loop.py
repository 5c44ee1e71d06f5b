"""The own-loop layer: a population loop equals the single-model loop, member by member."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import test_model_state
from conftest import rounding
from flax import nnx

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


def nnx_batchnorm_model():
    """A Flax NNX model with BatchNorm: (graphdef, params, statistics) and its loss."""
    graphdef, params, stats = nnx.split(test_model_state.NnxNet(nnx.Rngs(0)), nnx.Param, nnx.BatchStat)

    def bn_loss(params, batch, *, model_state):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        x, y = batch
        loss = jnp.mean((model(x) - y) ** 2)
        return loss, (nnx.state(model, nnx.BatchStat), None)

    return params, stats, bn_loss, (jnp.asarray(test_model_state.X),
                                    jnp.asarray(test_model_state.Y))


def bn_optimizer(learning_rate):
    return optax.adamw(learning_rate, weight_decay=0.5)  # must never touch the statistics


def test_step_population_threads_the_model_state_as_sweep_does():
    params, stats, bn_loss, data = nnx_batchnorm_model()
    rates = np.array([0.01, 0.05], np.float32)
    result = jt.sweep(bn_loss, (params, stats), bn_optimizer,
                      jt.Space(learning_rate=jt.choice(rates.tolist())),
                      data=lambda key, step: data, steps=20, eval_every=10, progress=False,
                      devices=jax.devices()[:1])
    hparams = {"learning_rate": rates}
    population, opt_state, model_state = jt.init_population(bn_optimizer, params, hparams,
                                                            model_state=stats)
    for _ in range(20):
        population, opt_state, model_state, losses = jt.step_population(
            bn_loss, bn_optimizer, population, opt_state, hparams, data, model_state=model_state)
    assert losses.shape == (2,)
    order = [int(np.flatnonzero(result.hparams["learning_rate"] == rate)[0]) for rate in rates]
    for got, want in ((population, result.params), (model_state, result.model_state)):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want),
                        strict=True):
            np.testing.assert_allclose(a, np.asarray(b)[order], **rounding(20))
    moved = [not np.allclose(a[0], b) for a, b in zip(jax.tree_util.tree_leaves(model_state),
                                                      jax.tree_util.tree_leaves(stats))]
    assert any(moved), "the running statistics never moved"


def test_model_state_conventions_are_checked_in_the_own_loop():
    params, stats, bn_loss, data = nnx_batchnorm_model()
    hparams = {"learning_rate": np.array([0.01, 0.05], np.float32)}
    population, opt_state, model_state = jt.init_population(bn_optimizer, params, hparams,
                                                            model_state=stats)
    with pytest.raises(ValueError, match="`loss_fn` takes `model_state`; pass the stacked"):
        jt.step_population(bn_loss, bn_optimizer, population, opt_state, hparams, data)
    with pytest.raises(ValueError, match="`model_state` was given but `loss_fn` takes no"):
        jt.step_population(loss_fn, make_optimizer, *jt.init_population(
            make_optimizer, PARAMS, HPARAMS), HPARAMS, batch(0), model_state={"n": jnp.ones(3)})

    def no_state_returned(params, batch, *, model_state):
        return bn_loss(params, batch, model_state=model_state)[0]

    with pytest.raises(ValueError, match=r"must return `\(loss, \(new_model_state, metrics\)\)`"):
        jt.step_population(no_state_returned, bn_optimizer, population, opt_state, hparams,
                           data, model_state=model_state)
