"""Model state beside the parameters (BatchNorm statistics) and training metrics from aux.

Each BatchNorm test holds a one-member population to a hand-written single-model
optax loop on the same minibatches: parameters and statistics match after 20 steps,
the statistics moved, and AdamW's weight decay never touched them. (The layers
before BatchNorm have no bias: its gradient is zero up to rounding, which Adam's
normalisation would amplify into noise that no two programs share.) A sweep returns
each member's final statistics in `SweepResult.model_state`, saves them, and
checkpoints the finished members' statistics so a resumed sweep returns them too.
"""

import json

import chex
import equinox as eqx
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from test_runner import InterruptAt

import jaxtune as jt

STEPS = 20
RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype(np.float32) * 2.0 + 1.0
Y = (X @ RNG.normal(size=(4, 1))).astype(np.float32)
LEARNING_RATE = 0.01


def make_optimizer(learning_rate):
    return optax.adamw(learning_rate, weight_decay=0.5)


def trained_population(loss_fn, init, **kwargs):
    trainer = jt.Trainer(loss_fn, make_optimizer, init_params=init, data=(X, Y), batch_size=16,
                         devices=jax.devices()[:1], **kwargs)
    state = trainer.init({"learning_rate": np.array([LEARNING_RATE], np.float32)})
    state, losses = trainer.train(state, STEPS)
    return trainer, state, losses


def single_model_loop(trainer, loss_fn, params, model_state):
    """The ordinary optax loop, on the minibatches the trainer's seed 0 draws."""
    order = trainer.minibatch_indices(0, 0, STEPS)
    optimizer = make_optimizer(LEARNING_RATE)
    opt_state = optimizer.init(params)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    losses = []
    for t in range(STEPS):
        batch = (X[order[t]], Y[order[t]])
        (loss, (model_state, _)), grads = grad_fn(params, batch, model_state=model_state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses.append(loss)
    return params, model_state, np.array(losses)


def swept(loss_fn, init, **kwargs):
    """A sweep of two members on the parity tests' data: LEARNING_RATE and a larger rate."""
    return jt.sweep(loss_fn, init, make_optimizer,
                    jt.Space(learning_rate=jt.choice([LEARNING_RATE, 0.05])), data=(X, Y),
                    batch_size=16, steps=STEPS, eval_every=10, progress=False,
                    devices=jax.devices()[:1], **kwargs)


def member_leaves(tree, member):
    return [np.asarray(leaf[member], np.float64) for leaf in jax.tree_util.tree_leaves(tree)]


def check_swept_member(result, params, model_state):
    """The sweep's member at LEARNING_RATE ends with the single-model loop's params and
    state, and the other member with statistics of its own."""
    member = int(np.flatnonzero(result.hparams["learning_rate"] == np.float32(LEARNING_RATE))[0])
    for tree, want in ((result.params, params), (result.model_state, model_state)):
        for got, expected in zip(member_leaves(tree, member), jax.tree_util.tree_leaves(want),
                                 strict=True):
            np.testing.assert_allclose(got, np.asarray(expected, np.float64), rtol=1e-5,
                                       atol=1e-5)
    other = member_leaves(result.model_state, 1 - member)
    assert not all(np.allclose(a, b) for a, b in zip(other,
                                                     member_leaves(result.model_state, member)))


def check_parity(state, losses, params, model_state, ref_losses, initial_state):
    first = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)
    np.testing.assert_allclose(losses[0], ref_losses, rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree_util.tree_leaves(first(state.params)),
                         jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got_state = jax.tree_util.tree_leaves(first(state.model_state))
    for got, want in zip(got_state, jax.tree_util.tree_leaves(model_state)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    moved = [not np.allclose(a, b) for a, b in zip(got_state,
                                                   jax.tree_util.tree_leaves(initial_state))]
    assert any(moved), "the running statistics never moved"


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(4, 8, use_bias=False, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.norm(self.linear(x))))


def test_flax_nnx_batchnorm_matches_a_single_model_loop():
    graphdef, params, stats = nnx.split(NnxNet(nnx.Rngs(0)), nnx.Param, nnx.BatchStat)

    def loss_fn(params, batch, *, model_state):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        x, y = batch
        loss = jnp.mean((model(x) - y) ** 2)
        return loss, (nnx.state(model, nnx.BatchStat), None)

    trainer, state, losses = trained_population(loss_fn, (params, stats))
    ref = single_model_loop(trainer, loss_fn, params, stats)
    check_parity(state, losses, *ref, stats)


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, train):
        x = linen.BatchNorm(use_running_average=not train, momentum=0.8)(linen.Dense(8, use_bias=False)(x))
        return linen.Dense(1)(linen.relu(x))


