"""Tests for `jaxtune.transforms` (and the optax transforms jaxtune relies on).

References: hand-computed traces, a plain-Python model of the documented
reduce-on-plateau rule, optax (where optax is correct), scikit-learn's Lasso.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optax import contrib

import jaxtune as jt

# --------------------------------------------------------------------------- #
# reduce_on_plateau
# --------------------------------------------------------------------------- #

ROP_DEFAULTS = dict(factor=0.5, patience=2, rtol=0.1, atol=0.0, cooldown=1,
                    accumulation_size=1, min_scale=0.2)


def run_plateau(transform, values, params=None):
    """Feeds `values` one by one; returns the stacked states and scaled updates."""
    params = jnp.zeros(2) if params is None else params
    state = transform.init(params)
    ones = jax.tree.map(jnp.ones_like, params)

    def body(state, value):
        updates, state = transform.update(ones, state, params, value=value)
        return state, (state, updates)

    _, (states, updates) = jax.lax.scan(body, state, jnp.asarray(values, jnp.float32))
    return states, updates


def reference_plateau(values, factor, patience, rtol, atol, cooldown, accumulation_size,
                      min_scale):
    """Plain-Python model of the documented rule; returns scale after each value."""
    scale, best, plateau, cooling, total, count = 1.0, float("inf"), 0, 0, 0.0, 0
    scales = []
    for value in values:
        total += value
        count += 1
        if count == accumulation_size:
            average, total, count = total / accumulation_size, 0.0, 0
            threshold = best - rtol * abs(best) - atol if best != float("inf") else best
            if average < threshold:
                best, plateau = average, 0
            else:
                plateau += 1
            if cooling > 0:
                cooling, plateau = cooling - 1, 0
            elif plateau >= max(patience, 1):
                scale, plateau, cooling = max(scale * factor, min_scale), 0, cooldown
        scales.append(scale)
    return np.array(scales)


def test_reduce_on_plateau_hand_trace_patience_cooldown_min_scale():
    # factor=0.5, patience=2, rtol=0.1 (threshold = best - 0.1 * |best|), cooldown=1,
    # min_scale=0.2.
    values = [10.0, 9.5, 8.5, 8.0, 8.0, 8.0, 8.0, 8.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    expected = [
        # (scale, best, plateau_count, cooldown_count)
        (1.0, 10.0, 0, 0),   # first value always improves on +inf
        (1.0, 10.0, 1, 0),   # 9.5 is not below 10 - 1 = 9
        (1.0, 8.5, 0, 0),    # 8.5 < 9: new best
        (1.0, 8.5, 1, 0),    # threshold 7.65
        (0.5, 8.5, 0, 1),    # plateau reaches patience: reduce, start cooldown
        (0.5, 8.5, 0, 0),    # cooldown: ignored
        (0.5, 8.5, 1, 0),
        (0.25, 8.5, 0, 1),   # second reduction
        (0.25, 1.0, 0, 0),   # improvement during cooldown still updates best
        (0.25, 1.0, 1, 0),
        (0.2, 1.0, 0, 1),    # 0.125 clipped to min_scale
        (0.2, 1.0, 0, 0),
        (0.2, 1.0, 1, 0),
        (0.2, 1.0, 0, 1),    # reduction stays at min_scale
    ]
    states, updates = run_plateau(jt.reduce_on_plateau(**ROP_DEFAULTS), values)
    scale, best, plateau, cooldown = (np.array(column) for column in zip(*expected))
    np.testing.assert_allclose(states.scale, scale, rtol=1e-6)
    np.testing.assert_allclose(states.best_value, best, rtol=1e-6)
    np.testing.assert_array_equal(states.plateau_count, plateau)
    np.testing.assert_array_equal(states.cooldown_count, cooldown)
    # The update of each step is scaled by the scale after that step.
    np.testing.assert_allclose(updates[:, 0], scale, rtol=1e-6)


def test_reduce_on_plateau_hand_trace_accumulation_negative_values_atol():
    # accumulation_size=3: one evaluation every 3 values, on their mean.
    # rtol=0, atol=0.5, patience=1, factor=0.1.
    values = [-1.0, -3.0, -5.0, -3.0, -4.0, -3.5, -4.0, -4.0, -4.0]
    transform = jt.reduce_on_plateau(factor=0.1, patience=1, rtol=0.0, atol=0.5,
                                     cooldown=0, accumulation_size=3)
    states, _ = run_plateau(transform, values)
    # (scale, best, count, avg_value)
    expected = [
        (1.0, np.inf, 1, -1.0),
        (1.0, np.inf, 2, -2.0),
        (1.0, -3.0, 0, 0.0),   # mean -3 improves on +inf
        (1.0, -3.0, 1, -3.0),
        (1.0, -3.0, 2, -3.5),
        (0.1, -3.0, 0, 0.0),   # mean -3.5 is not strictly below -3 - 0.5: reduce
        (0.1, -3.0, 1, -4.0),
        (0.1, -3.0, 2, -4.0),
        (0.1, -4.0, 0, 0.0),   # mean -4 < -3.5: new best
    ]
    scale, best, count, average = (np.array(column) for column in zip(*expected))
    np.testing.assert_allclose(states.scale, scale, rtol=1e-6)
    np.testing.assert_array_equal(states.best_value, best)
    np.testing.assert_array_equal(states.count, count)
    np.testing.assert_allclose(states.avg_value, average, rtol=1e-6)


def test_reduce_on_plateau_negative_plateau_reduces_where_optax_does_not():
    values = [-10.0] * 8
    ours, _ = run_plateau(jt.reduce_on_plateau(factor=0.5, patience=2), values)
    # Constant value: no improvement after the first, a reduction every 2 values.
    np.testing.assert_allclose(ours.scale, [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125])
    # Pins optax 0.2.8: with best < 0, `(1 - rtol) * best` lies above best, every
    # repeat of -10 counts as an improvement and the scale never drops.
    theirs, _ = run_plateau(contrib.reduce_on_plateau(factor=0.5, patience=2), values)
    np.testing.assert_array_equal(theirs.scale, np.ones(8))
    # A slightly *worse* value (-9.99) counts as an improvement for optax, not for us.
    values = [-10.0, -9.99, -9.99]
    ours, _ = run_plateau(jt.reduce_on_plateau(factor=0.5, patience=2, rtol=0.01), values)
    np.testing.assert_array_equal(ours.best_value, [-10.0, -10.0, -10.0])
    np.testing.assert_allclose(ours.scale, [1.0, 1.0, 0.5])


def test_reduce_on_plateau_negative_needs_relative_margin():
    # best = -10, rtol = 0.1: an improvement must go below -11.
    values = [-10.0, -10.5, -11.5]
    states, _ = run_plateau(jt.reduce_on_plateau(patience=5, rtol=0.1), values)
    np.testing.assert_allclose(states.best_value, [-10.0, -10.0, -11.5])
    np.testing.assert_array_equal(states.plateau_count, [0, 1, 0])


def test_reduce_on_plateau_patience_zero_reduces_on_first_non_improvement():
    states, _ = run_plateau(jt.reduce_on_plateau(factor=0.5, patience=0),
                            [5.0, 4.0, 4.0, 3.0, 3.0])
    np.testing.assert_allclose(states.scale, [1.0, 1.0, 0.5, 0.5, 0.25])


OPTAX_CONFIGS = [
    dict(factor=0.5, patience=3, rtol=1e-2, atol=0.0, cooldown=0, accumulation_size=1),
    dict(factor=0.2, patience=2, rtol=1e-4, atol=0.05, cooldown=2, accumulation_size=1,
         min_scale=0.01),
    dict(factor=0.7, patience=1, rtol=0.05, atol=0.01, cooldown=1, accumulation_size=4),
]


@pytest.mark.parametrize("config", OPTAX_CONFIGS)
def test_reduce_on_plateau_matches_optax_on_positive_values(config):
    rng = np.random.default_rng(0)
    steps = np.arange(120)
    values = 1.0 + 5.0 * np.exp(-steps / 15.0) + 0.3 * rng.random(120)
    ours, ours_updates = jax.jit(lambda v: run_plateau(jt.reduce_on_plateau(**config), v))(values)
    theirs, theirs_updates = jax.jit(
        lambda v: run_plateau(contrib.reduce_on_plateau(**config), v))(values)
    assert float(ours.scale[-1]) < 1.0  # the sequence exercises reductions
    for field in jt.ReduceOnPlateauState._fields:
        np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field), rtol=1e-6,
                                   err_msg=field)
    np.testing.assert_allclose(ours_updates, theirs_updates, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(-16, 16), min_size=1, max_size=30),
    factor=st.sampled_from([0.5, 0.25, 1.0]),
    patience=st.integers(0, 4),
    rtol=st.sampled_from([0.0, 0.125, 0.25]),
    atol=st.sampled_from([0.0, 0.5, 1.0]),
    cooldown=st.integers(0, 3),
    accumulation_size=st.sampled_from([1, 2]),
    min_scale=st.sampled_from([0.0, 0.125]),
)
def test_reduce_on_plateau_matches_reference_model(values, factor, patience, rtol, atol,
                                                    cooldown, accumulation_size, min_scale):
    # Values are multiples of 1/8 (and dyadic hyperparameters), so float32 is exact.
    values = np.array(values, np.float32) / 8
    padded = np.zeros(30, np.float32)
    padded[: len(values)] = values
    hyper = np.array([factor, patience, rtol, atol, cooldown, accumulation_size, min_scale],
                     np.float32)
    scales = _plateau_scales_from_array(padded, hyper)[: len(values)]
    expected = reference_plateau(values.tolist(), factor, patience, rtol, atol, cooldown,
                                 accumulation_size, min_scale)
    np.testing.assert_array_equal(np.asarray(scales), expected.astype(np.float32))


@jax.jit
def _plateau_scales_from_array(values, hyper):
    names = ["factor", "patience", "rtol", "atol", "cooldown", "accumulation_size", "min_scale"]
    transform = jt.reduce_on_plateau(**dict(zip(names, hyper)))
    states, _ = run_plateau(transform, values)
    return states.scale


NUMERIC_VALUES = {
    "factor": [0.5, 0.1, 1.0],
    "patience": [0, 1, 3],
    "rtol": [0.0, 0.05, 0.3],
    "atol": [0.0, 0.1, 0.6],
    "cooldown": [0, 1, 3],
    "accumulation_size": [1, 2, 3],
    "min_scale": [0.0, 0.3, 0.6],
}
PLATEAU_VALUES = [5.0, 4.0, 3.9, 3.8, 3.8, 3.7, 3.0, 3.0, 2.95, 2.95, 2.9, 2.9, -1.0, -1.0,
                  -1.05, -1.05, -1.1, -1.1, -1.1, -1.1, -1.1, -1.1]


@pytest.mark.parametrize("name", sorted(NUMERIC_VALUES))
def test_reduce_on_plateau_vmap_over_each_argument_equals_loop(name):
    base = dict(factor=0.5, patience=1, rtol=0.01, atol=0.0, cooldown=0,
                accumulation_size=1, min_scale=0.0)

    def scales(argument):
        states, _ = run_plateau(jt.reduce_on_plateau(**{**base, name: argument}),
                                PLATEAU_VALUES)
        return states

    batched = jax.jit(jax.vmap(scales))(jnp.asarray(NUMERIC_VALUES[name]))
    for member, value in enumerate(NUMERIC_VALUES[name]):
        looped = scales(value)  # a Python number, validated and closed over
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[member], batched), looped,
                                    rtol=1e-6)
    # The sweep is not trivial: members end at different scales.
    assert len(set(np.asarray(batched.scale[:, -1]).tolist())) > 1


def test_reduce_on_plateau_in_chain_with_adam_matches_optax():
    # Positive losses, where optax's rule is correct: parity through the whole chain,
    # with `value` passed through chain's extra args.
    def train(plateau):
        optimizer = optax.chain(optax.adam(0.3), plateau)
        params = {"w": jnp.array([2.0, -3.0]), "b": jnp.array(1.5)}

        def loss_fn(p):
            return jnp.sum(p["w"] ** 2) + p["b"] ** 2 + 0.5

        def step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = optimizer.update(grads, state, params, value=loss)
            return (optax.apply_updates(params, updates), state), loss

        (params, state), losses = jax.lax.scan(step, (params, optimizer.init(params)), None,
                                               length=80)
        return params, state[1].scale, losses

    config = dict(factor=0.5, patience=3, rtol=1e-3, cooldown=1)
    ours = jax.jit(lambda: train(jt.reduce_on_plateau(**config)))()
    theirs = jax.jit(lambda: train(contrib.reduce_on_plateau(**config)))()
    assert float(ours[1]) < 1.0
    chex.assert_trees_all_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_reduce_on_plateau_keeps_dtypes():
    params = {"a": jnp.zeros(2, jnp.bfloat16), "b": jnp.zeros(2, jnp.float32)}
    transform = jt.reduce_on_plateau(factor=jnp.float32(0.5), patience=1)
    states, _ = run_plateau(transform, [1.0, 1.0, 1.0], params)
    state = jax.tree.map(lambda x: x[-1], states)
    assert state.scale.dtype == jnp.bfloat16
    assert state.best_value.dtype == jnp.float32
    assert float(state.scale) == 0.25


def test_reduce_on_plateau_accepts_tracers_without_validation():
    @jax.jit
    def build(factor, rtol, atol):
        # Out-of-range tracers cannot be checked: construction must not raise.
        transform = jt.reduce_on_plateau(factor=factor, rtol=rtol, atol=atol)
        return transform.init(jnp.zeros(1)).scale

    assert float(build(2.0, 2.0, -1.0)) == 1.0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(factor=0.0), ValueError, r"`factor` must lie in \(0.0, 1.0\], got factor=0.0\. "
                                       r"Use factor=1 to never reduce\."),
        (dict(factor=1.5), ValueError, r"`factor` must lie in \(0.0, 1.0\], got factor=1.5"),
        (dict(factor=float("nan")), ValueError, r"`factor` must be finite, got factor=nan"),
        (dict(factor="0.1"), TypeError, r"`factor` must be a number or an array, got str"),
        (dict(factor=True), TypeError, r"`factor` must be a number or an array, got the bool"),
        (dict(patience=-1), ValueError,
         r"`patience` must be a non-negative integer, got patience=-1"),
        (dict(patience=2.5), ValueError,
         r"`patience` must be a non-negative integer, got patience=2.5"),
        (dict(rtol=-0.1), ValueError, r"`rtol` must lie in \[0.0, 1.0\], got rtol=-0.1"),
        (dict(rtol=1.5), ValueError, r"`rtol` must lie in \[0.0, 1.0\], got rtol=1.5"),
        (dict(atol=-1.0), ValueError, r"`atol` must be non-negative, got atol=-1.0"),
        (dict(cooldown=-2), ValueError,
         r"`cooldown` must be a non-negative integer, got cooldown=-2"),
        (dict(accumulation_size=0), ValueError,
         r"`accumulation_size` must be an integer >= 1, got accumulation_size=0\. "
         r"Use accumulation_size=1"),
        (dict(min_scale=-0.1), ValueError,
         r"`min_scale` must lie in \[0.0, 1.0\], got min_scale=-0.1\. The scale starts at 1"),
        (dict(min_scale=2.0), ValueError, r"`min_scale` must lie in \[0.0, 1.0\]"),
        (dict(patience=np.array([1, -1])), ValueError,
         r"`patience` must be a non-negative integer, got patience=\[ 1 -1\]"),
    ],
)
def test_reduce_on_plateau_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        jt.reduce_on_plateau(**kwargs)


def test_reduce_on_plateau_requires_value():
    transform = jt.reduce_on_plateau()
    with pytest.raises(TypeError, match="value"):
        transform.update(jnp.ones(1), transform.init(jnp.ones(1)))


# --------------------------------------------------------------------------- #
# Decoupled weight decay: optax.add_decayed_weights is reused, pinned here
# --------------------------------------------------------------------------- #


def test_add_decayed_weights_traced_scheduled_masked_under_vmap():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    mask = {"w": True, "b": False}
    grads = {"w": jnp.array([0.1, 0.2]), "b": jnp.array([-0.3])}
    learning_rate, steps = 0.1, 6

    def train(weight_decay):
        # A jaxtune schedule of the step count with a traced end value: a linear
        # ramp from rate / 4 at step 0 to rate at step 3, i.e. rate * min(t + 1, 4) / 4.
        schedule = jt.linear_schedule(weight_decay / 4, weight_decay, transition_steps=3)
        optimizer = optax.chain(optax.add_decayed_weights(schedule, mask),
                                optax.scale(-learning_rate))

        def step(carry, _):
            p, state = carry
            updates, state = optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        (p, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
        return p

    rates = np.array([0.0, 0.1, 0.5], np.float32)
    batched = jax.jit(jax.vmap(train))(jnp.asarray(rates))
    for member, rate in enumerate(rates):
        # Hand formula: w <- w - lr * (g + wd_t * w) with wd_t = rate * min(t + 1, 4) / 4;
        # the masked-out bias only follows its gradient.
        w, b = np.array([1.0, -2.0]), np.array([0.5])
        for t in range(steps):
            w = w - learning_rate * (np.array([0.1, 0.2]) + rate * min(t + 1, 4) / 4 * w)
            b = b - learning_rate * np.array([-0.3])
        np.testing.assert_allclose(batched["w"][member], w, rtol=1e-5)
        np.testing.assert_allclose(batched["b"][member], b, rtol=1e-5)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[member], batched),
                                    jax.jit(train)(float(rate)), rtol=1e-6)


# --------------------------------------------------------------------------- #
# proximal_l1
# --------------------------------------------------------------------------- #


def soft_threshold(w, tau):
    return np.sign(w) * np.maximum(np.abs(w) - tau, 0.0)


def test_proximal_l1_hand_values_and_exact_zeros():
    params = jnp.array([0.05, -0.5, 2.0, 0.3, 0.3])
    incoming = jnp.array([-0.1, 0.0, -0.2, 0.6, -0.35])
    transform = jt.proximal_l1(learning_rate=0.1, l1=2.0)  # tau = 0.2
    updates, state = transform.update(incoming, transform.init(params), params)
    new_params = optax.apply_updates(params, updates)
    # w = params + incoming = [-0.05, -0.5, 1.8, 0.9, -0.05]
    np.testing.assert_allclose(new_params, [0.0, -0.3, 1.6, 0.7, 0.0], atol=1e-6)
    # Weights that end within tau of zero (including those crossing zero) are exactly 0.
    assert float(new_params[0]) == 0.0 and float(new_params[4]) == 0.0
    assert int(state.count) == 1


def test_proximal_l1_exact_zeros_for_many_values():
    rng = np.random.default_rng(1)
    params = jnp.asarray(rng.normal(size=1000), jnp.float32)
    incoming = jnp.asarray(rng.normal(size=1000), jnp.float32)
    transform = jt.proximal_l1(0.5, 0.6)
    updates, _ = transform.update(incoming, transform.init(params), params)
    new_params = np.asarray(optax.apply_updates(params, updates))
    w = np.asarray(params) + np.asarray(incoming)
    inside = np.abs(w) <= 0.3 - 1e-6
    assert inside.sum() > 100
    assert np.all(new_params[inside] == 0.0)
    np.testing.assert_allclose(new_params, soft_threshold(w, 0.3), atol=1e-6)


def test_proximal_l1_converges_to_soft_threshold_on_quadratic():
    # min_w 0.5 * a * (w - c)^2 + l1 * |w|  ->  w* = soft_threshold(c, l1 / a).
    a, l1 = 2.0, 1.0
    c = jnp.array([3.0, 0.4, -0.2, -2.0, 0.5])
    learning_rate = 0.3  # < 1 / a: many steps needed

    optimizer = optax.chain(optax.sgd(learning_rate), jt.proximal_l1(learning_rate, l1))

    @jax.jit
    def solve(w):
        def step(carry, _):
            w, state = carry
            grads = a * (w - c)
            updates, state = optimizer.update(grads, state, w)
            return (optax.apply_updates(w, updates), state), None

        (w, _), _ = jax.lax.scan(step, (w, optimizer.init(w)), None, length=100)
        return w

    w = solve(jnp.array([1.0, -1.0, 1.0, 1.0, -3.0]))
    np.testing.assert_allclose(w, soft_threshold(np.asarray(c), l1 / a), atol=1e-6)
    assert float(w[1]) == 0.0 and float(w[2]) == 0.0 and float(w[4]) == 0.0


def test_proximal_l1_solves_lasso_like_scikit_learn():
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x @ np.array([2.0, 0.0, -1.5, 0.0, 0.3, 0.0]) + 0.1 * rng.normal(size=40)).astype(
        np.float32)
    alpha = 0.2
    reference = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(
        x.astype(np.float64), y.astype(np.float64))
    # sklearn minimizes ||y - Xw||^2 / (2n) + alpha * ||w||_1.
    lipschitz = float(np.linalg.eigvalsh(x.T @ x / len(x)).max())
    learning_rate = 1.0 / lipschitz
    optimizer = optax.chain(optax.sgd(learning_rate), jt.proximal_l1(learning_rate, alpha))

    def loss_fn(w):
        return jnp.sum((y - x @ w) ** 2) / (2 * len(x))

    @jax.jit
    def solve():
        def step(carry, _):
            w, state = carry
            updates, state = optimizer.update(jax.grad(loss_fn)(w), state, w)
            return (optax.apply_updates(w, updates), state), None

        w = jnp.zeros(6)
        (w, _), _ = jax.lax.scan(step, (w, optimizer.init(w)), None, length=3000)
        return w

    w = np.asarray(solve())
    np.testing.assert_allclose(w, reference.coef_, atol=1e-4)
    np.testing.assert_array_equal(w == 0.0, reference.coef_ == 0.0)
    assert np.sum(w == 0.0) >= 2


def test_proximal_l1_schedules_of_count():
    params = jnp.array([1.0, -1.0])
    transform = jt.proximal_l1(learning_rate=lambda count: 0.1 * (count + 1),
                               l1=lambda count: 1.0 + count)
    state = transform.init(params)
    # step 0: tau = 0.1 * 1 = 0.1; step 1: tau = 0.2 * 2 = 0.4; step 2: 0.3 * 3 = 0.9
    expected = [[0.9, -0.9], [0.5, -0.5], [0.0, 0.0]]
    for row in expected:
        updates, state = transform.update(jnp.zeros(2), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(params, row, atol=1e-6)
    assert int(state.count) == 3


def test_proximal_l1_mask_tree_and_callable():
    params = {"w": jnp.array([0.1, -2.0]), "b": jnp.array([0.1])}
    incoming = {"w": jnp.zeros(2), "b": jnp.array([0.05])}
    for mask in ({"w": True, "b": False}, lambda tree: {"w": True, "b": False}):
        transform = jt.proximal_l1(1.0, 0.5, mask=mask)
        updates, _ = transform.update(incoming, transform.init(params), params)
        new_params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(new_params["w"], [0.0, -1.5])
        # Unmasked leaf: incoming update passes through unchanged.
        np.testing.assert_array_equal(updates["b"], incoming["b"])


@pytest.mark.parametrize("name", ["learning_rate", "l1"])
def test_proximal_l1_vmap_equals_loop(name):
    rng = np.random.default_rng(2)
    params = jnp.asarray(rng.normal(size=8), jnp.float32)
    grads = jnp.asarray(rng.normal(size=8), jnp.float32)
    base = dict(learning_rate=0.1, l1=1.0)

    def train(argument, scheduled):
        kwargs = {**base, name: argument}
        if scheduled:  # a schedule closing over the swept value
            kwargs[name] = lambda count: argument / (1.0 + count)
        optimizer = optax.chain(optax.sgd(0.1), jt.proximal_l1(**kwargs))

        def step(carry, _):
            p, state = carry
            updates, state = optimizer.update(grads + p, state, p)
            return (optax.apply_updates(p, updates), state), None

        (p, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=10)
        return p

    values = [0.0, 0.5, 3.0]
    for scheduled in (False, True):
        batched = jax.jit(jax.vmap(lambda v: train(v, scheduled)))(jnp.asarray(values))
        for member, value in enumerate(values):
            np.testing.assert_allclose(batched[member], jax.jit(
                lambda: train(value, scheduled))(), rtol=1e-6, atol=1e-7)
        assert not np.allclose(batched[0], batched[2])


def test_proximal_l1_requires_params():
    transform = jt.proximal_l1(0.1, 0.1)
    with pytest.raises(ValueError, match=r"`proximal_l1` needs the current parameters"):
        transform.update(jnp.ones(1), transform.init(jnp.ones(1)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(learning_rate=0.1, l1=-1.0), ValueError, r"`l1` must be non-negative, got l1=-1.0"),
        (dict(learning_rate=-0.1, l1=1.0), ValueError,
         r"`learning_rate` must be non-negative, got learning_rate=-0.1"),
        (dict(learning_rate=0.1, l1=float("inf")), ValueError, r"`l1` must be finite"),
        (dict(learning_rate=0.1, l1="big"), TypeError,
         r"`l1` must be a number, an array or a schedule `step -> value`, got str"),
        (dict(learning_rate=True, l1=1.0), TypeError, r"`learning_rate` must be a number"),
    ],
)
def test_proximal_l1_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        jt.proximal_l1(**kwargs)


# --------------------------------------------------------------------------- #
# l1_penalty, l2_penalty
# --------------------------------------------------------------------------- #

PENALTY_PARAMS = {"dense": {"w": jnp.array([[1.0, -2.0], [3.0, 0.5]]), "b": jnp.array([4.0])},
                  "scale": jnp.array(-1.5)}


def test_penalties_hand_values():
    # sum |w| = 1 + 2 + 3 + 0.5 + 4 + 1.5 = 12; sum w^2 = 1 + 4 + 9 + 0.25 + 16 + 2.25 = 32.5
    np.testing.assert_allclose(jt.l1_penalty(PENALTY_PARAMS, 0.1), 1.2, rtol=1e-6)
    np.testing.assert_allclose(jt.l2_penalty(PENALTY_PARAMS, 0.1), 1.625, rtol=1e-6)


def test_penalties_mask_prefix_and_callable():
    prefix = {"dense": {"w": True, "b": False}, "scale": False}
    # only dense.w: sum |w| = 6.5, sum w^2 = 14.25
    np.testing.assert_allclose(jt.l1_penalty(PENALTY_PARAMS, 2.0, mask=prefix), 13.0)
    np.testing.assert_allclose(jt.l2_penalty(PENALTY_PARAMS, 2.0, mask=prefix), 14.25)
    subtree = {"dense": True, "scale": False}  # a prefix: the whole `dense` subtree
    np.testing.assert_allclose(jt.l1_penalty(PENALTY_PARAMS, 1.0, mask=subtree), 10.5)
    by_rank = lambda params: jax.tree.map(lambda x: x.ndim > 1, params)
    np.testing.assert_allclose(jt.l2_penalty(PENALTY_PARAMS, 1.0, mask=by_rank), 7.125)
    none = jax.tree.map(lambda _: False, PENALTY_PARAMS)
    assert float(jt.l1_penalty(PENALTY_PARAMS, 1.0, mask=none)) == 0.0


def test_penalties_gradients_and_sweep_inside_loss():
    params = {"w": jnp.array([1.0, -2.0, 0.0]), "b": jnp.array([3.0])}
    mask = {"w": True, "b": False}

    def loss_fn(p, l1, l2):
        return jt.l1_penalty(p, l1, mask) + jt.l2_penalty(p, l2, mask)

    grads = jax.jit(jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0)))(
        params, jnp.array([0.0, 0.5]), jnp.array([1.0, 2.0]))
    # d/dw = l1 * sign(w) + l2 * w (sign(0) = 0); the bias is not penalized.
    np.testing.assert_allclose(grads["w"][0], [1.0, -2.0, 0.0])
    np.testing.assert_allclose(grads["w"][1], [0.5 + 2.0, -0.5 - 4.0, 0.0])
    np.testing.assert_array_equal(grads["b"], np.zeros((2, 1)))
    for member, (l1, l2) in enumerate([(0.0, 1.0), (0.5, 2.0)]):
        np.testing.assert_allclose(
            jax.vmap(loss_fn, in_axes=(None, 0, 0))(params, jnp.array([0.0, 0.5]),
                                                    jnp.array([1.0, 2.0]))[member],
            loss_fn(params, l1, l2), rtol=1e-6)


@pytest.mark.parametrize("penalty", [jt.l1_penalty, jt.l2_penalty])
def test_penalty_errors(penalty):
    name = penalty.__name__
    with pytest.raises(ValueError, match=r"`weight` must be non-negative, got weight=-0.1"):
        penalty(PENALTY_PARAMS, -0.1)
    with pytest.raises(TypeError, match=rf"`mask` of `{name}` must have bool leaves"):
        penalty(PENALTY_PARAMS, 0.1, mask={"dense": 1, "scale": 0})
    with pytest.raises(ValueError, match=rf"`mask` of `{name}` must have the structure of"):
        penalty(PENALTY_PARAMS, 0.1, mask={"other": True, "scale": False})


# --------------------------------------------------------------------------- #
# No recompilation
# --------------------------------------------------------------------------- #


def test_train_step_with_transforms_compiles_once():
    # Explicit dtype: a weakly typed `jnp.array(0.3)` would retrace once its
    # optimizer state becomes strongly typed after the first step.
    params = {"w": jnp.array([1.0, -0.2, 0.05]), "b": jnp.array(0.3, jnp.float32)}

    def loss_fn(p, l2):
        return jnp.sum((p["w"] - 0.5) ** 2) + p["b"] ** 2 + jt.l2_penalty(p, l2)

    def make_optimizer(hyper):
        return optax.chain(
            optax.adamw(hyper["learning_rate"], weight_decay=hyper["weight_decay"]),
            jt.reduce_on_plateau(factor=hyper["factor"], patience=hyper["patience"]),
            jt.proximal_l1(hyper["learning_rate"], hyper["l1"]),
        )

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train_step(params, state, hyper):
        loss, grads = jax.value_and_grad(loss_fn)(params, hyper["l2"])
        updates, state = make_optimizer(hyper).update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    chex.clear_trace_counter()
    finals = []
    for lr, wd, factor, patience, l1, l2 in [(0.1, 1e-4, 0.5, 2, 0.0, 0.0),
                                             (0.05, 1e-2, 0.2, 3, 0.01, 0.1),
                                             (0.2, 0.0, 1.0, 0, 0.1, 0.01)]:
        hyper = {"learning_rate": jnp.float32(lr), "weight_decay": jnp.float32(wd),
                 "factor": jnp.float32(factor), "patience": jnp.int32(patience),
                 "l1": jnp.float32(l1), "l2": jnp.float32(l2)}
        p, state = params, make_optimizer(hyper).init(params)
        for _ in range(5):
            p, state, loss = train_step(p, state, hyper)
        finals.append(float(loss))
    assert len(set(finals)) == 3
