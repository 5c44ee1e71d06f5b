"""Models as the libraries make them: only inexact arrays train, the rest is carried or refused."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxtune as jt

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 3)).astype(np.float32)
Y = np.sin(X.sum(axis=1, keepdims=True)).astype(np.float32)


def adamw(learning_rate):
    return optax.adamw(learning_rate, weight_decay=0.1)


def test_an_unmodified_equinox_mlp_sweeps():
    mlp = eqx.nn.MLP(3, 1, 16, 2, key=jax.random.key(0))  # its activation is a function leaf

    def loss_fn(model, batch):
        x, y = batch
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    result = jt.sweep(loss_fn, mlp, adamw, jt.Space(learning_rate=jt.choice([1e-3, 1e-2])),
                      data=(X, Y), batch_size=16, steps=30, progress=False)
    final = result.train_loss[:, -1]
    assert np.all(np.isfinite(final)) and final[1] < result.train_loss[1, 0]
    # The kept parameters are the arrays; the function leaves stay with the model.
    trained = eqx.combine(jax.tree_util.tree_map(lambda a: a[1], result.params),
                          eqx.filter(mlp, eqx.is_array, inverse=True))
    np.testing.assert_allclose(loss_fn(trained, (X, Y)), final[1], rtol=0.5)


class PooledConv(eqx.Module):
    conv: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d  # holds its init value as the Python float -inf
    linear: eqx.nn.Linear

    def __init__(self, key):
        conv_key, linear_key = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, 2, kernel_size=2, key=conv_key)
        self.pool = eqx.nn.MaxPool2d(kernel_size=2)
        self.linear = eqx.nn.Linear(2, 1, key=linear_key)

    def __call__(self, x):
        return self.linear(self.pool(self.conv(x)).reshape(-1))


def test_an_equinox_model_with_max_pooling_sweeps():
    # The pool's -inf is a non-array leaf held by the trainer, never trained or carried:
    # it is no reason to refuse the model as holding non-finite parameters.
    model = PooledConv(jax.random.key(0))
    images = RNG.normal(size=(32, 1, 3, 3)).astype(np.float32)
    targets = images.mean(axis=(1, 2, 3))[:, None]

    def loss_fn(model, batch):
        x, y = batch
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    result = jt.sweep(loss_fn, model, adamw, jt.Space(learning_rate=jt.choice([1e-3, 1e-2])),
                      data=(images, targets), batch_size=8, steps=4, progress=False)
    assert np.all(np.isfinite(result.train_loss))
    assert result.params.pool.init is None  # a non-array leaf: not among the parameters


def test_a_nan_inside_a_trained_array_is_still_refused():
    model = eqx.tree_at(lambda m: m.linear.bias, PooledConv(jax.random.key(0)),
                        jnp.array([jnp.nan]))

    def loss_fn(model, batch):
        return jnp.mean((jax.vmap(model)(batch[0]) - batch[1]) ** 2)

    with pytest.raises(ValueError, match=r"`init_params` leaf init_params\.linear\.bias holds 1 "
                                         r"non-finite"):
        jt.sweep(loss_fn, model, adamw, jt.Space(learning_rate=jt.choice([1e-3])),
                 data=(X, Y), batch_size=8, steps=4, progress=False)


def test_integer_leaves_are_carried_unchanged_and_never_decayed():
    params = {"w": jnp.ones((3, 1)), "calls": jnp.array(7, jnp.int32)}

    def loss_fn(params, batch):
        return jnp.mean((batch[0] @ params["w"] * params["calls"] - batch[1]) ** 2)

    trainer = jt.Trainer(loss_fn, adamw, init_params=params, data=(X, Y), batch_size=16,
                         devices=jax.devices()[:1])
    state, _ = trainer.train(trainer.init({"learning_rate": np.array([0.01], np.float32)}), 10)
    assert state.params["calls"].dtype == jnp.int32
    np.testing.assert_array_equal(state.params["calls"], [7])
    assert not np.allclose(state.params["w"][0], 1.0)


class DropoutNet(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(3, 1, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)  # stores its own RNG state

    def __call__(self, x, rngs=None):
        return self.linear(self.dropout(x, rngs=rngs))


def test_nnx_dropout_with_stored_rng_state_is_refused_with_the_fix():
    graphdef, state = nnx.split(DropoutNet(nnx.Rngs(0)))

    def loss_fn(state, batch):
        model = nnx.merge(graphdef, state)
        return jnp.mean((model(batch[0]) - batch[1]) ** 2)

    trainer = jt.Trainer(loss_fn, adamw, init_params=state, data=(X, Y), batch_size=16,
                         devices=jax.devices()[:1])
    with pytest.raises(TypeError, match=r"params\['dropout'\]\['rngs'\].*nnx.split\(model, "
                                        r"nnx.Param, \.\.\.\)"):
        trainer.init({"learning_rate": np.array([0.01], np.float32)})
    assert trainer.compiles == 0


def test_nnx_dropout_with_a_key_per_step_trains():
    graphdef, params, rest = nnx.split(DropoutNet(nnx.Rngs(0)), nnx.Param, ...)

    def loss_fn(params, batch, key):
        model = nnx.merge(graphdef, params, rest, copy=True)
        return jnp.mean((model(batch[0], rngs=nnx.Rngs(dropout=key)) - batch[1]) ** 2)

    trainer = jt.Trainer(loss_fn, adamw, init_params=params, data=(X, Y), batch_size=16,
                         devices=jax.devices()[:1])
    state = trainer.init({"learning_rate": np.array([0.01, 0.01], np.float32)},
                         seed=np.array([0, 0]))
    state, losses = trainer.train(state, 5)
    assert np.all(np.isfinite(losses))
    np.testing.assert_array_equal(losses[0], losses[1])  # same seed, same dropout masks


class BatchNormNet(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(3, 4, rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)

    def __call__(self, x):
        return self.norm(self.linear(x)).sum(axis=1, keepdims=True)


def test_nnx_batch_statistics_inside_the_parameters_are_refused_with_the_fix():
    model = BatchNormNet(nnx.Rngs(0))  # the module's pytree form, statistics included

    def loss_fn(model, batch):
        return jnp.mean((model(batch[0]) - batch[1]) ** 2)

    trainer = jt.Trainer(loss_fn, adamw, init_params=model, data=(X, Y), batch_size=16,
                         devices=jax.devices()[:1])
    with pytest.raises(TypeError, match=r"params\.norm\.mean is an `nnx.BatchStat`.*"
                                        r"`model_state` parameter"):
        trainer.init({"learning_rate": np.array([0.01], np.float32)})
