"""Static groups compiled in background threads, ahead of the round that needs them.

Each static group is its own set of compiled programs (init, a chunk of training,
evaluation, filling free slots). Compiled on first use they would compile one after
another in the sweep's thread; an architecture search of eight widths spends most of
its time there. As soon as the runner knows a group it will train (the initial
configurations, the configurations a strategy starts), `CompileAhead` compiles the
programs of that group's first slices in a small thread pool: XLA compiles with the
GIL released, so groups compile side by side, and the first group trains while the
others compile. Within a group the training program, the longest, starts first, while
the sweep's thread compiles the initial population and the minibatch order (which a
worker only traces); a thread waiting for a program takes that group's queued
compiles meanwhile.

The programs are compiled through the same `Compiler.program` the round uses, with
the arguments the round will pass (the population's abstract values, traced from the
initial population's program for the slice's size: `Trainer.init_shapes`), so the
round finds them compiled or waits for the thread compiling them: nothing compiles
twice (`tests/test_background_compile.py`). A compile that fails
in the background raises its exception, as itself, in the round that needs the
program; anything else that goes wrong ahead only costs the head start.

Opt out with `JAXTUNE_COMPILE_AHEAD=0` (each group then compiles when first used,
holding one group's compile at a time in memory). A sweep of several processes
(`jaxtune.distributed`) compiles on first use: placing an argument on the devices is
then a collective, which every process must call in the same order from its sweep's
thread.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from jaxtune.engine.programs import Compiler
from jaxtune.runner.members import WAITING
from jaxtune.runner.slices import Slices

ENV = "JAXTUNE_COMPILE_AHEAD"


def enabled_by_default() -> bool:
    """False when the environment says `JAXTUNE_COMPILE_AHEAD=0` (or false/no/off)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def abstract(tree: Any) -> Any:
    """The shapes, dtypes, shardings and weak types of `tree`'s arrays."""
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding,
                                       weak_type=getattr(a, "weak_type", False)), tree)


def _resized(a: jax.ShapeDtypeStruct, size: int) -> jax.ShapeDtypeStruct:
    """`a` with `size` members (its leading axis)."""
    return jax.ShapeDtypeStruct((size, *a.shape[1:]), a.dtype, sharding=a.sharding,
                                weak_type=a.weak_type)


