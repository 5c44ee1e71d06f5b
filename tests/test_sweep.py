"""`sweep`: the one call, end to end."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxtune as jt
from jaxtune.engine import programs
from jaxtune.engine.programs import PROGRAMS

RNG = np.random.default_rng(1)
X = RNG.normal(size=(160, 5)).astype(np.float32)
Y = (X @ RNG.normal(size=(5, 1))).astype(np.float32)
DATA = (X, Y)
EVAL = (X[:40], Y[:40])


def init_fn(key):
    return {"w": 0.3 * jax.random.normal(key, (5, 1)), "b": jnp.zeros(1)}


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def make_sgd(learning_rate):
    return optax.sgd(learning_rate)


def run_sweep(space=None, **kwargs):
    options = dict(data=DATA, batch_size=16, steps=20, seeds=2, progress=False,
                   devices=jax.devices()[:1])
    options.update(kwargs)
    space = space if space is not None else jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1))
    make = options.pop("make_optimizer", make_sgd)
    return jt.sweep(options.pop("loss_fn", mse), options.pop("init", init_fn), make, space, **options)


def test_result_shapes_names_and_one_compile_per_program():
    result = run_sweep(trials=5, eval_data=EVAL, eval_every=5)
    assert result.n_members == 10 and result.n_trials == 5 and result.n_seeds == 2
    np.testing.assert_array_equal(result.steps, [5, 10, 15, 20])
    assert result.train_loss.shape == (10, 4) and set(result.metrics) == {"eval_loss"}
    assert result.metric == "eval_loss" and result.mode == "min"
    np.testing.assert_array_equal(result.trial, np.repeat(np.arange(5), 2))
    np.testing.assert_array_equal(result.seed, np.tile([0, 1], 5))
    # per-seed init, population init, train (one chunk length), evaluate, and the data's
    # minibatch-order program unless an earlier sweep on data of this size compiled it
    assert result.timing["compiles"] in (4, 5)
    assert result.params["w"].shape == (10, 5, 1)


def test_member_equals_single_member_run_of_same_configuration_and_seed():
    lrs = [0.003, 0.02, 0.08]
    result = run_sweep(configs={"learning_rate": lrs}, seeds=2)
    for trial in range(3):
        for seed in range(2):
            single = run_sweep(configs={"learning_rate": [lrs[trial]]}, seeds=2)
            member = trial * 2 + seed
            chex.assert_trees_all_close(
                jax.tree_util.tree_map(lambda a: a[member], result.params),
                jax.tree_util.tree_map(lambda a: a[seed], single.params), atol=1e-5, rtol=0,
            )


@pytest.mark.parametrize("members_per_slice", [1, 2, 3, 8])
def test_slicing_does_not_change_results(members_per_slice):
    configs = {"learning_rate": [0.003, 0.01, 0.02, 0.05]}
    whole = run_sweep(configs=configs, members_per_slice=8)
    sliced = run_sweep(configs=configs, members_per_slice=members_per_slice)
    chex.assert_trees_all_close(whole.params, sliced.params, atol=1e-5, rtol=0)
    np.testing.assert_allclose(whole.train_loss, sliced.train_loss, rtol=1e-5)


def test_sharded_sweep_equals_one_device():
    configs = {"learning_rate": [0.003, 0.01, 0.02]}
    one = run_sweep(configs=configs, seeds=1)
    two = run_sweep(configs=configs, seeds=1, devices=jax.devices()[:2])  # pads 3 -> 4
    chex.assert_trees_all_close(one.params, two.params, atol=1e-5, rtol=0)


def test_divergence_is_isolated_across_learning_rates_1e_minus_5_to_1e2():
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2]
    space = jt.Space(learning_rate=jt.loguniform(1e-5, 1e2))
    result = run_sweep(space, configs={"learning_rate": lrs}, eval_data=EVAL)
    diverged = result.diverged.reshape(8, 2).all(axis=1)
    assert diverged[-2:].all() and not diverged[:5].any()
    assert (result.diverged_step[result.diverged] >= 0).all()
    assert (result.diverged_step[~result.diverged] == -1).all()
    assert np.isnan(result.final()[result.diverged]).all()
    stable = ~result.diverged
    assert np.isfinite(result.train_loss[stable]).all()
    for leaf in jax.tree_util.tree_leaves(result.params):
        assert np.isfinite(leaf).all()  # frozen at their last finite values
    keep = [lr for lr, d in zip(lrs, diverged) if not d]
    clean = run_sweep(space, configs={"learning_rate": keep}, eval_data=EVAL)
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda a: a[: len(keep) * 2], result.params), clean.params,
        atol=1e-5, rtol=0,
    )
    assert result.best.hparams["learning_rate"] in keep


def test_static_dimension_splits_into_groups_and_reaches_every_function():
    seen = set()

    def make_optimizer(learning_rate, optimizer):
        seen.add(optimizer)
        return {"sgd": optax.sgd, "adam": optax.adam}[optimizer](learning_rate)

    def init(key, width):
        return {"w1": 0.3 * jax.random.normal(key, (5, width)), "w2": jnp.zeros((width, 1))}

    def loss(params, batch):
        x, y = batch
        return jnp.mean((jnp.tanh(x @ params["w1"]) @ params["w2"] - y) ** 2)

    space = jt.Space(
        learning_rate=jt.loguniform(1e-3, 1e-1),
        optimizer=jt.choice(["sgd", "adam"]),
        width=jt.choice([4, 8], static=True),
    )
    result = run_sweep(space, sampler="grid", grid_points=2, loss_fn=loss, init=init,
                       make_optimizer=make_optimizer)
    assert seen == {"sgd", "adam"}
    assert result.n_members == 16 and result.params is None  # widths differ
    assert set(result.hparams["optimizer"]) <= {"sgd", "adam"}
    frame = result.to_pandas()
    assert list(frame["width"]) == list(result.hparams["width"])
    # each member equals a sweep of its own group alone
    first = result.hparams
    row = 0
    alone = run_sweep(
        space, configs=[{"learning_rate": float(first["learning_rate"][row]),
                         "optimizer": first["optimizer"][row], "width": first["width"][row]}],
        loss_fn=loss, init=init, make_optimizer=make_optimizer,
    )
    np.testing.assert_allclose(alone.train_loss, result.train_loss[:2], rtol=1e-5)


def test_dynamic_hyperparameter_in_loss_and_integer_schedule_steps():
    def loss(params, batch, l2):
        return mse(params, batch) + l2 * jnp.sum(params["w"] ** 2)

    def make_optimizer(learning_rate, warmup_steps):
        return optax.adam(jt.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, 20))

    space = jt.Space(learning_rate=jt.fixed(0.05), warmup_steps=jt.randint(0, 10),
                     l2=jt.choice([0.0, 10.0]))
    programs.clear_programs()  # the data's minibatch order is shared with other tests' sweeps
    result = run_sweep(space, sampler="grid", grid_points=3, loss_fn=loss,
                       make_optimizer=make_optimizer)
    # the initial parameters of a seed, the population, the minibatch order, and a single
    # training program for all 6 trials (l2 and warmup_steps are traced)
    assert result.n_trials == 6 and result.timing["compiles"] == 4
    heavy = result.hparams["l2"] == 10.0
    norms = np.sum(result.params["w"] ** 2, axis=(1, 2))
    assert norms[heavy].max() < norms[~heavy].min()


def test_default_metric_and_mode_from_eval_fn():
    def scores(params, data):
        return {"r2": 1 - mse(params, data) / jnp.var(data[1]), "mae": jnp.mean(
            jnp.abs(data[0] @ params["w"] + params["b"] - data[1]))}

    result = run_sweep(trials=3, eval_fn=scores, eval_data=EVAL, seeds=1)
    assert result.metric == "r2" and result.mode == "max"
    result = run_sweep(trials=3, eval_fn=scores, eval_data=EVAL, seeds=1, metric="mae")
    assert result.metric == "mae" and result.mode == "min"


def test_record_step_loss_and_uneven_last_chunk():
    result = run_sweep(trials=2, steps=23, eval_every=10, record_step_loss=True)
    np.testing.assert_array_equal(result.steps, [10, 20, 23])
    assert result.step_loss.shape == (4, 23)
    np.testing.assert_allclose(result.train_loss[:, 2], result.step_loss[:, 20:].mean(axis=1),
                               rtol=1e-6)


def test_save_load_round_trip(tmp_path):
    result = run_sweep(trials=3, eval_data=EVAL)
    path = tmp_path / "sweep.npz"
    result.save(path)
    loaded = jt.SweepResult.load(path)
    np.testing.assert_array_equal(loaded.train_loss, result.train_loss)
    np.testing.assert_array_equal(loaded.hparams["learning_rate"], result.hparams["learning_rate"])
    assert loaded.best.hparams == result.best.hparams


def test_no_retrace_when_only_hyperparameter_values_change():
    calls = []

    def loss(params, batch):
        calls.append(1)
        return mse(params, batch)

    trainer = jt.Trainer(loss, make_sgd, init_params=init_fn, data=DATA, batch_size=16,
                      devices=jax.devices()[:1])
    for lrs in ([0.1, 0.2], [0.01, 0.3], [1e-4, 1e-3]):
        trainer.train(trainer.init({"learning_rate": np.array(lrs, np.float32)}), 5)
    # one abstract check + one trace; the functions' programs: per-seed init, init, train
    assert len(calls) == 2 and trainer.compiler.compiles == 3


BAD_INPUTS = [
    (dict(data=(X, Y[:100]), trials=2), ValueError, "same number of examples"),
    (dict(loss_fn=lambda p, b: b[0] @ p["w"], trials=2), ValueError, "scalar floating-point loss"),
    (dict(steps=0, trials=2), ValueError, "`steps` must be a positive int"),
    (dict(steps=-3, trials=2), ValueError, "`steps` must be a positive int"),
    (dict(batch_size=1000, trials=2), ValueError, r"`batch_size` must lie in \[1, 160\]"),
    (dict(make_optimizer=lambda lr: optax.sgd(lr), trials=2), ValueError,
     "`make_optimizer` needs 'lr'"),
    (dict(make_optimizer=lambda learning_rate, momentum: optax.sgd(learning_rate, momentum),
          trials=2), ValueError, "`make_optimizer` needs 'momentum'"),
    (dict(configs={"learning_rate": [0.01, 5.0]}), ValueError, "learning_rate"),
    (dict(trials=None), ValueError, "`trials` is required"),
    (dict(trials=2, sampler="bayes"), ValueError, "sampler"),
    (dict(trials=2, eval_every=50), ValueError, "`eval_every` must be at most"),
    (dict(trials=2, mode="best"), ValueError, "`mode` must be 'min' or 'max'"),
    (dict(trials=2, metric="accuracy"), ValueError, "`metric` must be one of 'train_loss'"),
    (dict(trials=2, seeds=0), ValueError, "`seeds` must be a positive int"),
    (dict(trials=2, members_per_slice=0), ValueError, "`members_per_slice`"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_INPUTS)
def test_bad_input_is_rejected_before_any_compile(kwargs, error, message, xla_compiles):
    with xla_compiles() as compiled, pytest.raises(error, match=message):
        run_sweep(**kwargs)
    assert not [name for name in compiled if name in PROGRAMS]


def test_unknown_hyperparameter_name_is_rejected():
    space = jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1), dropout=jt.uniform(0.0, 0.5))
    with pytest.raises(ValueError, match="hyperparameter `dropout` is not a parameter"):
        run_sweep(space, trials=2)


def test_non_finite_fixed_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        jt.Space(learning_rate=jt.fixed(float("nan")))


def test_space_must_be_a_space():
    with pytest.raises(TypeError, match="`space` must be a jaxtune.Space"):
        jt.sweep(mse, init_fn, make_sgd, {"learning_rate": 0.1}, data=DATA, batch_size=8, steps=5)
