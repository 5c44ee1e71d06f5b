"""Every chunk form (`jaxtune.engine.forms`) trains exactly as the scanned, vmapped one.

The forms run the same steps in differently compiled programs, so they are compared
within `rounding(steps)`: losses, training metrics, parameters, model state, the
divergence rollback (which members froze, at which step), on the three forms of
`data`, on one device and two; then how "auto" and "measure" choose, and the
refusal of a bad `chunk_form`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rounding

import jaxtune as jt
from jaxtune.engine import forms
from jaxtune.engine.trainer import Trainer

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.1).astype(np.float32)
PARAMS = {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}
# The last member's learning rate makes it diverge in its first chunk: rolled back, frozen.
HP = {"learning_rate": np.array([0.01, 0.05, 0.1, 1e4], np.float32)}
SEEDS = np.array([0, 1, 0, 1])
STEPS = 8  # two chunks of 4
LOOPS = ["loop+vmap", "loop+unroll"]


def loss_fn(params, batch, key):
    """A linear model with a little noise drawn from the step's key, and one metric."""
    x, y = batch
    pred = x @ params["w"] + params["b"] + 1e-3 * jax.random.normal(key, (x.shape[0], 1))
    loss = jnp.mean((pred - y) ** 2)
    return loss, {"mae": jnp.mean(jnp.abs(pred - y))}


def make_optimizer(learning_rate):
    return optax.sgd(learning_rate, momentum=0.9)


def batch_fn(key, step):
    rows = jax.random.randint(key, (16,), 0, X.shape[0])
    return jnp.asarray(X)[rows], jnp.asarray(Y)[rows]


def stream():
    return jt.HostStream((X[k % 4 * 16:][:16], Y[k % 4 * 16:][:16]) for k in range(40))


DATA = {"arrays": lambda: dict(data=(X, Y), batch_size=16),
        "batch_fn": lambda: dict(data=batch_fn),
        "stream": lambda: dict(data=stream())}