def _cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class CompileAhead:
    """Compiles the first slices' programs of each static group in a thread pool.

    Each program is a job of its own in one queue, first in first out: a worker thread
    takes the oldest; the sweep's thread, when it must wait for a program a worker is
    compiling, takes the oldest of that group's queued jobs meanwhile (the programs it
    needs next: `Compiler.helper`), so both cores compile where one would sit idle.

    Args:
      slices: the runner's slices (their groups, trainers and slice sizes).
      first_chunk: the steps of a slice's first chunk (its first record point).
      evaluate: whether a round evaluates (an `eval_fn` or `eval_data`).
      refills: whether members enter free slots of running slices (a strategy that
        starts members), which takes one more program per slice size.
      workers: threads compiling at once (default: one less than the cores this process
        may use, at least 1, at most 4; the sweep's thread compiles too).
    """

    def __init__(self, slices: Slices, first_chunk: int, evaluate: bool, refills: bool,
                 workers: int | None = None):
        self.slices = slices
        self.first_chunk = first_chunk
        self.evaluate = evaluate
        self.refills = refills
        workers = workers or max(1, min(4, _cores() - 1))
        self.pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="jaxtune-compile-ahead")
        self.jobs: list[concurrent.futures.Future] = []
        self._seen: set[tuple[int, int]] = set()  # (group, slice size) compiled or queued
        self._queue: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()
        self._lock = threading.Lock()

    def schedule(self, added: np.ndarray) -> None:
        """Queues the programs of the slices that the waiting members `added` will fill."""
        table = self.slices.members
        waiting = added[table.status[added] == WAITING]
        for group in dict.fromkeys(table.group[waiting].tolist()):
            in_group = waiting[table.group[waiting] == group]
            for size in self._sizes(in_group.size):
                if (group, size) in self._seen:
                    continue
                self._seen.add((group, size))
                entering = in_group[:size]
                padded = np.concatenate([entering, np.repeat(entering[:1], size - entering.size)])
                hparams = {k: v[padded] for k, v in table.hparams.items()}
                slot_steps = np.where(np.arange(size) < entering.size, 0, -1)
                # Refilling compiles ahead only where members of the group wait beyond
                # its first slices; a group of one trial (an architecture search) never
                # refills, and a later refill compiles when it comes.
                refills = self.refills and in_group.size > size
                self._queue_slice(group, hparams, table.seed[padded], slot_steps, refills)

    def schedule_repacked(self, template: Any, size: int, slot_steps: np.ndarray,
                          length: int) -> None:
        """Queues the training and evaluation programs of a slice of `size` slots that a
        repack is about to build from slices like `template`, whose next chunk trains
        `length` steps from `slot_steps` (-1: a free slot); each its own job, so that
        they compile beside each other and beside the repack's own programs."""
        trainer = self.slices.groups[template.group].trainer
        state = jax.tree_util.tree_map(lambda a: _resized(a, size), abstract(template.state))
        if trainer.stream is None:
            self._submit(template.group, _ahead, trainer.train_with_metrics, lambda: state,
                         length, donate=True, member_steps=slot_steps)
        if self.evaluate:
            self._submit(template.group, _ahead, trainer.evaluate, lambda: state)

    def _queue_slice(self, group: int, hparams: Mapping[str, np.ndarray], seeds: np.ndarray,
                     slot_steps: np.ndarray, refills: bool) -> None:
        """Queues a slice's programs, none run: a first chunk of training (the longest,
        first), evaluation, refilling, then the initial population's (compiled by then
        in the sweep's thread, more often than not). The population's abstract values
        are traced once, by the first job that needs them.

        Nothing is placed on the devices: with several processes, placing is a
        collective, which only the sweep's thread may call (in the same order on all)."""
        trainer = self.slices.groups[group].trainer
        trainer.compiler.helper = functools.partial(self._take, group)
        shapes = _Once(lambda: trainer.init_shapes(hparams, seeds))
        size = slot_steps.size
        if trainer.stream is None:  # a stream's window is read, not just shaped
            self._submit(group, _ahead, trainer.train_with_metrics, shapes, self.first_chunk,
                         donate=True, member_steps=slot_steps)
        if self.evaluate:
            self._submit(group, _ahead, trainer.evaluate, shapes)
        if refills:
            self._submit(group, _ahead, lambda state: trainer.select(
                state, state, np.zeros(size, np.int32), np.zeros(size, bool)), shapes)
        self._submit(group, _ahead, lambda _: trainer.init_shapes(hparams, seeds, compile=True),
                     shapes)

    def _submit(self, group: int, *job: Any, **kwargs: Any) -> None:
        with self._lock:
            self._queue.append((group, functools.partial(*job, **kwargs)))
        self.jobs.append(self.pool.submit(self._next))

    def _next(self) -> None:
        """Runs the oldest queued job, if the sweep's thread has not taken it."""
        with self._lock:
            if not self._queue:
                return
            _, job = self._queue.popleft()
        job()

    def _take(self, group: int) -> Callable[[], None] | None:
        """The oldest queued job of `group`, removed from the queue (`Compiler.helper`);
        run by the caller, which never sees its exception (the program's own round
        raises it, or compiles again)."""
        with self._lock:
            for i, (owner, job) in enumerate(self._queue):
                if owner == group:
                    del self._queue[i]
                    return functools.partial(_quietly, job)
        return None

    def _sizes(self, count: int) -> list[int]:
        """The sizes of the slices `Slices.fill` opens for `count` members of one group."""
        sizes = []
        while count > 0:
            size = self.slices.bucket(count)
            sizes.append(size)
            count -= size
        return list(dict.fromkeys(sizes))

    def close(self) -> None:
        """Waits for the compiles under way, drops the queued ones, ends the threads."""
        with self._lock:
            self._queue.clear()
        for group in self.slices.groups:
            group.trainer.compiler.helper = None
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Once:
    """`compute()` on the first call, from whichever thread, then its value."""

    def __init__(self, compute: Callable[[], Any]):
        self._compute, self._lock = compute, threading.Lock()
        self._value: Any = None
        self._done = False

    def __call__(self) -> Any:
        with self._lock:
            if not self._done:
                self._value, self._done = self._compute(), True
            return self._value


def _ahead(method: Callable, state: Callable[[], Any], *args: Any, **kwargs: Any) -> None:
    """`method(state(), ...)` compiled ahead of need, not run (`Compiler.ahead`)."""
    with Compiler.ahead():
        method(state(), *args, **kwargs)


def _quietly(job: Callable[[], None]) -> None:
    """`job()`; an Exception it raises is dropped: the compile that failed raises it
    again in the round that needs its program."""
    try:
        job()
    except Exception:  # kept for its program's own round
        pass
