"""Batches from a host iterator: a generator, a PyTorch `DataLoader`, grain, `tf.data`.

`data=` may be any iterable of batches (each a pytree of arrays with the same
structure, shapes and dtypes). Batch k of the stream feeds step k of *every* member:
all members, of every seed, see the same batches, so seeds differ in their initial
parameters and their per-step keys (dropout), not in their data. (To give seeds
different data, draw it in a `batch_fn(key, step)`, whose key depends on the seed.)

The batches a chunk of training needs are stacked into one array [steps, ...] and
transferred once; while the devices train it, a background thread reads and stacks
the next chunk. A chunk holds at most `max_chunk_bytes` of batches; a longer stretch
of training between record points runs as several chunks.

Members at different steps (waiting members that start later, a strategy that starts
configurations during the search, a resumed sweep) read the batches of their own
steps, so a member's result does not depend on when it trained. The stream keeps on
the host every batch a member that has not finished may still need, and forgets the
rest; with a strategy that starts configurations during the search (ASHA with
`max_trials`, Optuna: `Strategy.starts_members`), a new member may start at step 0 at
any time, so every batch read is kept.

A checkpointed sweep resumes from a fresh iterator that yields the same batches from
the start: the batches no member needs any more are read and dropped. Over many
processes, every process reads a stream that yields the same batches.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from jaxtune._checks import boolean, positive_int
from jaxtune.distributed import place


def is_stream(data: Any) -> bool:
    """Whether `data` is an iterable of batches rather than a pytree of arrays."""
    if isinstance(data, HostStream):
        return True
    if isinstance(data, tuple | list | dict | str | bytes | np.ndarray | jax.Array) or callable(
            data):
        return False
    if type(data).__module__.split(".")[0] == "pandas":
        return False
    # What `iter` accepts: not `__next__` alone, nor a class that sets `__iter__ = None`;
    # those are refused as `data` of no known form, not by HostStream as its `source`.
    return isinstance(data, Iterable)


class HostStream:
    """An iterable of batches, readable by step and stacked into device chunks.

    `sweep` and `Trainer` wrap an iterable `data` in one; build it yourself to share
    one reader between trainers or to look at what it holds.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> def batches():  # e.g. `for x, y in loader: yield x.numpy(), y.numpy()`
      ...     rng = np.random.default_rng(0)
      ...     while True:
      ...         x = rng.normal(size=(32, 1)).astype(np.float32)
      ...         yield x, 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   jt.Space(learning_rate=jt.choice([0.01, 0.1])), data=batches(),
      ...                   steps=50, progress=False)
      >>> result.best.hparams["learning_rate"]
      0.1

    Args:
      source: an iterable (or iterator) of batches; every batch has the structure,
        shapes and dtypes of the first.
      prefetch: read and transfer the next chunk in a background thread while the
        current one trains.
      max_chunk_bytes: the most bytes of batches one chunk stacks on the devices; a
        longer stretch of training between record points runs as several chunks.
    """

    def __init__(self, source: Iterable, *, prefetch: bool = True,
                 max_chunk_bytes: int = 256 * 2**20):
        if isinstance(source, HostStream):
            raise TypeError("`source` is already a HostStream.")
        try:
            self._iterator = iter(source)
        except TypeError:
            raise TypeError(f"`source` must be an iterable of batches (a generator, a "
                            f"DataLoader ...), got {type(source).__name__}.") from None
        self.prefetch = boolean("prefetch", prefetch)
        self.max_chunk_bytes = positive_int("max_chunk_bytes", max_chunk_bytes)
        self._first = 0  # the step of self._batches[0]
        self._batches: list[list[np.ndarray]] = []  # host leaves of steps first, first+1, ...
        self._read = 0  # batches taken from the iterator
        self._failed: Exception | None = None  # what the iterator raised, if it did
        self._lock = threading.Lock()  # the iterator and the host batches
        self._closed = False  # no more reading ahead
        self._ahead: tuple[tuple, concurrent.futures.Future] | None = None
        self._window: tuple[tuple, Any] | None = None  # the last chunk served
        first = self._next()
        if first is None:
            raise ValueError("`data` is an empty iterator: it yielded no batch.")
        self.treedef = first[1]
        self.paths = [_name(p) for p, _ in first[0]]
        self.spec = [(leaf.shape, leaf.dtype) for _, leaf in first[0]]
        self._store(0, [leaf for _, leaf in first[0]])
        if not self.spec or any(len(shape) == 0 for shape, _ in self.spec):
            raise ValueError(
                "each batch of `data` must be a pytree of arrays with a leading example axis; "
                f"the first batch has leaves of shapes {[list(s) for s, _ in self.spec]}.")

    # -- reading -----------------------------------------------------------------------

    def _next(self) -> tuple[list, Any] | None:
        """The next batch as (key path, host leaf) pairs and its treedef; None at the end."""
        if self._failed is not None:  # a stream that failed is finished: say why, again
            raise self._failed
        step = self._read
        try:
            batch = next(self._iterator)
        except StopIteration:
            return None
        self._read += 1
        leaves, treedef = jax.tree_util.tree_flatten_with_path(batch)
        return [(path, _host(leaf, path, step)) for path, leaf in leaves], treedef

    def _store(self, step: int, leaves: list[np.ndarray]) -> None:
        if step >= self._first:
            self._batches.append(leaves)

    def _read_to(self, stop: int) -> None:
        """Reads batches until the host holds steps up to `stop` (exclusive)."""
        with self._lock:
            while self._read < stop:
                step = self._read
                try:
                    got = self._next()
                    if got is not None:
                        self._check(step, *got)
                except Exception as error:  # the pipeline failed, or its batch is unusable
                    # The iterator has moved past this batch: a later read would take the next
                    # one in its place and shift every later step. Every read raises it again.
                    self._failed = error
                    raise
                if got is None:
                    raise ValueError(
                        f"the `data` iterator ended after {step} batches, but a member needs "
                        f"the batch of step {stop - 1}: one batch is used per step, so yield at "
                        "least `steps` batches (e.g. loop over epochs, or `itertools.cycle`).")
                self._store(step, [leaf for _, leaf in got[0]])

    def _check(self, step: int, leaves: list, treedef: Any) -> None:
        if treedef != self.treedef:
            raise ValueError(f"batch {step} of `data` has structure {treedef}, unlike the first "
                             f"batch's {self.treedef}; every batch must have the same structure.")
        for (_, leaf), (shape, dtype), name in zip(leaves, self.spec, self.paths):
            if leaf.shape != shape or leaf.dtype != dtype:
                raise ValueError(
                    f"batch {step} of `data`: leaf {name} has shape {leaf.shape} and dtype "
                    f"{leaf.dtype}, but the first batch's has shape {shape} and dtype {dtype}; "
                    "every batch must have the same shapes (drop the last, short batch, e.g. "
                    "`drop_last=True`).")

    # -- serving -----------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        """Examples per batch: the leading length of the first leaf."""
        return self.spec[0][0][0]

    @property
    def held(self) -> int:
        """Batches held on the host (read and still needed)."""
        return len(self._batches)

    def batch_shapes(self) -> Any:
        """One batch's shapes and dtypes, a pytree of `jax.ShapeDtypeStruct`."""
        return jax.tree_util.tree_unflatten(
            self.treedef, [jax.ShapeDtypeStruct(s, d) for s, d in self.spec])

    @property
    def batch_bytes(self) -> int:
        """Bytes of one batch."""
        return sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in self.spec)

    def steps_per_chunk(self, starts: int) -> int:
        """How many steps one chunk may hold for `starts` distinct member steps."""
        return max(1, self.max_chunk_bytes // (starts * self.batch_bytes))

    def window(self, starts: Sequence[int], length: int, sharding: jax.sharding.Sharding) -> Any:
        """The batches of steps s ... s+length-1 for each s in `starts`, on the devices.

        Stacked [len(starts) * length, ...]: rows i*length ... (i+1)*length - 1 hold
        the batches from `starts[i]` on.
        """
        key = (tuple(int(s) for s in starts), int(length), sharding)
        if self._window is not None and self._window[0] == key:
            return self._window[1]
        chunk = None
        if self._ahead is not None:
            ahead, future = self._ahead
            self._ahead = None
            concurrent.futures.wait([future])  # one reader at a time
            if ahead == key and future.exception() is None:
                chunk = future.result()
        if chunk is None:
            chunk = self._build(*key)
        if not sharding.is_fully_addressable:  # see `_build`
            chunk = place(chunk, sharding)
        self._window = (key, chunk)
        if self.prefetch and not self._closed:  # best effort: a failure shows when the chunk
            following = (tuple(s + length for s in key[0]), length, sharding)  # is asked for
            self._ahead = (following, _in_background(self._build, *following))
        return chunk

    def _build(self, starts: tuple[int, ...], length: int, sharding: jax.sharding.Sharding
               ) -> Any:
        self._read_to(max(starts) + length)
        with self._lock:
            if min(starts) < self._first:
                raise ValueError(
                    f"a member needs the batch of step {min(starts)}, which the `data` stream "
                    f"no longer holds (it keeps steps from {self._first} on). A strategy that "
                    "starts new configurations during the search must set `starts_members = "
                    "True`, so that the stream keeps every batch.")
            rows = [row for s in starts
                    for row in self._batches[s - self._first:s - self._first + length]]
            stacked = [np.stack(leaves) for leaves in zip(*rows)]
        host = jax.tree_util.tree_unflatten(self.treedef, stacked)
        if sharding.is_fully_addressable:  # transferred here, off the main thread
            with _TRANSFERRING:
                return place(host, sharding)
        # Over many processes, placing takes part in collectives, which must come in the
        # same order in every process: the main thread places it.
        return host

    def release(self, below: int) -> None:
        """Forgets the batches of steps below `below`: no member will need them again."""
        with self._lock:
            if below <= self._first:
                return
            drop = min(below - self._first, len(self._batches))
            del self._batches[:drop]
            self._first = below  # when resuming, reading drops the batches below

    def close(self) -> None:
        """Stops reading ahead, without waiting for a read in progress to finish.

        A pipeline that hangs must not hold the process: after Ctrl-C, `sweep` closes its
        stream and the exception goes on; the reader, a daemon thread, ends with the
        process. Batches are read only when asked for after this.
        """
        self._closed = True
        if self._ahead is not None:
            self._ahead[1].cancel()  # if it has not started
            self._ahead = None

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}: {list(shape)} {dtype}" for name, (shape, dtype)
                           in zip(self.paths, self.spec))
        return f"HostStream({shapes})"