def test_flax_linen_batchnorm_matches_a_single_model_loop():
    model = LinenNet()
    variables = model.init(jax.random.key(0), X[:2], train=False)

    def loss_fn(params, batch, *, model_state):
        x, y = batch
        out, updates = model.apply({"params": params, "batch_stats": model_state}, x, train=True,
                                   mutable=["batch_stats"])
        return jnp.mean((out - y) ** 2), (updates["batch_stats"], None)

    def eval_fn(params, data, *, model_state):
        out = model.apply({"params": params, "batch_stats": model_state}, data[0], train=False)
        return {"mse": jnp.mean((out - data[1]) ** 2)}

    trainer, state, losses = trained_population(
        loss_fn, (variables["params"], variables["batch_stats"]), eval_fn=eval_fn,
        eval_data=(X, Y))
    ref = single_model_loop(trainer, loss_fn, variables["params"], variables["batch_stats"])
    check_parity(state, losses, *ref, variables["batch_stats"])
    # eval_fn received the trained statistics
    want = eval_fn(ref[0], (X, Y), model_state=ref[1])["mse"]
    np.testing.assert_allclose(trainer.evaluate(state)["mse"][0], want, rtol=1e-5)


class EqxNet(eqx.Module):
    linear: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    out: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.linear = eqx.nn.Linear(4, 8, use_bias=False, key=k1)
        self.norm = eqx.nn.BatchNorm(8, axis_name="batch", momentum=0.8, mode="ema")
        self.out = eqx.nn.Linear(8, 1, key=k2)

    def __call__(self, x, state):
        h, state = self.norm(self.linear(x), state)
        return self.out(jax.nn.relu(h)), state


def equinox_loss(model, batch, *, model_state):
    x, y = batch
    out, new_state = jax.vmap(model, axis_name="batch", in_axes=(0, None),
                              out_axes=(0, None))(x, model_state)
    return jnp.mean((out - y) ** 2), (new_state, {"mae": jnp.mean(jnp.abs(out - y))})


@pytest.fixture(scope="module")
def equinox_sweep():
    """(model, initial state, the result of `swept`) for `EqxNet`."""
    model, model_state = eqx.nn.make_with_state(EqxNet)(jax.random.key(0))
    return model, model_state, swept(equinox_loss, (model, model_state))


def test_equinox_batchnorm_with_state_matches_a_single_model_loop(equinox_sweep):
    model, model_state, result = equinox_sweep
    trainer, state, losses = trained_population(equinox_loss, (model, model_state))
    # Checkpoints rebuild the population from `abstract_state`: same tree.
    abstract = trainer.abstract_state({"learning_rate": np.ones(1, np.float32)}, 1)
    assert jax.tree_util.tree_structure(abstract) == jax.tree_util.tree_structure(state)
    trainable = eqx.filter(model, eqx.is_inexact_array)
    static = eqx.filter(model, eqx.is_inexact_array, inverse=True)

    def split_loss(params, batch, *, model_state):
        return equinox_loss(eqx.combine(params, static), batch, model_state=model_state)

    ref = single_model_loop(trainer, split_loss, trainable, model_state)
    check_parity(state, losses, *ref, model_state)
    check_swept_member(result, *ref[:2])


def test_sweep_result_saves_and_loads_the_model_state(equinox_sweep, tmp_path):
    _, _, result = equinox_sweep
    result.save(tmp_path / "once.npz")
    once = jt.SweepResult.load(tmp_path / "once.npz")
    # eqx.nn.State is a custom node: it comes back as lists, leaf for leaf
    for got, want in zip(jax.tree_util.tree_leaves(once.model_state),
                         jax.tree_util.tree_leaves(result.model_state), strict=True):
        np.testing.assert_array_equal(got, want, strict=True)
    once.save(tmp_path / "twice.npz")
    twice = jt.SweepResult.load(tmp_path / "twice.npz")
    chex.assert_trees_all_equal(twice.model_state, once.model_state)
    chex.assert_trees_all_equal(twice.params, once.params)


def running_mean_init(key):
    """Weights per seed, and a state that follows the mean prediction and counts steps."""
    return ({"w": 0.3 * jax.random.normal(key, (4, 1))},
            {"mean_prediction": jnp.zeros(()), "count": jnp.zeros((), jnp.int32)})


