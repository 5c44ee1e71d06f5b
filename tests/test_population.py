"""The population trainer: member independence, divergence, batching, sharding."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxtune as jt
from jaxtune.engine import is_init_function, sources

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 6)).astype(np.float32)
TRUE_W = RNG.normal(size=(6, 1)).astype(np.float32)
Y = X @ TRUE_W + 0.1 * RNG.normal(size=(200, 1)).astype(np.float32)
DATA = (X, Y)


def init_fn(key):
    k1, k2 = jax.random.split(key)
    return {"w": 0.3 * jax.random.normal(k1, (6, 1)), "b": 0.1 * jax.random.normal(k2, (1,))}


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def make_sgd(learning_rate, momentum):
    return optax.sgd(learning_rate, momentum=momentum)


def trainer(**kwargs):
    options = dict(init_params=init_fn, data=DATA, batch_size=16, num_seeds=3, key=7)
    options.update(kwargs)
    return jt.Trainer(mse, make_sgd, **options)


def run(t, learning_rate, momentum, seed, steps=20):
    state = t.init(
        {"learning_rate": np.asarray(learning_rate, np.float32),
         "momentum": np.asarray(momentum, np.float32)},
        np.asarray(seed, np.int32),
    )
    return t.train(state, steps)


def hand_written_run(learning_rate, momentum, seed, steps, t):
    """The same training, written directly for one member with optax, no vmap."""
    params = init_fn(t.init_key(seed))
    optimizer = optax.sgd(learning_rate, momentum=momentum)
    opt_state = optimizer.init(params)
    indices = t.minibatch_indices(seed, 0, steps)
    for i in range(steps):
        batch = (X[indices[i]], Y[indices[i]])
        grads = jax.grad(mse)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_vmapped_member_equals_single_run_and_hand_written_loop():
    t = trainer(devices=jax.devices()[:1])
    lrs, moms, seeds = [0.01, 0.05, 0.1, 0.2], [0.0, 0.9, 0.5, 0.0], [0, 1, 2, 1]
    population, _ = run(t, lrs, moms, seeds)
    for m in range(4):
        single, _ = run(t, lrs[m:m + 1], moms[m:m + 1], seeds[m:m + 1])
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda a: a[m], population.params),
            jax.tree_util.tree_map(lambda a: a[0], single.params), atol=1e-5, rtol=0,
        )
        reference = hand_written_run(lrs[m], moms[m], seeds[m], 20, t)
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda a: a[m], population.params), reference, atol=1e-5,
            rtol=0,
        )


def test_member_unaffected_by_other_members_hyperparameters():
    t = trainer(devices=jax.devices()[:1])
    a, _ = run(t, [0.05, 0.01, 0.02], [0.5, 0.0, 0.0], [1, 0, 2])
    b, _ = run(t, [0.05, 0.3, 0.0001], [0.5, 0.9, 0.99], [1, 2, 0])
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda x: x[0], a.params),
        jax.tree_util.tree_map(lambda x: x[0], b.params), atol=1e-6, rtol=0,
    )


def test_same_seed_same_data_and_init_different_seed_differs():
    t = trainer()
    state, losses = run(t, [0.05, 0.05, 0.05, 0.05], [0.0] * 4, [0, 0, 1, 2])
    np.testing.assert_array_equal(np.asarray(losses[0]), np.asarray(losses[1]))
    assert not np.allclose(np.asarray(losses[0]), np.asarray(losses[2]))
    assert not np.allclose(np.asarray(state.params["w"][2]), np.asarray(state.params["w"][3]))


def test_minibatches_without_replacement_within_each_epoch():
    t = trainer(batch_size=32)  # 200 examples: 6 batches per epoch, 8 examples left out
    indices = np.stack([t.minibatch_indices(seed, 0, 18) for seed in range(3)])
    assert indices.shape == (3, 18, 32)
    for seed in range(3):
        for epoch in range(3):
            drawn = indices[seed, epoch * 6:(epoch + 1) * 6].reshape(-1)
            assert len(np.unique(drawn)) == drawn.size == 192
        assert not np.array_equal(indices[seed, :6], indices[seed, 6:12])  # reshuffled
    assert not np.array_equal(indices[0], indices[1])


def _position_chi2(orders: np.ndarray) -> float:
    """Pearson's chi-square of how often each example lands at each position."""
    rows, n = orders.shape
    counts = np.zeros((n, n))
    np.add.at(counts, (orders, np.broadcast_to(np.arange(n), orders.shape)), 1)
    expected = rows / n
    return float(((counts - expected) ** 2 / expected).sum())