def trained(form, data, devices=1):
    """Two chunks of 4 steps: from step 0 (aligned), then with the members at different
    steps (each draws its own batches), the population donated."""
    trainer = Trainer(loss_fn, make_optimizer, init_params=PARAMS, num_seeds=2,
                      chunk_form=form, devices=jax.devices()[:devices], **DATA[data]())
    state = trainer.init(HP, SEEDS)
    state, losses, metrics = trainer.train_with_metrics(state, STEPS // 2)
    shifted = np.asarray(state.step) + 2 * (np.arange(len(SEEDS)) % 2)
    state = trainer.place(state._replace(step=jnp.asarray(shifted, jnp.int32)))
    state, more, more_metrics = trainer.train_with_metrics(state, STEPS // 2, donate=True)
    if trainer.stream is not None:
        trainer.stream.close()
    return trainer, state, np.concatenate([losses, more], 1), np.concatenate(
        [metrics["mae"], more_metrics["mae"]], 1)


def check_same(got, want, steps=STEPS):
    """Same losses, metrics, parameters, model state, steps and rollback."""
    (_, state, losses, mae), (_, want_state, want_losses, want_mae) = got, want
    np.testing.assert_allclose(losses, want_losses, **rounding(steps))
    np.testing.assert_allclose(mae, want_mae, **rounding(steps))
    for field in ("step", "alive", "diverged_step"):
        np.testing.assert_array_equal(getattr(state, field), getattr(want_state, field))
    for a, b in zip(jax.tree_util.tree_leaves((state.params, state.model_state)),
                    jax.tree_util.tree_leaves((want_state.params, want_state.model_state))):
        np.testing.assert_allclose(a, b, **rounding(steps))


@pytest.fixture(scope="module")
def baselines():
    return {data: trained(forms.DEFAULT, data) for data in DATA}


@pytest.mark.parametrize("form, data", [(form, data) for data in DATA for form in LOOPS])
def test_every_loop_form_trains_as_scan_vmap(baselines, form, data):
    got = trained(form, data)
    assert got[0].chunk_form == form and got[0].chunk_forms == {form: 2}
    check_same(got, baselines[data])
    state = got[1]
    assert not state.alive[3] and state.diverged_step[3] >= 0  # diverged, rolled back
    assert np.all(np.isnan(got[2][3, state.diverged_step[3]:]))
    assert np.all(np.isfinite(jax.tree_util.tree_leaves(state.params)[0]))


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs two devices (tests/conftest.py)")
def test_a_loop_shards_over_two_devices(baselines):
    got = trained("loop+unroll", "arrays", devices=2)
    assert got[0].num_devices == 2
    check_same(got, baselines["arrays"])


def batchnorm_loss(params, batch, *, model_state):
    """A hand-written batch norm: its running mean is the model state."""
    x, y = batch
    mean = jnp.mean(x, 0)
    pred = (x - mean) @ params["w"] + params["b"]
    return jnp.mean((pred - y) ** 2), ({"mean": 0.9 * model_state["mean"] + 0.1 * mean}, {})


@pytest.mark.parametrize("devices, loop", [(1, "loop+unroll"), (2, "loop+vmap")])
def test_model_state_in_the_loop_forms(devices, loop):
    """Model state; on two devices a program of plain `jit`, no `shard_map`."""
    if len(jax.devices()) < devices:
        pytest.skip("needs two devices (tests/conftest.py)")
    results = {}
    for form in (forms.DEFAULT, loop):
        trainer = Trainer(batchnorm_loss, make_optimizer,
                          init_params=(PARAMS, {"mean": jnp.zeros(3)}), data=(X, Y),
                          batch_size=16, chunk_form=form, devices=jax.devices()[:devices])
        state = trainer.init(HP)
        state, losses = trainer.train(state, 3)
        state, more = trainer.train(state, 3, donate=True)
        results[form] = (state, np.concatenate([losses, more], 1))
    want_state, want_losses = results[forms.DEFAULT]
    for form, (state, losses) in results.items():
        np.testing.assert_allclose(losses, want_losses, **rounding(6), err_msg=form)
        np.testing.assert_array_equal(state.alive, want_state.alive)
        for a, b in zip(jax.tree_util.tree_leaves((state.params, state.model_state)),
                        jax.tree_util.tree_leaves((want_state.params, want_state.model_state))):
            np.testing.assert_allclose(a, b, **rounding(6), err_msg=form)
    assert not want_state.alive[3] and np.all(np.isfinite(want_state.model_state["mean"]))


def test_unroll_caps_the_copies_of_the_step():
    """And scan+unroll, the scan of `run_chunk` over groups, trains as scan+vmap."""
    assert forms.member_groups(3) == [(0, 1), (1, 1), (2, 1)]
    groups = forms.member_groups(18)
    assert len(groups) == forms.UNROLL_GROUPS and sum(size for _, size in groups) == 18
    assert [start for start, _ in groups] == list(np.cumsum([0] + [s for _, s in groups])[:-1])
    hp = {"learning_rate": np.linspace(0.01, 0.1, 18).astype(np.float32)}
    losses = []
    for form in (forms.DEFAULT, "scan+unroll"):  # 8 groups of 2 or 3 members, vmapped
        trainer = Trainer(loss_fn, make_optimizer, init_params=PARAMS, data=(X, Y),
                          batch_size=16, chunk_form=form, devices=jax.devices()[:1])
        losses.append(trainer.train(trainer.init(hp), 3)[1])
    np.testing.assert_allclose(losses[1], losses[0], **rounding(3))


def conv_loss(params, batch):
    x, y = batch
    h = jax.lax.conv_general_dilated(x.reshape(-1, 1, 3, 1), params["k"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.mean((h.reshape(x.shape[0], 3) @ params["w"] - y) ** 2)


def test_auto_loops_a_convolution_on_cpu_and_scans_the_rest():
    conv = Trainer(conv_loss, make_optimizer, data=(X, Y), batch_size=16,
                   init_params={"k": jnp.ones((1, 3, 1, 1)) / 3, "w": jnp.zeros((3, 1))})
    conv.train(conv.init(HP), 1)
    assert conv.chunk_form == "loop+unroll"
    mlp = Trainer(loss_fn, make_optimizer, init_params=PARAMS, data=(X, Y), batch_size=16)
    mlp.train(mlp.init(HP), 1)
    assert mlp.chunk_form == forms.DEFAULT
    assert forms.auto_form("gpu", True) == forms.auto_form("cpu", False) == forms.DEFAULT
    # Found however deep the convolution is: inside a scan, a jit, a cond's branch.
    nested = jax.make_jaxpr(lambda k, x: jax.lax.scan(
        lambda c, _: (jax.jit(lambda c: jax.lax.cond(
            True, lambda c: jax.lax.conv(c, k, (1, 1), "SAME"), lambda c: c, c))(c), None),
        x, None, length=2)[0])(jnp.ones((1, 1, 3, 3)), jnp.ones((1, 1, 4, 4)))
    assert forms.has_convolution(nested)
    assert not forms.has_convolution(jax.make_jaxpr(lambda x: jnp.sin(x) @ x)(jnp.ones((2, 2))))


def test_measure_picks_the_fastest_once_and_remembers_it():
    def measured_loss(params, batch, key):  # a function of its own: nothing measured yet
        return loss_fn(params, batch, key)

    def trainer():
        return Trainer(measured_loss, make_optimizer, init_params=PARAMS, data=(X, Y),
                       batch_size=16, chunk_form="measure")

    first = trainer()
    state, losses = first.train(first.init(HP), 4)
    chosen = first.chunk_form
    assert chosen in forms.FORMS
    assert first.compiles >= 1 + len(forms.FORMS)  # init, and every form's programs
    baseline = Trainer(measured_loss, make_optimizer, init_params=PARAMS, data=(X, Y),
                       batch_size=16)
    want_state, want_losses = baseline.train(baseline.init(HP), 4)
    np.testing.assert_allclose(losses, want_losses, **rounding(4))
    np.testing.assert_array_equal(state.diverged_step, want_state.diverged_step)
    second = trainer()  # the same program shape: the choice reused, nothing compiled
    second.train(second.init(HP), 4)
    assert second.chunk_forms == {chosen: 1} and second.compiles == 0


@pytest.mark.parametrize("bad", ["fast", "scan", None, 3])
def test_a_bad_chunk_form_is_refused(bad):
    with pytest.raises(ValueError, match=r"`chunk_form` must be one of 'auto', 'measure', "
                                         r"'scan\+vmap'.*got chunk_form="):
        Trainer(loss_fn, make_optimizer, init_params=PARAMS, data=(X, Y), batch_size=16,
                chunk_form=bad)
    with pytest.raises(ValueError, match="`chunk_form` must be one of"):
        jt.sweep(loss_fn, PARAMS, make_optimizer, jt.Space(learning_rate=jt.fixed(0.1)),
                 data=(X, Y), batch_size=16, steps=4, chunk_form=bad, progress=False)


def test_sweep_runs_every_group_in_the_form_asked():
    space = jt.Space(learning_rate=jt.choice([0.01, 0.05]))
    results = [jt.sweep(loss_fn, PARAMS, make_optimizer, space, data=(X, Y), batch_size=16,
                        steps=6, eval_every=3, chunk_form=form, progress=False)
               for form in (forms.DEFAULT, "loop+unroll")]
    np.testing.assert_allclose(results[1].curve("train_loss"), results[0].curve("train_loss"),
                               **rounding(6))
