"""`data` as an iterable of batches: batch k feeds step k of every member."""

import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rounding
from test_data_sources import HP, X, Y, loss_fn, sgd, trainer
from test_runner import InterruptAt

import jaxtune as jt

SPACE = jt.Space(learning_rate=jt.loguniform(1e-3, 0.1))


IN_MEMORY = trainer((X, Y), batch_size=16)
ORDER = IN_MEMORY.minibatch_indices(0, 0, 40)  # seed 0's minibatches: the stream's batches


def batches(steps=40):
    """A one-shot generator of the in-memory trainer's minibatches, then it ends."""
    for rows in ORDER[:steps]:
        yield X[rows], Y[rows]


class Loader:
    """An iterable of batches, like a PyTorch DataLoader (not itself an iterator)."""

    def __iter__(self):
        return batches()


def test_a_stream_equals_in_memory_data_on_the_same_batches():
    a, losses_a = IN_MEMORY.train(IN_MEMORY.init(HP), 30)
    for source in (batches(), Loader()):  # an iterator; an iterable, like a DataLoader
        streamed = trainer(source)
        b, first = streamed.train(streamed.init(HP), 10)
        b, rest = streamed.train(b, 20)
        np.testing.assert_array_equal(np.concatenate([first, rest], 1), losses_a)
        np.testing.assert_array_equal(b.params, a.params)


def test_members_at_different_steps_read_the_batches_of_their_own_steps():
    streamed = trainer(batches())
    with jax.default_matmul_precision("highest"):  # per-member vs shared batches: GPUs too
        ahead, _ = streamed.train(streamed.init(HP), 10)
        mixed = streamed.concatenate([ahead, streamed.init(HP)])  # steps 10, 10, 0, 0
        mixed, losses = streamed.train(mixed, 12)
        alone, alone_losses = IN_MEMORY.train(IN_MEMORY.init(HP), 22)
    np.testing.assert_allclose(losses[:2], alone_losses[:, 10:], **rounding(22))
    np.testing.assert_allclose(losses[2:], alone_losses[:, :12], **rounding(22))
    np.testing.assert_allclose(mixed.params[:2], alone.params, **rounding(22))


SWEEP = dict(steps=40, trials=6, eval_every=10, progress=False, members_per_slice=2)


def in_memory_sweep(**kwargs):
    return jt.sweep(loss_fn, jnp.zeros((5, 1)), sgd, SPACE, data=(X, Y), batch_size=16,
                    **SWEEP, **kwargs)


def stream_sweep(data=None, **kwargs):
    return jt.sweep(loss_fn, jnp.zeros((5, 1)), sgd, SPACE,
                    data=batches() if data is None else data, **SWEEP, **kwargs)


def test_a_chunk_larger_than_max_chunk_bytes_trains_as_several():
    bytes_per_batch = (16 * 5 + 16 * 1) * 4
    stream = jt.HostStream(batches(), max_chunk_bytes=3 * bytes_per_batch)
    assert stream.batch_bytes == bytes_per_batch and stream.steps_per_chunk(1) == 3
    streamed = trainer(stream)
    state, losses = streamed.train(streamed.init(HP), 10)  # four calls: 3 + 3 + 2 + 2
    expected_state, expected = IN_MEMORY.train(IN_MEMORY.init(HP), 10)
    np.testing.assert_array_equal(losses, expected)
    np.testing.assert_array_equal(state.params, expected_state.params)
    assert int(state.step[0]) == 10
    stream.close()


class Spy(jt.Strategy):
    """Records how many batches the stream holds at every decision."""

    def __init__(self, stream, inner=None):
        self.stream, self.inner, self.held = stream, inner or jt.Strategy(), []

    @property
    def starts_members(self):
        return self.inner.starts_members

    def setup(self, search):
        self.inner.setup(search)

    def decide(self, search, report):
        self.held.append(self.stream.held)
        return self.inner.decide(search, report)


@pytest.mark.parametrize("in_flight", [6, 2])  # all at once; or slices in turn, from step 0
def test_a_sweep_over_a_stream_equals_in_memory_and_keeps_only_the_batches_still_needed(
        in_flight):
    stream = jt.HostStream(batches())
    spy = Spy(stream)
    streamed = stream_sweep(stream, strategy=spy, members_in_flight=in_flight)
    np.testing.assert_array_equal(streamed.train_loss,
                                  in_memory_sweep(members_in_flight=in_flight).train_loss)
    if in_flight == 6:  # every member at one step: the chunk in training and the next one
        assert max(spy.held) <= 2 * 10
    else:  # members still waiting start from step 0: every batch is kept until they do
        assert spy.held[0] >= 10 and spy.held[-1] <= 2 * 10
    stream.close()