def test_epoch_orders_shuffle_like_a_random_permutation():
    # The orders are a keyed hash sorted (`sources.epoch_orders`), not threefry: check
    # they behave as uniform random permutations, over epochs and over seeds.
    key = jax.random.split(jax.random.key(0), 3)[1]
    n, epochs = 16, 4000
    by_epoch = np.asarray(sources.epoch_orders(key, jnp.int32(3), jnp.arange(epochs), n))
    by_seed = np.asarray(jax.vmap(lambda s: sources.epoch_orders(key, s, jnp.arange(1), n))(
        jnp.arange(epochs))[:, 0])
    for orders in (by_epoch, by_seed):
        assert (np.sort(orders, axis=1) == np.arange(n)).all()
        # chi-square with (n-1)^2 = 225 degrees of freedom: mean 225, sd 21
        assert _position_chi2(orders) < 225 + 5 * 21
    positions = np.argsort(by_epoch, axis=1)
    rho = [np.corrcoef(positions[e], positions[e + 1])[0, 1] for e in range(epochs - 1)]
    # consecutive epochs unrelated: Spearman's rho has mean 0 and sd 1/sqrt(n-1) per pair
    assert abs(np.mean(rho)) < 5 / np.sqrt((n - 1) * (epochs - 1))
    assert abs(np.std(rho) - 1 / np.sqrt(n - 1)) < 0.02


def test_chunking_does_not_change_results():
    t = trainer()
    hp = {"learning_rate": np.array([0.05, 0.1], np.float32), "momentum": np.zeros(2, np.float32)}
    whole, whole_losses = t.train(t.init(hp, np.array([0, 1])), 24)
    part, first = t.train(t.init(hp, np.array([0, 1])), 10)
    part, second = t.train(part, 14)
    chex.assert_trees_all_close(whole.params, part.params, atol=1e-6, rtol=0)
    np.testing.assert_allclose(whole_losses, np.concatenate([first, second], axis=1), atol=1e-6)


def test_sharding_over_two_devices_equals_one_device():
    assert len(jax.devices()) >= 2, "tests/conftest.py asks for two CPU devices"
    lrs, moms, seeds = [0.01, 0.05, 0.1, 0.2], [0.0, 0.9, 0.5, 0.0], [0, 1, 2, 1]
    one, _ = run(trainer(devices=jax.devices()[:1]), lrs, moms, seeds)
    two_trainer = trainer(devices=jax.devices()[:2])
    two, _ = run(two_trainer, lrs, moms, seeds)
    assert len(two.params["w"].sharding.device_set) == 2
    chex.assert_trees_all_close(one.params, two.params, atol=1e-5, rtol=0)


def test_population_size_must_divide_over_devices():
    with pytest.raises(ValueError, match="not a multiple of the 2 devices"):
        run(trainer(devices=jax.devices()[:2]), [0.1, 0.2, 0.3], [0.0] * 3, [0, 0, 0])


def test_divergence_is_frozen_flagged_and_isolated():
    t = trainer(devices=jax.devices()[:1])
    lrs = [1e-5, 1e-3, 1e-1, 1e1, 1e2]
    state, losses = run(t, lrs, [0.0] * 5, [0] * 5, steps=20)
    alive = np.asarray(state.alive)
    np.testing.assert_array_equal(alive, [True, True, True, False, False])
    steps = np.asarray(state.diverged_step)
    assert steps[0] == steps[1] == steps[2] == -1 and 0 <= steps[3] < 20 and 0 <= steps[4] < 20
    finite = jax.tree_util.tree_map(lambda a: bool(jnp.all(jnp.isfinite(a))), state.params)
    assert jax.tree_util.tree_all(finite)
    assert np.all(np.isnan(np.asarray(losses)[3:, -1]))
    stable, _ = run(t, lrs[:3], [0.0] * 3, [0] * 3, steps=20)
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda a: a[:3], state.params), stable.params, atol=1e-5, rtol=0
    )


