"""`data` as arrays, a traced `batch_fn(key, step)` or a host iterator; anything else is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rounding

import jaxtune as jt

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 5)).astype(np.float32)
Y = (X @ RNG.normal(size=(5, 1))).astype(np.float32)
XJ, YJ = jnp.asarray(X), jnp.asarray(Y)  # a batch_fn indexes them with traced steps
HP = {"learning_rate": np.array([0.01, 0.1], np.float32)}


def loss_fn(w, batch):
    return jnp.mean((batch[0] @ w - batch[1]) ** 2)


def sgd(learning_rate):
    return optax.sgd(learning_rate, momentum=0.9)


def trainer(data, **kwargs):
    return jt.Trainer(loss_fn, sgd, init_params=jnp.zeros((5, 1)), data=data,
                      devices=jax.devices()[:1], **kwargs)


def test_batch_fn_equals_in_memory_data_on_the_same_batches():
    in_memory = trainer((X, Y), batch_size=16)
    order = jnp.asarray(in_memory.minibatch_indices(0, 0, 30))  # seed 0's batches

    def batch_fn(key, step):
        return XJ[order[step]], YJ[order[step]]

    traced = trainer(batch_fn)
    a, losses_a = in_memory.train(in_memory.init(HP), 30)
    b, losses_b = traced.train(traced.init(HP), 30)
    # Same batches, same updates; the in-memory program gathers one shared batch for the
    # whole (single-seed) population, so XLA may fuse it differently: float32 rounding.
    np.testing.assert_allclose(losses_b, losses_a, **rounding(30))
    np.testing.assert_allclose(b.params, a.params, **rounding(30))


def test_batch_fn_key_depends_on_seed_and_step_only():
    def batch_fn(key, step):
        x = jax.random.normal(key, (8, 5))
        return x, x @ jnp.ones((5, 1))

    t = trainer(batch_fn, num_seeds=2)
    hp = {"learning_rate": np.full(4, 0.05, np.float32)}
    _, losses = t.train(t.init(hp, seed=np.array([0, 1, 0, 1])), 4)
    np.testing.assert_array_equal(losses[0], losses[2])
    np.testing.assert_array_equal(losses[1], losses[3])
    assert not np.allclose(losses[0], losses[1])
    assert len(set(np.asarray(losses[0]).tolist())) == 4  # a new batch every step


def test_a_sweep_accepts_a_batch_fn():
    order = jnp.asarray(RNG.integers(0, 96, size=(20, 16)))
    result = jt.sweep(loss_fn, jnp.zeros((5, 1)), sgd,
                      jt.Space(learning_rate=jt.choice([0.01, 0.05])),
                      data=lambda key, step: (XJ[order[step]], YJ[order[step]]), steps=20,
                      progress=False)
    assert result.train_loss.shape == (2, 10) and np.all(np.isfinite(result.train_loss))


@pytest.mark.parametrize("data, message", [
    ((X, "labels"), r"`data` leaf data\[1\] is a str, not an array; `data` must be a pytree.*"
                    r"or a function `batch_fn.*or an iterable of batches"),
    (object(), r"`data` must be a pytree of arrays.*or a function `batch_fn.*or an iterable"),
])
def test_unusable_data_lists_the_accepted_forms(data, message):
    with pytest.raises(TypeError, match=message):
        trainer(data, batch_size=16)
    with pytest.raises(TypeError, match=message):
        jt.sweep(loss_fn, jnp.zeros((5, 1)), sgd, jt.Space(learning_rate=jt.choice([0.01])),
                 data=data, batch_size=16, steps=2, progress=False)


def test_batch_fn_must_return_arrays():
    t = trainer(lambda key, step: ("not", "arrays"))
    with pytest.raises(TypeError, match=r"`batch_fn"):
        t.init(HP)
