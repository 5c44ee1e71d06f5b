"""Checkpoints and file writes: nothing silent.

A checkpoint of other data is refused, two sweeps never share a `checkpoint_dir`, a
damaged checkpoint is refused naming its path, a failed write names its target, and a
writer killed outright leaves no temporary file for good.
"""

import errno
import io
import json
import os
import re
import socket
import subprocess
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import interrupting

import jaxtune as jt
from jaxtune import fingerprint as fingerprints
from jaxtune.engine.sources import ORDER_ALGORITHM

RNG = np.random.default_rng(7)
X = RNG.normal(size=(32, 2)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0]], np.float32)).astype(np.float32)
ONE_DEVICE = jax.devices()[:1]


def loss(params, batch):
    x, y = batch
    return jnp.mean((x @ params - y) ** 2)


def tiny_sweep(checkpoint_dir=None, **changes):
    """Two configurations, four steps, two record points: a checkpoint in a second."""
    arguments = dict(data=(X, Y), batch_size=8, steps=4, eval_every=2, trials=2,
                     devices=ONE_DEVICE, progress=False, checkpoint_dir=checkpoint_dir)
    arguments.update(changes)
    init_params = arguments.pop("init_params", np.zeros((2, 1), np.float32))
    loss_fn = arguments.pop("loss_fn", loss)
    return jt.sweep(loss_fn, init_params, lambda learning_rate: optax.sgd(learning_rate),
                    jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1)), **arguments)


def dead_pid():
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def result():
    return tiny_sweep()


def test_a_save_into_a_missing_directory_names_the_target(result, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "x.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"cannot write {target}: No such file or directory; the directory {target.parent} "
            "does not exist")):
        result.save(target)


def full_disk(descriptor):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file_being_written(result, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", full_disk)  # the last write of every file
    checkpoint = tmp_path / "checkpoint" / "sweep.npz"
    with pytest.raises(OSError, match=re.escape(
            f"cannot write {checkpoint}: No space left on device; the disk is full")):
        tiny_sweep(checkpoint.parent)
    with pytest.raises(OSError, match=re.escape(f"cannot write {tmp_path / 'x.npz'}: No space left")):
        result.save(tmp_path / "x.npz")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]  # no temporary file left
    assert os.listdir(checkpoint.parent) == []


def test_temporary_files_of_killed_writers_are_removed_at_the_next_write(result, tmp_path):
    dead, live = dead_pid(), os.getpid()
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    left = [checkpoint / f"sweep.npz.tmp-{dead}-0123abcd", tmp_path / f"x.npz.tmp-{dead}-89abcdef"]
    kept = [checkpoint / f"sweep.npz.tmp-{live}-0123abcd",  # a live writer's
            tmp_path / f"y.npz.tmp-{dead}-89abcdef"]  # another target's
    for path in left + kept:
        path.write_bytes(b"PK\x03\x04 half of an archive")
    tiny_sweep(checkpoint)
    result.save(tmp_path / "x.npz")
    assert sorted(os.listdir(checkpoint)) == ["sweep.npz", kept[0].name]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "x.npz", kept[1].name]


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoint")
    tiny_sweep(directory)
    return (directory / "sweep.npz").read_bytes()


def rewritten(change):
    """A damage: the checkpoint's arrays, `change`d, written back as an .npz."""

    def damage(data):
        with np.load(io.BytesIO(data)) as archive:
            arrays = {key: archive[key] for key in archive.files}
        change(arrays)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    return damage