def test_new_hyperparameter_values_do_not_retrace():
    traces = []

    def counted_loss(params, batch):
        traces.append(1)
        return mse(params, batch)

    t = jt.Trainer(counted_loss, make_sgd, init_params=init_fn, data=DATA, batch_size=16)
    run_state = lambda lr: t.train(t.init({"learning_rate": np.array(lr, np.float32),
                                           "momentum": np.zeros(2, np.float32)}), 5)
    run_state([0.1, 0.2])
    traced, compiles = len(traces), t.compiler.compiles
    for lr in ([0.3, 0.01], [1e-4, 2.0], [0.5, 0.5]):
        run_state(lr)
    # the functions' programs: seed init, population init, train
    assert len(traces) == traced and t.compiler.compiles == compiles == 3


def test_a_new_matmul_precision_compiles_a_new_program():
    t = jt.Trainer(mse, make_sgd, init_params=init_fn, data=DATA, batch_size=16)
    state = t.init({"learning_rate": np.full(2, 0.1, np.float32), "momentum": np.zeros(2, np.float32)})
    t.train(state, 3)
    before = t.compiler.compiles  # the functions' programs (the data's are keyed alike)
    with jax.default_matmul_precision("highest"):  # traced into the program, so not reused
        t.train(state, 3)
    assert t.compiler.compiles == before + 1
    t.train(state, 3)
    assert t.compiler.compiles == before + 1


def test_loss_with_aux_and_key_and_shared_init_params():
    keys_seen = []

    def loss(params, batch, key):
        keys_seen.append(key)
        noise = 0.0 * jax.random.normal(key, ())
        value = mse(params, batch) + noise
        return value, {"mse": value}

    t = jt.Trainer(loss, lambda learning_rate: optax.adam(learning_rate),
                init_params={"w": jnp.zeros((6, 1)), "b": jnp.zeros(1)}, data=DATA, batch_size=20)
    _, losses = t.train(t.init({"learning_rate": np.array([0.01, 0.1], np.float32)}), 30)
    assert keys_seen and losses.shape == (2, 30)
    assert float(losses[1, -1]) < float(losses[1, 0])


def test_evaluate_scalar_dict_and_default_eval_loss():
    hp = {"learning_rate": np.array([0.05, 0.1], np.float32), "momentum": np.zeros(2, np.float32)}

    def r2(params, data):
        x, y = data
        return 1 - jnp.mean((x @ params["w"] + params["b"] - y) ** 2) / jnp.var(y)

    t = trainer(eval_fn=r2, eval_data=DATA)
    state = t.init(hp, np.array([0, 1]))
    assert t.eval_names(hp) == ("r2",)
    assert set(t.evaluate(state)) == {"r2"}
    t = trainer(eval_data=DATA)
    state, _ = t.train(t.init(hp, np.array([0, 1])), 5)
    values = t.evaluate(state)["eval_loss"]
    expected = [mse(jax.tree_util.tree_map(lambda a: a[m], state.params), DATA) for m in range(2)]
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_hyperparameters_route_to_loss_and_init_by_name():
    def loss(params, batch, l2):
        return mse(params, batch) + l2 * jnp.sum(params["w"] ** 2)

    def init(key, init_scale):
        return {"w": init_scale * jnp.ones((6, 1)), "b": jnp.zeros(1)}

    t = jt.Trainer(loss, lambda learning_rate: optax.sgd(learning_rate), init_params=init,
                data=DATA, batch_size=200)
    hp = {"learning_rate": np.full(2, 0.0, np.float32), "l2": np.array([0.0, 1.0], np.float32),
          "init_scale": np.array([1.0, 2.0], np.float32)}
    state, losses = t.train(t.init(hp), 1)
    np.testing.assert_allclose(state.params["w"][:, 0, 0], [1.0, 2.0])
    base = [mse({"w": s * jnp.ones((6, 1)), "b": jnp.zeros(1)}, DATA) for s in (1.0, 2.0)]
    np.testing.assert_allclose(losses[:, 0], [base[0], base[1] + 1.0 * 6 * 4.0], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(data=(X, Y[:150])), ValueError, "same number of examples"),
        (dict(batch_size=500), ValueError, r"`batch_size` must lie in \[1, 200\]"),
        (dict(batch_size=0), ValueError, "`batch_size`"),
        (dict(batch_size=2.5), TypeError, "`batch_size` must be a positive int"),
        (dict(num_seeds=0), ValueError, "`num_seeds`"),
        (dict(key="seven"), TypeError, "`key`"),
        (dict(eval_fn=lambda p, d: 0.0), ValueError, "without `eval_data`"),
        (dict(data=(X, 3.0)), ValueError, "is a scalar"),
    ],
)
def test_constructor_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        trainer(**kwargs)