# Held while a chunk is transferred. The reader is a daemon thread, which the exit does not
# wait for; but one that comes back from JAX's C++ code while JAX tears its backends down
# aborts the process ("terminate called ...": a daemon thread left waiting on a device array
# did, 8 runs in 8). The exit takes this lock and keeps it, so a transfer in progress
# finishes first and none starts; a reader waiting on the user's iterator is not waited for.
_TRANSFERRING = threading.Lock()
atexit.register(_TRANSFERRING.acquire)  # after `import jax`: runs before JAX's clean-up


def _in_background(function: Any, *args: Any) -> concurrent.futures.Future:
    """`function(*args)`, run in a new daemon thread.

    Not a `ThreadPoolExecutor`: the interpreter joins its threads at exit, so a generator
    that hangs kept the process alive after a second Ctrl-C. A thread per chunk costs tens
    of microseconds, next to a chunk of batches read and transferred.
    """
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(function(*args))
            except BaseException as error:  # the caller sees it, as with an executor
                future.set_exception(error)

    threading.Thread(target=run, name="jaxtune-data", daemon=True).start()
    return future


def _name(path: Any) -> str:
    return f"batch{jax.tree_util.keystr(path)}"


def _host(leaf: Any, path: Any, step: int) -> np.ndarray:
    """Leaf `path` of batch `step` as a NumPy array (a PyTorch or TensorFlow tensor ...)."""
    if hasattr(leaf, "numpy") and not isinstance(leaf, np.ndarray | jax.Array):
        leaf = leaf.numpy()
    array = np.asarray(leaf)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        raise TypeError(f"batch {step} of `data`: leaf {_name(path)} is a "
                        f"{type(leaf).__name__} ({array.dtype}), not a numeric array.")
    return array
