"""Static groups compiled ahead in background threads: the programs used, the results, errors."""

import concurrent.futures
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rounding

import jaxtune as jt
from jaxtune.engine import programs
from jaxtune.runner import ahead as ahead_module
from jaxtune.runner import loop

RNG = np.random.default_rng(7)
X = RNG.normal(size=(64, 4)).astype(np.float32)
Y = (X @ RNG.normal(size=(4, 1))).astype(np.float32)
ONE_DEVICE = jax.devices()[:1]
STEPS = 4


def model(scale):
    """A loss and init of hidden width `width` (static); `scale` makes the functions (and
    so their compiled programs) new to the process's cache."""
    def init_fn(key, width):
        k1, k2 = jax.random.split(key)
        return {"w1": scale * jax.random.normal(k1, (4, width)),
                "w2": scale * jax.random.normal(k2, (width, 1))}

    def loss_fn(params, batch):
        x, y = batch
        return jnp.mean((jnp.tanh(x @ params["w1"]) @ params["w2"] - y) ** 2)

    return loss_fn, init_fn


def sweep(scale, ahead, **kwargs):
    """A sweep over two widths, compiling ahead (`JAXTUNE_COMPILE_AHEAD`) or not."""
    loss_fn, init_fn = model(scale)
    space = jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1),
                     width=jt.choice([2, 3], static=True))
    configs = {"learning_rate": [0.01, 0.05], "width": [2, 3]}
    options = dict(data=(X, Y), batch_size=8, steps=STEPS, eval_every=2, configs=configs,
                   eval_data=(X, Y), progress=False, devices=ONE_DEVICE)
    options.update(kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ahead_module.ENV, "1" if ahead else "0")
        return jt.sweep(loss_fn, init_fn, lambda learning_rate: optax.sgd(learning_rate),
                        space, **options)


@pytest.fixture
def ahead_first(monkeypatch):
    """Each round starts only once every program queued ahead is compiled; returns the
    (thread, key) of every compile."""
    compiled = []
    original_compile = programs.Compiler._compile

    def compile_(self, key, *args, **kwargs):
        compiled.append((threading.current_thread(), key))
        return original_compile(self, key, *args, **kwargs)

    original_fill = loop.Runner.fill

    def fill(self):
        if self._ahead is not None:
            concurrent.futures.wait(self._ahead.jobs)
        original_fill(self)

    monkeypatch.setattr(programs.Compiler, "_compile", compile_)
    monkeypatch.setattr(loop.Runner, "fill", fill)
    return compiled


def test_programs_compiled_ahead_are_the_ones_used_and_results_are_the_same(ahead_first):
    on = sweep(0.51, ahead=True)
    keys = [key for _, key in ahead_first]
    # The sweep's thread compiled only the data's minibatch order, which compiling ahead
    # leaves to it (traced, not compiled: the training program starts first).
    assert {key[0][0] for thread, key in ahead_first
            if thread is threading.main_thread()} == {programs.ORDER}
    assert len(set(keys)) == len(keys) == on.timing["compiles"]  # nothing compiled twice
    assert on.timing["compile_wait_s"] < on.timing["compile_s"]
    off = sweep(0.51, ahead=False)
    np.testing.assert_allclose(on.train_loss, off.train_loss, **rounding(STEPS))
    np.testing.assert_allclose(on.metrics["eval_loss"], off.metrics["eval_loss"],
                               **rounding(STEPS))
    np.testing.assert_array_equal(on.steps_trained, off.steps_trained)


class Boom(RuntimeError):
    pass


def test_an_error_compiling_ahead_reaches_the_sweep_as_itself(ahead_first, monkeypatch):
    raised = []
    original = programs.evaluate_program

    def evaluate_program(*args):
        if threading.current_thread() is threading.main_thread():
            return original(*args)  # the sweep's own thread would compile it fine
        raised.append(Boom("no evaluation program"))
        raise raised[-1]

    monkeypatch.setattr(programs, "evaluate_program", evaluate_program)
    with pytest.raises(Boom) as caught:
        sweep(0.54, ahead=True)
    assert raised and caught.value is raised[0]