def running_mean_loss(params, batch, *, model_state):
    prediction = batch[0] @ params["w"]
    new_state = {"mean_prediction": 0.9 * model_state["mean_prediction"]
                 + 0.1 * jnp.mean(prediction), "count": model_state["count"] + 1}
    return jnp.mean((prediction - batch[1]) ** 2), (new_state, None)


def running_mean_sweep(strategy, **kwargs):
    """Four members, two at a time: the first two finish at round 2 of 4."""
    return jt.sweep(running_mean_loss, running_mean_init,
                    lambda learning_rate: optax.sgd(learning_rate),
                    jt.Space(learning_rate=jt.choice([0.003, 0.03])), data=(X, Y),
                    batch_size=16, steps=8, eval_every=4, seeds=2, members_per_slice=2,
                    members_in_flight=2, strategy=strategy, progress=False,
                    devices=jax.devices()[:1], **kwargs)


def as_version_1(path, directory):
    """The checkpoint at `path`, in `directory`, as jaxtune wrote it before keeping model state."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files if not key.startswith("model_state:")}
    meta = json.loads(str(arrays.pop("__meta__")))
    directory.mkdir()
    np.savez(directory / "sweep.npz", __meta__=np.asarray(json.dumps({**meta, "version": 1})),
             **arrays)


def test_resumed_sweep_returns_the_model_state_of_members_finished_before(tmp_path):
    uninterrupted = running_mean_sweep(InterruptAt(0))
    with pytest.raises(jt.SweepInterrupted) as caught:
        running_mean_sweep(InterruptAt(3), checkpoint_dir=tmp_path)
    partial = caught.value.result
    finished = int(np.sum(partial.status == "completed"))
    assert 0 < finished < partial.n_members  # the checkpoint holds finished members' state
    assert partial.model_state is None and partial.params is None  # not every member finished
    done = np.flatnonzero(partial.status == "completed")
    assert sorted(partial.member_params) == done.tolist()  # yet the finished ones are there
    for member in done:
        chex.assert_trees_all_close(partial.model_state_of(member), jax.tree_util.tree_map(
            lambda a, m=member: a[m], uninterrupted.model_state), rtol=0, atol=1e-6)
    as_version_1(tmp_path / "sweep.npz", tmp_path / "v1")
    with pytest.raises(ValueError, match="lacks the `model_state` of finished member"):
        running_mean_sweep(InterruptAt(0), checkpoint_dir=tmp_path / "v1")
    resumed = running_mean_sweep(InterruptAt(0), checkpoint_dir=tmp_path)
    np.testing.assert_allclose(resumed.train_loss, uninterrupted.train_loss, rtol=0, atol=1e-6)
    chex.assert_trees_all_close(resumed.params, uninterrupted.params, rtol=0, atol=1e-6)
    chex.assert_trees_all_close(resumed.model_state, uninterrupted.model_state, rtol=0,
                                atol=1e-6)
    np.testing.assert_array_equal(resumed.model_state["count"], np.full(4, 8))
    assert np.unique(resumed.model_state["mean_prediction"]).size == 4


def test_diverged_member_rolls_back_its_model_state():
    def loss_fn(params, batch, *, model_state):
        loss = jnp.mean((batch[0] @ params["w"] - batch[1]) ** 2)
        return loss, ({"count": model_state["count"] + 1, "sum": model_state["sum"] + loss}, None)

    init = ({"w": jnp.zeros((4, 1))}, {"count": jnp.array(0, jnp.int32), "sum": jnp.array(0.0)})
    trainer = jt.Trainer(loss_fn, lambda learning_rate: optax.sgd(learning_rate),
                         init_params=init, data=(X, Y), batch_size=16, devices=jax.devices()[:1])
    state = trainer.init({"learning_rate": np.array([1e-3, 1e3], np.float32)})
    state, _ = trainer.train(state, 5)
    state, _ = trainer.train(state, 30)
    assert bool(state.alive[0]) and not bool(state.alive[1])
    assert int(state.model_state["count"][0]) == 35
    assert int(state.model_state["count"][1]) == 5  # frozen at the last good chunk
    assert np.isfinite(state.model_state["sum"][1])


def test_aux_metrics_are_recorded_as_curves():
    def loss_fn(w, batch):
        loss = jnp.mean((batch[0] @ w - batch[1]) ** 2)
        return loss, {"double_loss": 2 * loss, "weight_norm": jnp.sum(w ** 2)}

    result = jt.sweep(loss_fn, jnp.zeros((4, 1)), lambda learning_rate: optax.sgd(learning_rate),
                      jt.Space(learning_rate=jt.choice([0.001, 0.01])), data=(X, Y),
                      batch_size=16, steps=20, eval_every=5, progress=False,
                      devices=jax.devices()[:1])
    assert set(result.metrics) == {"double_loss", "weight_norm"}
    np.testing.assert_allclose(result.metrics["double_loss"], 2 * result.train_loss, rtol=1e-6)
    assert result.metrics["weight_norm"].shape == (2, 4)
    assert np.all(np.diff(result.metrics["weight_norm"], axis=1) > 0)
    assert result.params.shape == (2, 4, 1) and result.model_state is None  # no model state


def test_aux_metric_named_like_an_eval_metric_is_refused_before_compiling():
    def loss_fn(w, batch):
        loss = jnp.mean((batch[0] @ w - batch[1]) ** 2)
        return loss, {"eval_loss": loss}

    trainer = jt.Trainer(loss_fn, lambda learning_rate: optax.sgd(learning_rate),
                         init_params=jnp.zeros((4, 1)), data=(X, Y), batch_size=16,
                         eval_data=(X, Y), devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="training metric 'eval_loss'.*eval metric"):
        trainer.init({"learning_rate": np.array([0.1], np.float32)})
    assert trainer.compiles == 0


@pytest.mark.parametrize("returned, message", [
    (lambda loss, w: (loss, {"per_example": jnp.zeros(3)}), r"got shape \(3,\)"),
])
def test_aux_metrics_must_be_scalars(returned, message):
    def loss_fn(w, batch):
        loss = jnp.mean((batch[0] @ w - batch[1]) ** 2)
        return returned(loss, w)

    trainer = jt.Trainer(loss_fn, lambda learning_rate: optax.sgd(learning_rate),
                         init_params=jnp.zeros((4, 1)), data=(X, Y), batch_size=16,
                         devices=jax.devices()[:1])
    with pytest.raises(TypeError, match=message):
        trainer.init({"learning_rate": np.array([0.1], np.float32)})


def test_model_state_convention_errors():
    def loss_fn(w, batch, *, model_state):
        return jnp.mean((batch[0] @ w - batch[1]) ** 2)

    kwargs = dict(data=(X, Y), batch_size=16, devices=jax.devices()[:1])
    sgd = lambda learning_rate: optax.sgd(learning_rate)
    hp = {"learning_rate": np.array([0.1], np.float32)}
    with pytest.raises(TypeError, match=r"`init_params` must give the pair `\(params, model_"):
        jt.Trainer(loss_fn, sgd, init_params=jnp.zeros((4, 1)), **kwargs).init(hp)
    with pytest.raises(ValueError, match=r"must return `\(loss, \(new_model_state, metrics\)\)`"):
        jt.Trainer(loss_fn, sgd, init_params=(jnp.zeros((4, 1)), jnp.zeros(2)), **kwargs).init(hp)

    def wrong_state(w, batch, *, model_state):
        return jnp.mean((batch[0] @ w - batch[1]) ** 2), (model_state[:1], None)

    with pytest.raises(TypeError, match="new `model_state` whose structure differs"):
        jt.Trainer(wrong_state, sgd, init_params=(jnp.zeros((4, 1)), jnp.zeros(2)),
                   **kwargs).init(hp)


def test_equinox_state_trains_across_two_devices_as_on_one():
    model, model_state = eqx.nn.make_with_state(EqxNet)(jax.random.key(0))

    def loss_fn(model, batch, *, model_state):
        out, new_state = jax.vmap(model, axis_name="batch", in_axes=(0, None),
                                  out_axes=(0, None))(batch[0], model_state)
        return jnp.mean((out - batch[1]) ** 2), (new_state, None)

    hp = {"learning_rate": np.array([0.01, 0.03], np.float32)}
    runs = []
    for devices in (jax.devices()[:1], jax.devices()[:2]):
        trainer = jt.Trainer(loss_fn, make_optimizer, init_params=(model, model_state),
                             data=(X, Y), batch_size=16, devices=devices)
        runs.append(trainer.train(trainer.init(hp), 5))
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(runs[1][0].model_state),
                    jax.tree_util.tree_leaves(runs[0][0].model_state)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