def test_non_scalar_loss_is_rejected_before_compiling():
    t = jt.Trainer(lambda p, b: (b[0] @ p["w"]).ravel(), make_sgd, init_params=init_fn, data=DATA,
                batch_size=8, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match=r"scalar floating-point loss .*got shape \(8,\)"):
        run(t, [0.1], [0.0], [0])
    assert t.compiles == 0


def test_routing_errors_name_the_hyperparameter():
    t = trainer(devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="`make_optimizer` needs 'momentum'"):
        t.init({"learning_rate": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match="hyperparameter `dropout` is not a parameter"):
        t.init({"learning_rate": np.ones(2, np.float32), "momentum": np.ones(2, np.float32),
                "dropout": np.ones(2, np.float32)})


def test_init_fn_returning_non_finite_parameters_is_refused_before_training(monkeypatch):
    for name in ("train", "train_with_metrics"):
        monkeypatch.setattr(jt.Trainer, name, lambda *a, **k: pytest.fail("trained"))

    def init_by_rate(key, learning_rate):  # a NaN weight for the larger learning rates
        params = init_fn(key)
        return {**params, "w": jnp.where(learning_rate > 0.05, jnp.nan, params["w"])}

    t = trainer(init_params=init_by_rate, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match=r"`init_fn` returned 6 non-finite value\(s\) \(NaN or "
                                         r"inf\) in params\['w'\] for member 1 \(seed 2, "
                                         r"learning_rate=0.1, momentum=0\)"):
        run(t, [0.01, 0.1], [0.0, 0.0], [0, 2])

    def init_inf_bias(key):  # the seed alone decides: computed once per seed
        return {**init_fn(key), "b": jnp.full((1,), jnp.inf)}

    with pytest.raises(ValueError, match=r"`init_fn` returned 1 non-finite .*params\['b'\] for "
                                         r"member 0 \(seed 1, learning_rate=0.1, momentum=0\)"):
        run(trainer(init_params=init_inf_bias, devices=jax.devices()[:1]), [0.1], [0.0], [1])
    # A sweep stops there too, instead of reporting every member diverged at step 0.
    with pytest.raises(ValueError, match=r"`init_fn` returned 1 non-finite .*params\['b'\]"):
        jt.sweep(mse, init_inf_bias, make_sgd, jt.Space(learning_rate=jt.choice([0.01, 0.1]),
                                                        momentum=jt.fixed(0.0)),
                 data=DATA, batch_size=16, steps=5, progress=False)


@pytest.mark.parametrize("width", [jt.randint(8, 64), jt.fixed(64)])
def test_a_shape_from_a_dynamic_hyperparameter_says_to_make_it_static(width):
    def init_wide(key, width):
        return {"w": jax.random.normal(key, (6, width)), "v": jnp.zeros((width, 1))}

    def loss_fn(params, batch):
        return jnp.mean((batch[0] @ params["w"] @ params["v"] - batch[1]) ** 2)

    with pytest.raises(TypeError, match=r"`init_fn` failed.*got \(6, .*hyperparameter `width` "
                                        r"sets a shape.*`width=jt.choice\(\[\.\.\.\], "
                                        r"static=True\)` or `jt.fixed\(\.\.\., static=True\)`"
                       ) as raised:
        jt.sweep(loss_fn, init_wide, lambda learning_rate: optax.sgd(learning_rate),
                 jt.Space(learning_rate=jt.fixed(0.1), width=width), data=DATA, batch_size=16,
                 steps=5, trials=2, progress=False)
    assert "static_argnums" not in str(raised.value)  # JAX's advice cannot be applied here


def test_seed_index_out_of_range():
    with pytest.raises(ValueError, match=r"`seed` indices must lie in \[0, 3\)"):
        run(trainer(devices=jax.devices()[:1]), [0.1], [0.0], [3])


def test_train_steps_must_be_positive():
    t = trainer()
    state, _ = run(t, [0.1, 0.2], [0.0, 0.0], [0, 1], steps=1)
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        t.train(state, 0)


def test_use_cpu_devices_too_late_says_so():
    jax.devices()  # the backend is running
    assert jt.use_cpu_devices(len(jax.devices("cpu"))) == len(jax.devices("cpu"))
    with pytest.raises(RuntimeError, match="came too late"):
        jt.use_cpu_devices(len(jax.devices("cpu")) + 1)


def test_diverged_member_rolls_back_to_the_start_of_its_chunk():
    t = trainer(devices=jax.devices()[:1])
    hp = {"learning_rate": np.array([0.05, 10.0], np.float32), "momentum": np.zeros(2, np.float32)}
    start, first = t.train(t.init(hp, np.array([0, 0])), 1)
    assert np.isfinite(np.asarray(first)).all()  # one step at lr=10 is still finite
    end, losses = t.train(start, 30)
    losses = np.asarray(losses)
    assert bool(end.alive[0]) and not bool(end.alive[1])
    step = int(end.diverged_step[1])
    assert 1 <= step < 31
    assert np.isfinite(losses[1, : step - 1]).all() and np.isnan(losses[1, step - 1:]).all()
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda a: a[1], end.params),
        jax.tree_util.tree_map(lambda a: a[1], start.params), atol=0, rtol=0,
    )
    again, later = t.train(end, 5)  # stays frozen, its losses stay NaN
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda a: a[1], again.params),
        jax.tree_util.tree_map(lambda a: a[1], start.params), atol=0, rtol=0,
    )
    assert np.isnan(np.asarray(later)[1]).all() and int(again.diverged_step[1]) == step


