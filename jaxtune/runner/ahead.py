"""Static groups compiled in background threads, ahead of the round that needs them.

Each static group is its own set of compiled programs (init, a chunk of training,
evaluation, filling free slots). Compiled on first use they would compile one after
another in the sweep's thread; an architecture search of eight widths spends most of
its time there. As soon as the runner knows a group it will train (the initial
configurations, the configurations a strategy starts), `CompileAhead` compiles the
programs of that group's first slices in a small thread pool: XLA compiles with the
GIL released, so groups compile side by side, and the first group trains while the
others compile.

The programs are compiled through the same `Compiler.program` the round uses, with
the arguments the round will pass (the population's abstract values, read from a
real initial population of the slice's size), so the round finds them compiled or
waits for the thread compiling them: nothing compiles twice. A compile that fails
in the background raises its exception, as itself, in the round that needs the
program; anything else that goes wrong ahead only costs the head start.

Opt out with `JAXTUNE_COMPILE_AHEAD=0` (each group then compiles when first used,
holding one group's compile at a time in memory). A sweep of several processes
(`jaxtune.distributed`) compiles on first use: placing an argument on the devices is
then a collective, which every process must call in the same order from its sweep's
thread.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Mapping
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
                self.jobs.append(self.pool.submit(self._compile, group, hparams,
                                                  table.seed[padded], slot_steps, refills))

    def schedule_repacked(self, template: Any, size: int, slot_steps: np.ndarray,
                          length: int) -> None:
        """Queues the training and evaluation programs of a slice of `size` slots that a
        repack is about to build from slices like `template`, whose next chunk trains
        `length` steps from `slot_steps` (-1: a free slot); each its own job, so that
        they compile beside each other and beside the repack's own programs."""
        trainer = self.slices.groups[template.group].trainer
        state = jax.tree_util.tree_map(lambda a: _resized(a, size), abstract(template.state))
        if trainer.stream is None:
            self.jobs.append(self.pool.submit(self._ahead, trainer.train_with_metrics, state,
                                              length, donate=True, member_steps=slot_steps))
        if self.evaluate:
            self.jobs.append(self.pool.submit(self._ahead, trainer.evaluate, state))

    @staticmethod
    def _ahead(method: Any, *args: Any, **kwargs: Any) -> None:
        with Compiler.ahead():
            method(*args, **kwargs)

    def _sizes(self, count: int) -> list[int]:
        """The sizes of the slices `Slices.fill` opens for `count` members of one group."""
        sizes = []
        while count > 0:
            size = self.slices.bucket(count)
            sizes.append(size)
            count -= size
        return list(dict.fromkeys(sizes))

    def _compile(self, group: int, hparams: Mapping[str, np.ndarray], seeds: np.ndarray,
                 slot_steps: np.ndarray, refills: bool) -> None:
        """Compiles a slice's programs, running none: a first chunk of training (the
        longest to compile, started first: the population's abstract values are traced,
        so the sweep's thread compiles the initial population meanwhile), evaluation,
        refilling, then the initial population's, unless compiled by then.

        Nothing is placed on the devices here: with several processes, placing is a
        collective, which only the sweep's thread may call (in the same order on all)."""
        trainer = self.slices.groups[group].trainer
        state = trainer.init_shapes(hparams, seeds)
        with Compiler.ahead():
            if trainer.stream is None:  # a stream's window is read, not just shaped
                state, _, _ = trainer.train_with_metrics(state, self.first_chunk, donate=True,
                                                         member_steps=slot_steps)
            if self.evaluate:
                trainer.evaluate(state)
            if refills:
                size = slot_steps.size
                trainer.select(state, state, np.zeros(size, np.int32), np.zeros(size, bool))
            trainer.init_shapes(hparams, seeds, compile=True)

    def close(self) -> None:
        """Waits for the compiles under way, drops the queued ones, ends the threads."""
        self.pool.shutdown(wait=True, cancel_futures=True)