def test_two_threads_asking_for_one_program_compile_it_once():
    mesh = jax.sharding.Mesh(np.array(ONE_DEVICE), ("member",))
    compiler = programs.Compiler(mesh, ("test", 0.55))
    both = threading.Barrier(2)

    def build():
        return lambda x: x * 0.55

    def ask():
        both.wait()
        return compiler.program("twice", build, jnp.ones(3))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: ask(), range(2))
    assert first is second
    assert compiler.compiles == 1


def test_a_failed_compile_is_raised_once_then_compiled_again():
    mesh = jax.sharding.Mesh(np.array(ONE_DEVICE), ("member",))
    compiler = programs.Compiler(mesh, ("test", 0.56))
    calls = []

    def build():
        calls.append(1)
        if len(calls) == 1:
            raise Boom("first build fails")
        return lambda x: x * 0.56

    def ahead():
        with programs.Compiler.ahead():
            compiler.program("retry", build, jnp.ones(2))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        error = pool.submit(ahead).exception()
    assert isinstance(error, Boom)
    with pytest.raises(Boom) as caught:
        compiler.program("retry", build, jnp.ones(2))
    assert caught.value is error
    np.testing.assert_allclose(compiler.program("retry", build, jnp.ones(2))(jnp.ones(2)), 0.56)
    assert compiler.compiles == 1 and len(calls) == 2


def test_a_repack_compiles_its_new_shapes_ahead_and_nothing_twice(monkeypatch):
    compiled = []
    original_compile = programs.Compiler._compile
    original_repacking = loop.Runner._repacking

    def compile_(self, key, *args, **kwargs):
        compiled.append((threading.current_thread(), key))
        return original_compile(self, key, *args, **kwargs)

    def repacking(self, *args):  # the repack goes on once its programs compiled ahead
        original_repacking(self, *args)
        concurrent.futures.wait(self._ahead.jobs)

    monkeypatch.setattr(programs.Compiler, "_compile", compile_)
    monkeypatch.setattr(loop.Runner, "_repacking", repacking)
    loss_fn, init_fn = model(0.57)
    result = jt.sweep(loss_fn, lambda key: init_fn(key, 3), optax.sgd,
                      jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1)), data=(X, Y),
                      batch_size=8, steps=8, eval_every=2, trials=4, eval_data=(X, Y),
                      strategy=jt.SuccessiveHalving(eta=2, min_steps=2), progress=False,
                      devices=ONE_DEVICE)
    keys = [key for _, key in compiled]
    assert len(set(keys)) == len(keys) == result.timing["compiles"]  # nothing twice

    def members(key):
        return key[3][1][0][0][0]  # the population's first leaf: [members, ...]

    def name(key):
        return key[0][0] if isinstance(key[0], tuple) else key[0]

    trained = {members(key) for key in keys if name(key) == programs.TRAIN}
    assert trained == {4, 2, 1}  # 4 members halved twice: every slice size trained
    repacked = [thread for thread, key in compiled if members(key) in (1, 2)
                and name(key) in (programs.TRAIN, programs.EVALUATE)]
    assert len(repacked) == 4 and threading.main_thread() not in repacked


def test_a_repacked_slice_takes_a_fitted_size():
    from jaxtune.runner.slices import Slices

    one, two = Slices(None, None, 1, 32, 64), Slices(None, None, 2, 64, 128)
    assert [one.fitted(n) for n in (1, 3, 5, 9, 12, 13, 27)] == [1, 3, 6, 12, 12, 16, 32]
    assert [two.fitted(n) for n in (1, 3, 5, 9, 33)] == [2, 4, 6, 12, 48]
