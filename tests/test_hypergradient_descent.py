"""Hypergradient descent (Baydin et al., ICLR 2018): each rule against the paper's
equations written out in NumPy, and traced initial rates and betas in a population."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rounding

import jaxtune as jt
from jaxtune.hypergradient_descent import (
    HypergradientState,
    hd_adam,
    hd_sgd,
    hd_sgdn,
    hypergradient_learning_rate,
    scale_by_hypergradient,
)

# f(x) = x.A.x / 2 - c.x over x = concat(w [3], b [2]): an ill-conditioned quadratic, so
# consecutive gradients agree (alpha grows) early and disagree once it overshoots.
RNG = np.random.default_rng(0)
Q = np.linalg.qr(RNG.normal(size=(5, 5)))[0]
A = Q @ np.diag([4.0, 2.0, 1.0, 0.5, 0.1]) @ Q.T
C = RNG.normal(size=5)
X0 = RNG.normal(size=5)
STEPS = 50


def grad_np(x):
    return A @ x - C


def tree_of(x):
    return {"w": x[:3], "b": x[3:]}


def flat(tree):
    return jnp.concatenate([tree["w"], tree["b"]])


def loss(params):
    x = flat(params)
    return 0.5 * x @ jnp.asarray(A, x.dtype) @ x - jnp.asarray(C, x.dtype) @ x


# ---------------------------------------------------------------------- the paper, in NumPy
# Algorithms 4-6 of the paper, line by line. `du` is the derivative of the previous update
# u_{t-1} with respect to the learning rate (0 before the first step).


def paper_sgd_hd(alpha, beta, steps=STEPS):
    x, g_prev, alphas = X0.copy(), np.zeros(5), []
    for _ in range(steps):
        g = grad_np(x)
        h = -g @ g_prev  # h_t = g_t . (-g_{t-1})
        alpha = alpha - beta * h
        x = x - alpha * g
        g_prev = g
        alphas.append(alpha)
    return x, np.array(alphas)


def paper_sgdn_hd(alpha, beta, mu=0.9, steps=STEPS):
    x, v, du, alphas = X0.copy(), np.zeros(5), np.zeros(5), []
    for _ in range(steps):
        g = grad_np(x)
        h = g @ du
        alpha = alpha - beta * h
        v = mu * v + g
        u = -alpha * (g + mu * v)
        du = -(g + mu * v)
        x = x + u
        alphas.append(alpha)
    return x, np.array(alphas)


def paper_adam_hd(alpha, beta, b1=0.9, b2=0.999, eps=1e-8, steps=STEPS):
    x, m, v, du, alphas = X0.copy(), np.zeros(5), np.zeros(5), np.zeros(5), []
    for t in range(1, steps + 1):
        g = grad_np(x)
        h = g @ du
        alpha = alpha - beta * h
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        u = -alpha * m_hat / (np.sqrt(v_hat) + eps)
        du = -m_hat / (np.sqrt(v_hat) + eps)
        x = x + u
        alphas.append(alpha)
    return x, np.array(alphas)


def run(optimizer, steps=STEPS, x0=X0, rate=hypergradient_learning_rate):
    """`steps` steps of `optimizer` on the quadratic, scanned: (final x, `rate` per step)."""
    params = tree_of(jnp.asarray(x0))

    def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), rate(state)

    (params, _), alphas = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
    return flat(params), alphas


CASES = {
    # name: (the jaxtune optimizer, the paper's rule, alpha_0, beta)
    "sgd": (hd_sgd, paper_sgd_hd, 0.05, 0.01),
    "sgdn": (hd_sgdn, paper_sgdn_hd, 0.01, 0.001),
    "adam": (hd_adam, paper_adam_hd, 0.05, 0.001),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_rule_follows_the_papers_equations(name):
    make, paper, alpha0, beta = CASES[name]
    with jax.enable_x64(True):
        x, alphas = run(make(alpha0, beta))
    expected_x, expected_alphas = paper(alpha0, beta)
    np.testing.assert_allclose(alphas, expected_alphas, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(x, expected_x, rtol=1e-6, atol=1e-9)
    # the rate really moved, so the comparison says something about the rule
    assert np.max(np.abs(expected_alphas / alpha0 - 1)) > 0.1, name
    assert expected_alphas[0] == alpha0  # d_0 = 0: the first step keeps alpha_0


@pytest.mark.parametrize("name, plain", [
    ("sgd", lambda lr: optax.sgd(lr)),
    ("sgdn", lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)),
    ("adam", lambda lr: optax.adam(lr)),
])
def test_beta_zero_is_the_plain_optimizer(name, plain):
    make, _, alpha0, _ = CASES[name]
    x, alphas = run(make(alpha0, 0.0))
    expected, _ = run(plain(alpha0), rate=lambda state: 0.0)
    np.testing.assert_allclose(x, expected, **rounding(STEPS))
    assert np.all(np.asarray(alphas) == np.float32(alpha0))


def test_traced_alpha0_and_beta_under_jit_and_vmap_equal_single_runs():
    alphas0 = jnp.array([0.01, 0.03, 0.05, 0.05])
    betas = jnp.array([0.0, 0.01, 0.01, 0.003])
    batched_x, batched_alphas = jax.jit(jax.vmap(lambda a, b: run(hd_sgd(a, b))))(alphas0, betas)
    for i in range(4):
        x, alphas = run(hd_sgd(float(alphas0[i]), float(betas[i])))
        np.testing.assert_allclose(batched_x[i], x, **rounding(STEPS))
        np.testing.assert_allclose(batched_alphas[i], alphas, **rounding(STEPS))
        _, paper_alphas = paper_sgd_hd(float(alphas0[i]), float(betas[i]))
        np.testing.assert_allclose(alphas, paper_alphas, rtol=1e-4)  # float32 vs float64
    assert not np.allclose(batched_alphas[2], batched_alphas[3])  # beta makes the difference


# ---------------------------------------------------------------------- in a population

DATA_X = RNG.normal(size=(128, 5)).astype(np.float32)
DATA_Y = (DATA_X @ RNG.normal(size=(5, 1)) + 0.1 * RNG.normal(size=(128, 1))).astype(np.float32)


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def init_fn(key):
    return {"w": 0.3 * jax.random.normal(key, (5, 1)), "b": jnp.zeros(1)}


def make_hd_adam(learning_rate, beta):
    return hd_adam(learning_rate, beta)


def sweep(configs, steps=30):
    return jt.sweep(mse, init_fn, make_hd_adam, jt.Space(
        learning_rate=jt.loguniform(1e-4, 1.0), beta=jt.uniform(0.0, 1e-2)),
        configs=configs, data=(DATA_X, DATA_Y), batch_size=16, steps=steps, seeds=1,
        progress=False, devices=jax.devices()[:1])


def test_inside_a_sweep_members_equal_single_runs():
    configs = {"learning_rate": [1e-3, 1e-2, 1e-2], "beta": [1e-3, 0.0, 1e-3]}
    result = sweep(configs)
    for trial in range(3):
        single = sweep({name: [values[trial]] for name, values in configs.items()})
        np.testing.assert_allclose(result.train_loss[trial], single.train_loss[0], **rounding(30))
        for name in ("w", "b"):
            np.testing.assert_allclose(result.params[name][trial], single.params[name][0],
                                       **rounding(30))
    # beta changed the training (the third member is the second with beta > 0)
    assert not np.allclose(result.params["w"][1], result.params["w"][2])


def test_learning_rates_read_from_a_population_state():
    trainer = jt.Trainer(mse, make_hd_adam, init_params=init_fn, data=(DATA_X, DATA_Y),
                         batch_size=16, devices=jax.devices()[:1])
    hparams = {"learning_rate": np.array([1e-3, 1e-2, 1e-2], np.float32),
               "beta": np.array([1e-3, 0.0, 1e-3], np.float32)}
    state = trainer.init(hparams, seed=np.zeros(3, np.int32))
    curve = []
    for _ in range(3):
        state, _ = trainer.train(state, steps=10)
        curve.append(np.asarray(hypergradient_learning_rate(state.opt_state)))
    curve = np.stack(curve, axis=1)  # [members, record points]
    assert curve.shape == (3, 3)
    assert np.all(curve[1] == np.float32(1e-2))  # beta = 0: the rate stays alpha_0
    assert np.all(curve[[0, 2]] != hparams["learning_rate"][[0, 2], None])
    alone = trainer.init({k: v[2:] for k, v in hparams.items()}, seed=np.zeros(1, np.int32))
    alone, _ = trainer.train(alone, steps=30)
    np.testing.assert_allclose(hypergradient_learning_rate(alone.opt_state), curve[2, -1:],
                               **rounding(30))


# ---------------------------------------------------------------------- errors and state


def test_state_is_a_named_tuple_holding_the_rate():
    state = hd_sgd(0.1, 0.01).init(tree_of(jnp.asarray(X0, jnp.float32)))
    assert isinstance(state, HypergradientState)
    assert float(state.learning_rate) == pytest.approx(0.1)
    assert all(float(jnp.abs(leaf).max()) == 0 for leaf in jax.tree_util.tree_leaves(
        state.direction))
    chained = optax.chain(optax.clip_by_global_norm(1.0), hd_sgd(0.1, 0.01))
    assert float(hypergradient_learning_rate(chained.init(tree_of(jnp.zeros(5))))) == \
        pytest.approx(0.1)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"`beta` must be non-negative, got beta=-1"):
        hd_adam(1e-3, -1.0)
    with pytest.raises(ValueError, match=r"`learning_rate` must be finite"):
        hd_sgd(float("nan"))
    with pytest.raises(TypeError, match=r"`momentum` must be a number or an array"):
        hd_sgdn(momentum="0.9")
    with pytest.raises(ValueError, match=r"exactly one HypergradientState.*found 0"):
        hypergradient_learning_rate(optax.sgd(0.1).init(jnp.zeros(2)))
    two = optax.chain(hd_sgd(), scale_by_hypergradient(optax.identity(), 0.1, 0.0))
    with pytest.raises(ValueError, match=r"found 2"):
        hypergradient_learning_rate(two.init(jnp.zeros(2)))