def test_a_strategy_that_starts_members_later_reads_step_0_again():
    halving = lambda: jt.SuccessiveHalving(min_steps=10, max_trials=10)
    stream = jt.HostStream(batches())
    spy = Spy(stream, halving())
    streamed = stream_sweep(stream, strategy=spy, members_in_flight=2)
    expected = in_memory_sweep(strategy=halving(), members_in_flight=2)
    assert streamed.n_members == expected.n_members == 10
    np.testing.assert_array_equal(streamed.train_loss, expected.train_loss)
    assert min(spy.held) >= 10  # nothing forgotten: a new member may start at step 0
    stream.close()


class StartsOne(jt.Strategy):
    """Starts a configuration at the second decision without saying it would."""

    def __init__(self):
        self.seen = 0

    def decide(self, search, report):
        self.seen += 1
        return jt.Decision(start=search.ask(1)) if self.seen == 2 else jt.Decision()


def test_a_strategy_that_starts_members_unannounced_gets_the_fix():
    with pytest.raises(ValueError, match=r"no longer holds.*`starts_members = True`"):
        stream_sweep(strategy=StartsOne(), members_in_flight=6)


def test_a_checkpointed_sweep_resumes_from_a_fresh_iterator(tmp_path):
    uninterrupted = stream_sweep(strategy=InterruptAt(0))
    with pytest.raises(jt.SweepInterrupted):
        stream_sweep(strategy=InterruptAt(2), checkpoint_dir=tmp_path)
    source = batches()
    resumed = stream_sweep(source, strategy=InterruptAt(0), checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(resumed.train_loss, uninterrupted.train_loss)
    np.testing.assert_array_equal(resumed.params, uninterrupted.params)


def test_the_next_chunk_is_read_while_the_current_one_trains():
    read = []

    def counted():
        for k in range(100):
            read.append(k)
            yield X[:8], Y[:8]

    stream = jt.HostStream(counted())
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    chunk = stream.window([0], 10, sharding)
    assert chunk[0].shape == (10, 8, 5)
    deadline = time.monotonic() + 30
    while len(read) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(read) == 20  # the following chunk, and no further
    assert stream.window([10], 10, sharding)[0].shape == (10, 8, 5)
    assert stream.window([20, 5], 3, sharding)[0].shape == (6, 8, 5)  # rows 20-22, 5-7
    stream.close()


def short(steps):
    yield from batches(steps)


@pytest.mark.parametrize("data, message", [
    (short(15), r"iterator ended after 15 batches.*step 19.*`itertools.cycle`"),
    (iter([]), r"empty iterator"),
    (iter([(X[:16], Y[:16]), (X[:15], Y[:15])] * 20),
     r"batch 1 of `data`: leaf batch\[0\] has shape \(15, 5\).*`drop_last=True`"),
    (iter([(X[:16], Y[:16]), [X[:16], Y[:16]]] * 20), r"batch 1 of `data` has structure"),
    (iter([(X[:16], np.array(["a"] * 16))]),
     r"batch 0 of `data`: leaf batch\[1\] is a ndarray \(<U1\), not a numeric array"),
    (iter([np.float32(1.0)] * 20), r"leading example axis"),
])
def test_unusable_streams_are_refused_with_the_reason(data, message):
    with pytest.raises((ValueError, TypeError), match=message):
        jt.sweep(loss_fn, jnp.zeros((5, 1)), sgd, jt.Space(learning_rate=jt.choice([0.01])),
                 data=data, steps=20, eval_every=10, progress=False)


def with_a_bad_batch(bad, at=12):
    """The stream's batches, with batch `at` replaced by `bad`."""
    for step, batch in enumerate(batches()):
        yield bad if step == at else batch


@pytest.mark.parametrize("prefetch", [True, False])  # read in the background, or when asked
@pytest.mark.parametrize("bad, message", [
    ((X[:8], Y[:8]), r"batch 12 of `data`: leaf batch\[0\] has shape \(8, 5\)"),
    ((X[:16].astype(np.float64), Y[:16]), r"batch 12 of `data`: leaf batch\[0\] .*dtype float64"),
    ([X[:16], Y[:16]], r"batch 12 of `data` has structure"),
    (None, r"batch 12 of `data` has structure"),
    ("x", r"batch 12 of `data`: leaf batch is a str \(<U1\), not a numeric array"),
])
def test_a_bad_batch_in_a_later_chunk_is_refused_not_skipped(prefetch, bad, message):
    # Batch 12 is read with the chunk of steps 10-19, in the background with `prefetch`.
    stream = jt.HostStream(with_a_bad_batch(bad), prefetch=prefetch)
    with pytest.raises((ValueError, TypeError), match=message):
        stream_sweep(stream, members_in_flight=6)
    stream.close()


class NextOnly:
    """Has `__next__` but no `__iter__`: not iterable, not a stream."""

    def __next__(self):
        return X[:16], Y[:16]


class DeclaredNotIterable:
    __iter__ = None  # how Python marks a class as not iterable


@pytest.mark.parametrize("data", [object(), NextOnly(), DeclaredNotIterable()])
@pytest.mark.parametrize("entry", ["sweep", "lr_find", "Trainer"])
def test_data_that_is_not_iterable_is_refused_naming_data(entry, data):
    message = (rf"`data` leaf data is a {type(data).__name__}, not an array; `data` must be a "
               r"pytree of arrays.*or an iterable of batches")
    with pytest.raises(TypeError, match=message):
        if entry == "sweep":
            jt.sweep(loss_fn, jnp.zeros((5, 1)), sgd, jt.Space(learning_rate=jt.choice([0.01])),
                     data=data, steps=20, progress=False)
        elif entry == "lr_find":
            jt.lr_find(loss_fn, jnp.zeros((5, 1)), sgd, data=data, steps=20)
        else:
            trainer(data)


@pytest.mark.parametrize("kwargs, message", [
    (dict(source=3), r"`source` must be an iterable of batches .*got int"),
    (dict(source=batches(), max_chunk_bytes=0), r"`max_chunk_bytes`"),
    (dict(source=batches(), prefetch="yes"), r"`prefetch`"),
])
def test_host_stream_arguments_are_checked(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        jt.HostStream(**kwargs)


def test_batch_size_must_match_the_batches():
    with pytest.raises(ValueError, match=r"`batch_size`=32, but the batches of `data` hold 16"):
        trainer(batches(), batch_size=32)
    assert trainer(batches(), batch_size=16).batch_size == 16


def test_lr_find_takes_a_stream_without_batch_size():
    found = jt.lr_find(loss_fn, jnp.zeros((5, 1)), sgd, data=batches(), min_lr=1e-4, max_lr=10.0,
                       steps=40, seeds=1)
    expected = jt.lr_find(loss_fn, jnp.zeros((5, 1)), sgd, data=(X, Y), batch_size=16,
                          min_lr=1e-4, max_lr=10.0, steps=40, seeds=1)
    np.testing.assert_array_equal(found.loss, expected.loss)  # the same batches


def test_an_error_in_the_pipeline_reaches_the_caller_as_it_is():
    def failing():
        yield from batches(15)
        raise OSError("disk gone at batch 15")

    with pytest.raises(OSError, match="disk gone at batch 15"):  # not "the iterator ended"
        stream_sweep(failing(), members_in_flight=6)


STALLED_SWEEP = """
import threading
import jax.numpy as jnp, numpy as np, optax
import jaxtune as jt

x = np.ones((8, 5), np.float32)

def stalled():
    for _ in range(25):
        yield x, x[:, :1]
    print("stalled", flush=True)
    threading.Event().wait()  # a pipeline that hangs: a dead worker, a lost network mount

loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
jt.sweep(loss, jnp.zeros((5, 1)), optax.sgd, jt.Space(learning_rate=jt.choice([0.1])),
         data=stalled(), steps=40, eval_every=10, progress=False)
"""


def test_ctrl_c_twice_ends_a_sweep_whose_pipeline_hangs():
    # Batch 25 is read in the background with the chunk of steps 20-29, while the main
    # thread trains steps 10-19 and then waits for that chunk.
    process = subprocess.Popen([sys.executable, "-c", STALLED_SWEEP], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "stalled\n", process.communicate()[1]
        time.sleep(1.0)  # the main thread reaches its wait for the chunk
        process.send_signal(signal.SIGINT)  # asks for a stop at the next record point
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)  # stops at once
        interrupted = time.monotonic()
        try:
            stdout, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the process still runs 15 s after the second Ctrl-C")
        ended = time.monotonic() - interrupted
    finally:
        process.kill()
        process.wait()
    assert "stopping at the next record point" in stdout
    assert "KeyboardInterrupt" in stderr
    assert ended < 5, f"the process ended {ended:.1f} s after the second Ctrl-C"