def flipped(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def without_fingerprint(arrays):
    meta = json.loads(str(arrays["__meta__"]))
    del meta["fingerprint"]
    arrays["__meta__"] = np.asarray(json.dumps(meta))


DAMAGES = {
    "truncated": lambda data: data[:len(data) // 2],
    "empty": lambda data: b"",
    "random bytes": lambda data: np.random.default_rng(0).bytes(len(data)),
    "flipped byte": flipped,
    "meta not JSON": rewritten(lambda arrays: arrays.update(__meta__=np.asarray("{'round': 1"))),
    "meta missing": rewritten(lambda arrays: arrays.pop("__meta__")),
    "array missing": rewritten(lambda arrays: arrays.pop("status")),
    "parameters missing": rewritten(lambda arrays: arrays.pop("params:0:0")),
    "no fingerprint": rewritten(without_fingerprint),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_refused_naming_its_path(checkpoint_bytes, tmp_path, damage):
    (tmp_path / "sweep.npz").write_bytes(DAMAGES[damage](checkpoint_bytes))
    with pytest.raises(ValueError, match=re.escape(f"the checkpoint {tmp_path / 'sweep.npz'} is "
                                                   "damaged") + ".*delete it") as caught:
        tiny_sweep(tmp_path)
    assert "allow_pickle" not in str(caught.value)


def batch_fn_over(x, y):
    """A `batch_fn` drawing its batches from (copies of) arrays it closes over."""
    x, y = jnp.array(x), jnp.array(y)

    def batch_fn(key, step):
        rows = jax.random.randint(key, (8,), 0, x.shape[0])
        return x[rows], y[rows]

    return batch_fn


SAME = {  # the arguments of the first sweep, built anew on each call (equal values)
    "data": lambda: dict(data=(X.copy(), Y.copy())),
    "eval_data": lambda: dict(eval_data=(X.copy(), Y.copy())),
    "init_params": lambda: dict(init_params=np.zeros((2, 1), np.float32)),
    "batch_fn": lambda: dict(data=batch_fn_over(X, Y), batch_size=None),
}
OTHER = {  # other values of the same shapes and dtypes
    "data": dict(data=(X[::-1].copy(), Y[::-1].copy())),
    "eval_data": dict(eval_data=(X, Y + 1)),
    "init_params": dict(init_params=np.ones((2, 1), np.float32)),
    "batch_fn": dict(data=batch_fn_over(X, Y + 1), batch_size=None),
}


@pytest.mark.parametrize("argument", OTHER)
def test_a_checkpoint_of_other_data_of_the_same_shapes_is_refused(tmp_path, argument):
    finished = tiny_sweep(tmp_path, **SAME[argument]())
    again = tiny_sweep(tmp_path, **SAME[argument]())  # equal values: the same sweep, resumed
    np.testing.assert_array_equal(again.train_loss, finished.train_loss)
    named = "data" if argument == "batch_fn" else argument
    with pytest.raises(ValueError, match=f"holds the checkpoint of a different sweep \\({named}: "):
        tiny_sweep(tmp_path, **OTHER[argument])


# -- functions by their code: a comment fixed resumes, the code changed does not ----------

LOSS = '''
def loss(params, batch):
    x, y = batch
    return jnp.mean((x @ params - y) ** 2)
'''
COMMENTED = '''

def loss(params, batch):
    """The mean squared error, documented since."""
    x, y = batch  # inputs, targets
    # a typo fixd in a comment: the code's lines shift, its bytecode stays
    return jnp.mean((x @ params - y) ** 2)
'''
CHANGED = LOSS.replace("** 2", "** 2 / 2")


def written(source):
    """The `loss` of `source`, defined in this module as a user's notebook cell defines it."""
    namespace = {"__name__": __name__, "jnp": jnp}
    exec(source, namespace)
    return namespace["loss"]


def test_a_changed_loss_refuses_the_checkpoint_a_changed_comment_does_not(tmp_path):
    finished = tiny_sweep(tmp_path, loss_fn=written(LOSS))
    again = tiny_sweep(tmp_path, loss_fn=written(COMMENTED))  # comments, docstring, lines
    np.testing.assert_array_equal(again.train_loss, finished.train_loss)
    with pytest.raises(ValueError, match=r"holds the checkpoint of a different sweep \(loss_fn: "
                                         r"checkpoint \['test_checkpoint.loss', '\w+'\], now "):
        tiny_sweep(tmp_path, loss_fn=written(CHANGED))


def test_a_checkpoint_of_a_jaxtune_that_shuffled_otherwise_is_refused(checkpoint_bytes,
                                                                     tmp_path):
    # Written before minibatches were shuffled by `epoch_orders`: its fingerprint has no
    # "minibatch_order", and resumed members would train on other batches.
    def change(arrays):
        meta = json.loads(str(arrays["__meta__"]))
        del meta["fingerprint"]["minibatch_order"]
        arrays["__meta__"] = np.asarray(json.dumps(meta))

    (tmp_path / "sweep.npz").write_bytes(rewritten(change)(checkpoint_bytes))
    with pytest.raises(ValueError, match=re.escape(
            "holds the checkpoint of a different sweep (minibatch_order: checkpoint None, now "
            f"{ORDER_ALGORITHM!r})")):
        tiny_sweep(tmp_path)


def test_an_array_over_64_mib_is_fingerprinted_by_rows_spread_over_it():
    rows = np.zeros((2**14, 2**10 + 1), np.float32)  # 64 MiB and a bit: rows sampled
    one_row = np.zeros((2, 2**24 + 1), np.float32)  # a row alone over 64 MiB: its ends
    for array in (rows, one_row):
        before = fingerprints.fingerprint_values(array), jt.distributed.fingerprint(array)
        for where in ((0, 0), (-1, -1), (len(array) // 2, 0)):
            array[where] = 1.0
            after = fingerprints.fingerprint_values(array), jt.distributed.fingerprint(array)
            array[where] = 0.0
            assert after[0] != before[0] and after[1] != before[1], where


def with_fingerprint_format(fingerprint_format):
    """A checkpoint as another jaxtune wrote it: another fingerprint format (None: the old
    one, which stored none), its functions fingerprinted by name as jaxtune did then."""

    def change(arrays):
        meta = json.loads(str(arrays["__meta__"]))
        meta.pop("fingerprint_format")
        if fingerprint_format is not None:
            meta["fingerprint_format"] = fingerprint_format
        meta["fingerprint"]["loss_fn"] = "test_checkpoint.loss"
        arrays["__meta__"] = np.asarray(json.dumps(meta))

    return rewritten(change)


@pytest.mark.parametrize("fingerprint_format, which, fix", [
    (None, "an older", "the jaxtune version that started it"),
    (1, "an older", "the jaxtune version that started it"),
    (99, "a newer", "that newer jaxtune"),
])
def test_a_checkpoint_fingerprinted_by_another_jaxtune_is_refused_saying_so(
        checkpoint_bytes, tmp_path, fingerprint_format, which, fix):
    path = tmp_path / "sweep.npz"
    path.write_bytes(with_fingerprint_format(fingerprint_format)(checkpoint_bytes))
    with pytest.raises(ValueError, match=re.escape(
            f"`checkpoint_dir` {str(tmp_path)!r} holds a checkpoint written by {which} jaxtune, "
            f"which identified a sweep's arguments another way (fingerprint format "
            f"{fingerprint_format or 1}, this version {fingerprints.FORMAT}): whether it is "
            f"this same sweep cannot be told. Resume it with {fix}, or delete {path} (or pass "
            "a new `checkpoint_dir`) to start this sweep afresh.")):
        tiny_sweep(tmp_path)


class Paused(jt.Strategy):
    """A plain sweep that waits at its first decision until `resume` is set."""

    def __init__(self):
        self.running, self.resume = threading.Event(), threading.Event()

    def decide(self, search, report):
        self.running.set()
        assert self.resume.wait(timeout=120)
        return super().decide(search, report)


def test_a_second_sweep_on_a_checkpoint_dir_in_use_is_refused(tmp_path):
    paused, outcome = Paused(), {}

    def first():
        try:
            outcome["result"] = tiny_sweep(tmp_path, strategy=paused)
        except BaseException as error:  # reported by the assertions below
            outcome["error"] = error

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert paused.running.wait(timeout=120)
        lock = tmp_path / "sweep.lock"
        with pytest.raises(ValueError, match=re.escape(
                f"`checkpoint_dir` {str(tmp_path)!r} is in use by process {os.getpid()} on host "
                f"{socket.gethostname()!r} (lock file {lock}); wait for it to end, or pass another "
                f"`checkpoint_dir`. If that process is not running, delete {lock}.")):
            tiny_sweep(tmp_path)
    finally:
        paused.resume.set()
        thread.join()
    assert "error" not in outcome, outcome
    assert os.listdir(tmp_path) == ["sweep.npz"]  # the lock went with the first sweep
    paused = Paused()
    paused.resume.set()
    resumed = tiny_sweep(tmp_path, strategy=paused)  # the first one's checkpoint, intact
    np.testing.assert_array_equal(resumed.train_loss, outcome["result"].train_loss)


def write_lock(directory, pid, host):
    directory.mkdir(exist_ok=True)
    (directory / "sweep.lock").write_text(json.dumps({"pid": pid, "host": host}))


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    dead = dead_pid()
    write_lock(tmp_path, dead, socket.gethostname())
    lock = tmp_path / "sweep.lock"
    with pytest.warns(RuntimeWarning, match=re.escape(f"took over the lock {lock} of process "
                                                      f"{dead} on this host, which no longer runs")):
        tiny_sweep(tmp_path)
    assert os.listdir(tmp_path) == ["sweep.npz"]


def test_a_lock_held_from_another_host_is_refused(tmp_path):
    write_lock(tmp_path, 1, "another-host")
    with pytest.raises(ValueError, match="is in use by process 1 on host 'another-host'"):
        tiny_sweep(tmp_path)
    (tmp_path / "sweep.lock").write_text("")  # a lock file that says nothing
    with pytest.raises(ValueError, match=re.escape(f"delete {tmp_path / 'sweep.lock'}")):
        tiny_sweep(tmp_path)


class Failing(jt.Strategy):
    def decide(self, search, report):
        raise RuntimeError("a bug in the strategy")


InterruptAt = interrupting(jt.Strategy)


def test_the_lock_is_released_at_the_end_on_an_exception_and_on_ctrl_c(tmp_path):
    with pytest.raises(RuntimeError, match="a bug in the strategy"):
        tiny_sweep(tmp_path / "failed", strategy=Failing())
    assert os.listdir(tmp_path / "failed") == []
    with pytest.raises(jt.SweepInterrupted):
        tiny_sweep(tmp_path / "interrupted", strategy=InterruptAt(1))
    assert os.listdir(tmp_path / "interrupted") == ["sweep.npz"]
    tiny_sweep(tmp_path / "interrupted", strategy=InterruptAt(0))  # resumes: nothing holds it
    assert os.listdir(tmp_path / "interrupted") == ["sweep.npz"]


# -- a strategy's identity: its class and what it was built with --------------------------


class Patience(jt.Strategy):
    """A user's strategy: its constructor argument is stored under its own name."""

    def __init__(self, patience=3):
        self.patience = patience


class Renamed(jt.Strategy):
    """Stores its argument under another name: `config()` cannot read it back."""

    def __init__(self, patience=3):
        self._patience = patience


class Declared(Renamed):
    def config(self):
        return {"patience": self._patience}


def test_a_strategy_built_with_other_arguments_does_not_resume_the_checkpoint(tmp_path):
    finished = tiny_sweep(tmp_path, strategy=Patience(3))
    again = tiny_sweep(tmp_path, strategy=Patience(3))  # the same strategy: resumed
    np.testing.assert_array_equal(again.train_loss, finished.train_loss)
    with pytest.raises(ValueError, match=r"different sweep \(strategy: .*'patience': 3.*"
                                         r"now .*'patience': 5"):
        tiny_sweep(tmp_path, strategy=Patience(5))
    with pytest.raises(ValueError, match=r"different sweep \(strategy: .*Patience.*now .*"
                                         r"Declared"):
        tiny_sweep(tmp_path, strategy=Declared(3))  # another class, the same arguments
    declared = tiny_sweep(tmp_path / "declared", strategy=Declared(3))  # its fix works
    np.testing.assert_array_equal(declared.train_loss, finished.train_loss)


def test_a_strategy_whose_arguments_cannot_be_read_back_is_refused_with_the_fix(tmp_path,
                                                                                no_training):
    with pytest.raises(TypeError, match=r"(?s)Renamed's constructor arguments cannot be read "
                                        r"back \(no attribute `patience`\).*Define `config\(\)`"
                                        r".*return \{'patience': self.patience\}"):
        tiny_sweep(tmp_path, strategy=Renamed(3))
    assert os.listdir(tmp_path) == []


def test_the_built_in_strategies_declare_their_constructor_arguments():
    for strategy in (jt.MedianStopping(min_steps=2), jt.PlateauDecay(patience=4),
                     jt.PBT(ready=10, fraction=0.5), jt.SuccessiveHalving(min_steps=3),
                     jt.Hyperband(eta=2, min_steps=3)):
        config = strategy.config()
        assert type(strategy)(**config).config() == config
    assert jt.PBT(ready=10, fraction=0.5).config()["fraction"] == 0.5