def test_callable_pytree_of_arrays_is_taken_as_parameters():
    class Linear:
        """A callable parameter container, as equinox modules are."""

        def __init__(self, w, b):
            self.w, self.b = w, b

        def __call__(self, x):
            return x @ self.w + self.b

    jax.tree_util.register_pytree_node(
        Linear, lambda m: ((m.w, m.b), None), lambda _, children: Linear(*children)
    )
    model = Linear(jnp.zeros((6, 1)), jnp.zeros(1))
    assert is_init_function(init_fn)
    assert not is_init_function(model)
    t = jt.Trainer(lambda m, batch: jnp.mean((m(batch[0]) - batch[1]) ** 2),
                lambda learning_rate: optax.sgd(learning_rate), init_params=model, data=DATA,
                batch_size=20, devices=jax.devices()[:1])
    state, losses = t.train(t.init({"learning_rate": np.array([0.0, 0.1], np.float32)}), 20)
    np.testing.assert_array_equal(np.asarray(state.params.w[0]), np.zeros((6, 1)))
    assert float(losses[1, -1]) < float(losses[1, 0])


def test_trainers_on_the_same_devices_share_one_copy_of_the_data():
    first = trainer(eval_data=DATA)
    second = trainer(data=first.data, eval_data=first.eval_data)
    assert second.data[0] is first.data[0] and second.eval_data[1] is first.eval_data[1]
