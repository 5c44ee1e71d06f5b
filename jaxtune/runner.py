"""The runner: the chunk loop, its record points, and the strategy's decisions.

The population lives in *slices*: populations of a fixed, bucketed size (the device
count times a power of two, at most `members_per_slice`), each trained by one
compiled program of its static group. At most `members_in_flight` members are on
the devices at once; the others wait, so peak memory follows the slices in flight,
not the population. One *round*:

  1. fill: waiting members enter free slots (of their static group) and new slices;
  2. train: every slice runs up to the next record point of its members (every
     `eval_every` of their own steps, and the budget's end) and is evaluated;
     all slices are dispatched before any result is read back;
  3. record: each member that reached a record point gets its metrics recorded;
     members that trained their full budget complete, diverged ones are frozen out;
  4. decide: the strategy sees the records and returns a `Decision` (stop, copy,
     new hyperparameters, new configurations), which the runner applies on device;
  5. repack: survivors move into fewer or smaller slices when that saves slots;
  6. checkpoint (with `checkpoint_dir`), and honour a Ctrl-C.

Everything a round does is a function of the records, so a run resumed from a
checkpoint repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxtune.distributed import any_process, gather, is_main_process, place
from jaxtune.engine import PopulationState, Trainer
from jaxtune.recorder import Recorder
from jaxtune.results import SweepResult, final_values, trial_stats
from jaxtune.space import ConfigStream, LogUniform, Space, Table
from jaxtune.strategies.base import Decision, Report, Strategy

WAITING, RUNNING, COMPLETED, STOPPED, DIVERGED = range(5)
STATUS_NAMES = np.array(["running", "running", "completed", "stopped", "diverged"])


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep at a record point; `.result` holds what was recorded.

    Members still training (or waiting) have status "running" in the partial result.
    With `checkpoint_dir`, the checkpoint of that record point is complete: calling
    `sweep` again with the same arguments resumes.
    """

    def __init__(self, result: SweepResult | None, message: str):
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class Slice:
    """One compiled population on the devices and which member is in each slot."""

    group: int  # index of its static group
    state: PopulationState
    members: np.ndarray  # int [S]: the member in each slot, -1 for a free slot
    hparams: dict[str, np.ndarray]  # host copy of the slots' dynamic hyperparameters


@dataclasses.dataclass
class Group:
    """A static group: one value of every static dimension, one trainer."""

    static: dict[str, Any]
    trainer: Trainer


class Search:
    """What a strategy sees: the sweep's settings and everything recorded so far.

    Read-only for strategies; per-member arrays are indexed by member id (the row
    in the result), which never changes.
    """

    def __init__(self, runner: Runner):
        self._runner = runner

    # -- settings
    @property
    def space(self) -> Space:
        return self._runner.space

    @property
    def seeds(self) -> int:
        """Seeds per configuration: every configuration runs as this many members."""
        return self._runner.seeds

    @property
    def steps(self) -> int:
        """The full budget: optimizer steps per member."""
        return self._runner.steps

    @property
    def eval_every(self) -> int:
        return self._runner.eval_every

    @property
    def record_steps(self) -> np.ndarray:
        """int [C]: the step count of every record point."""
        return self._runner.recorder.record_steps

    @property
    def metric(self) -> str:
        return self._runner.metric

    @property
    def mode(self) -> str:
        return self._runner.mode

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self._runner.recorder.metric_names

    @property
    def configurations(self) -> Table:
        """The configurations the sweep sampled (or was given)."""
        return self._runner.configurations

    @property
    def devices(self) -> int:
        return self._runner.num_devices

    def ask(self, n: int) -> Table:
        """The next `n` configurations of the sweep's sampler (resumable, deterministic)."""
        return self._runner.ask(n)

    # -- members
    @property
    def n_members(self) -> int:
        return self._runner.member_trial.size

    @property
    def member_trial(self) -> np.ndarray:
        return self._runner.member_trial

    @property
    def member_seed(self) -> np.ndarray:
        return self._runner.member_seed

    @property
    def status(self) -> np.ndarray:
        """str [N]: "waiting", "running", "completed", "stopped" or "diverged"."""
        names = np.array(["waiting", "running", "completed", "stopped", "diverged"])
        return names[self._runner.status]

    @property
    def step(self) -> np.ndarray:
        """int [N]: steps each member has trained so far."""
        return self._runner.member_step.copy()

    @property
    def hparams(self) -> dict[str, np.ndarray]:
        """Each member's current dynamic hyperparameters, name -> [N]."""
        return {k: v.copy() for k, v in self._runner.member_hparams.items()}

    def trial_members(self, trial: int) -> np.ndarray:
        """The members (one per seed) of configuration `trial`."""
        return np.flatnonzero(self._runner.member_trial == trial)

    def curve(self, metric: str | None = None) -> np.ndarray:
        """float [N, C]: `metric` at every record point (NaN where not recorded)."""
        return self._runner.recorder.curve(metric or self.metric)

    def record_index(self, members: Any) -> np.ndarray:
        """The column of each member's latest record point (-1 if none yet)."""
        return self._runner.recorder.latest[np.asarray(members, int)]

    def trial_scores(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-configuration means over seeds of a per-member `values` [N].

        Returns `(scores, trials)`: the mean per trial (NaN if any seed is NaN) and
        the trial ids, sorted.
        """
        trials, inverse = np.unique(self._runner.member_trial, return_inverse=True)
        sums = np.zeros(trials.size)
        np.add.at(sums, inverse, values.astype(np.float64))
        return sums / np.bincount(inverse, minlength=trials.size), trials


class Runner:
    """Trains members in slices, records them and applies a strategy's decisions."""

    def __init__(
        self,
        *,
        make_trainer: Callable[[Mapping[str, Any]], Trainer],
        space: Space,
        configurations: Table,
        ask: ConfigStream | None,
        strategy: Strategy,
        seeds: int,
        steps: int,
        eval_every: int,
        metric: str,
        mode: str,
        eval_names: tuple[str, ...],
        members_per_slice: int,
        members_in_flight: int,
        record_step_loss: bool,
        keep_params: bool | int | str,
        progress: bool,
        checkpoint: Any = None,
        checkpoint_every: int = 1,
        aux_names: tuple[str, ...] = (),
    ):
        self._make_trainer = make_trainer
        self.space = space
        self.configurations = configurations
        self.stream = ask
        self.strategy = strategy
        self.seeds = seeds
        self.steps = steps
        self.eval_every = eval_every
        self.metric = metric
        self.mode = mode
        self.eval_names = eval_names
        self.aux_names = tuple(aux_names)  # training metrics from `loss_fn`'s aux dict
        self.members_per_slice = members_per_slice
        self.members_in_flight = members_in_flight
        self.keep_params = bool(keep_params)
        # keep_params="best" or k: the members of the best k configurations only.
        self.keep_best = kept_configurations(keep_params)
        self.progress = progress
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.search = Search(self)

        self.groups: list[Group] = []
        self._group_index: dict[tuple, int] = {}
        self.slices: list[Slice] = []
        self.tables: list[Table] = []  # configurations, in trial order, batch by batch
        self.n_trials = 0
        self.member_trial = np.zeros(0, np.int64)
        self.member_seed = np.zeros(0, np.int64)
        self.member_group = np.zeros(0, np.int64)
        self.status = np.zeros(0, np.int8)
        self.member_step = np.zeros(0, np.int64)
        self.diverged_step = np.zeros(0, np.int64)
        self.member_hparams = {name: np.zeros(0, np.float32) for name in space.dynamic_names}
        self.params: dict[int, Any] = {}  # member -> final parameters (host), keep_params only
        self.model_state: dict[int, Any] = {}  # member -> final model state (host), beside params
        self.recorder = Recorder(steps, eval_every, ("train_loss", *eval_names),
                                 record_step_loss, space.dynamic_names, self.aux_names)
        self.round = 0
        self.asked = 0  # configurations drawn with `ask`
        self.trained_member_steps = 0
        self._interrupted = False

    @property
    def num_devices(self) -> int:
        return self.groups[0].trainer.num_devices if self.groups else 1

    # -- members and configurations ---------------------------------------------------

    def ask(self, n: int) -> Table:
        if self.stream is None:
            raise ValueError("this sweep has no sampler to ask for new configurations (it "
                             "was given explicit `configs`, or a grid); use a random, sobol "
                             "or halton sampler.")
        table = self.stream.ask(n)
        self.asked += n
        return table

    def group_of(self, static: Mapping[str, Any]) -> int:
        key = tuple(sorted((k, repr(v)) for k, v in static.items()))
        if key not in self._group_index:
            self._group_index[key] = len(self.groups)
            self.groups.append(Group(dict(static), self._make_trainer(static)))
        return self._group_index[key]

    def add_configurations(self, table: Table, what: str = "Decision.start must be"
                           ) -> np.ndarray:
        """Adds every row of `table` as a trial of `seeds` waiting members; returns them."""
        self._check_table(table, what)
        n = len(table)
        if n == 0:
            return np.zeros(0, np.int64)
        self.tables.append(table)
        group = np.empty(n, np.int64)
        for static, rows in table.static_groups():
            group[rows] = self.group_of(static)
        trial = self.n_trials + np.repeat(np.arange(n), self.seeds)
        first = self.member_trial.size
        self.n_trials += n
        self.member_trial = np.concatenate([self.member_trial, trial])
        self.member_seed = np.concatenate([self.member_seed, np.tile(np.arange(self.seeds), n)])
        self.member_group = np.concatenate([self.member_group, np.repeat(group, self.seeds)])
        added = n * self.seeds
        self.status = np.concatenate([self.status, np.full(added, WAITING, np.int8)])
        self.member_step = np.concatenate([self.member_step, np.zeros(added, np.int64)])
        self.diverged_step = np.concatenate([self.diverged_step, np.full(added, -1, np.int64)])
        dynamic = table.dynamic()
        for name in self.member_hparams:
            column = np.repeat(dynamic[name], self.seeds)
            old = self.member_hparams[name]
            self.member_hparams[name] = np.concatenate([old.astype(column.dtype), column])
        self.recorder.add_members(added)
        return np.arange(first, first + added)

    def _check_table(self, table: Any, what: str = "Decision.start must be") -> None:
        if not isinstance(table, Table):
            raise TypeError(f"{self.strategy!r}: {what} a jt.Table of the "
                            f"sweep's space (from `search.ask(n)`), got {type(table).__name__}.")
        if table.space != self.space:
            raise ValueError("a strategy started configurations of another space; build them "
                             "with `search.ask(n)` or `search.space.table(...)`.")

    def trial_columns(self) -> dict[str, np.ndarray]:
        """Every configuration's hyperparameters, name -> [n_trials], in trial order."""
        return {name: np.concatenate([t.columns[name] for t in self.tables])
                for name in self.space.names}

    # -- slices -------------------------------------------------------------------------

    def _bucket(self, count: int) -> int:
        """The slice size for `count` members: devices x 2^k, at most `members_per_slice`."""
        size = self.num_devices
        while size < count and size < self.members_per_slice:
            size *= 2
        return min(size, self.members_per_slice)

    def _new_members_state(self, group: Group, members: np.ndarray, size: int
                           ) -> tuple[PopulationState, dict[str, np.ndarray]]:
        padded = np.concatenate([members, np.repeat(members[:1], size - members.size)])
        hparams = {k: v[padded] for k, v in self.member_hparams.items()}
        return group.trainer.init(hparams, self.member_seed[padded]), hparams

    def fill(self) -> None:
        """Waiting members enter free slots of their group's slices, then new slices."""
        waiting = np.flatnonzero(self.status == WAITING)
        if waiting.size == 0:
            return
        taken = np.zeros(self.status.size, bool)
        for piece in self.slices:
            free = np.flatnonzero(piece.members < 0)
            candidates = waiting[(self.member_group[waiting] == piece.group) & ~taken[waiting]]
            if free.size == 0 or candidates.size == 0:
                continue
            entering = candidates[:free.size]
            slots = free[:entering.size]
            trainer = self.groups[piece.group].trainer
            size = piece.members.size
            fresh, fresh_hparams = self._new_members_state(self.groups[piece.group], entering,
                                                           size)
            index = np.zeros(size, np.int32)
            index[slots] = np.arange(entering.size)
            mask = np.zeros(size, bool)
            mask[slots] = True
            piece.state = trainer.select(piece.state, fresh, index, mask)
            for name, values in piece.hparams.items():
                values[slots] = fresh_hparams[name][:entering.size]
            piece.members[slots] = entering
            self._start(entering)
            taken[entering] = True
        in_flight = sum(piece.members.size for piece in self.slices)
        while True:
            left = waiting[~taken[waiting]]
            if left.size == 0:
                break
            group = self.member_group[left[0]]
            candidates = left[self.member_group[left] == group]
            size = self._bucket(candidates.size)
            if self.slices and in_flight + size > self.members_in_flight:
                break
            entering = candidates[:size]
            state, hparams = self._new_members_state(self.groups[group], entering, size)
            members = np.full(size, -1, np.int64)
            members[:entering.size] = entering
            self.slices.append(Slice(int(group), state, members, hparams))
            self._start(entering)
            taken[entering] = True
            in_flight += size

    def _start(self, members: np.ndarray) -> None:
        self.status[members] = RUNNING
        self.member_step[members] = 0

    def _end(self, piece: Slice, slots: np.ndarray, status: int) -> None:
        """Members in `slots` leave the devices with `status`; their params and model state are kept."""
        members = piece.members[slots]
        self.status[members] = status
        if self.keep_params and members.size:
            kept = gather((piece.state.params, piece.state.model_state))
            for slot, member in zip(slots, members):
                self.params[int(member)], self.model_state[int(member)] = (
                    jax.tree_util.tree_map(lambda a, s=slot: a[s].copy(), kept))
            if self.keep_best is not None:
                self._drop_outranked()
        piece.members[slots] = -1

    def _drop_outranked(self) -> None:
        """Forgets the kept trees of every ended trial outside the best `keep_best`.

        Only trials whose every member has ended are ranked, by the result's rules: their
        final values never change again, so a trial outranked now is outranked in the
        result too, and the trees kept at the end are exactly the result's top k. The
        finished members of trials still training are kept until their trial ends.
        """
        ended = (self.status != WAITING) & (self.status != RUNNING)
        trials, inverse = np.unique(self.member_trial, return_inverse=True)
        still_training = np.zeros(trials.size, bool)
        np.logical_or.at(still_training, inverse, ~ended)
        members = np.flatnonzero(~still_training[inverse])
        trial = self.member_trial[members]
        if np.unique(trial).size <= self.keep_best:
            return
        steps_trained = self.member_step[members]
        diverged = self.status[members] == DIVERGED
        final = final_values(self.recorder.curve(self.metric)[members],
                             self.recorder.record_steps, steps_trained, diverged)
        stats = trial_stats(trial, final, STATUS_NAMES[self.status[members]], diverged,
                            steps_trained, self.mode)
        outranked = stats.trials[stats.order[self.keep_best:]]
        for member in members[np.isin(trial, outranked)]:
            self.params.pop(int(member), None)
            self.model_state.pop(int(member), None)

    def _next_record(self, step: np.ndarray) -> np.ndarray:
        return np.minimum(self.steps, (step // self.eval_every + 1) * self.eval_every)

    # -- one round ----------------------------------------------------------------------

    def train_round(self) -> Report:
        """Trains every slice to its members' next record point; records; returns the report."""
        pending = []
        for piece in self.slices:
            live = piece.members[piece.members >= 0]
            if live.size == 0:
                continue
            steps = self.member_step[live]
            length = int(np.min(self._next_record(steps) - steps))
            trainer = self.groups[piece.group].trainer
            slot_steps = np.where(piece.members >= 0, self.member_step[piece.members], -1)
            piece.state, losses, aux = trainer.train_with_metrics(
                piece.state, length, donate=True, member_steps=slot_steps)
            evaluated = trainer.evaluate(piece.state) if self.eval_names else {}
            pending.append((piece, length, losses, aux, evaluated))
        reached, completed, diverged = [], [], []
        for piece, length, losses, aux, evaluated in pending:
            losses, aux, evaluated, alive, diverged_at = gather(
                (losses, aux, evaluated, piece.state.alive, piece.state.diverged_step))
            slots = np.flatnonzero(piece.members >= 0)
            members = piece.members[slots]
            begin = self.member_step[members]
            self.member_step[members] = begin + length
            self.trained_member_steps += length * members.size
            self.recorder.add_losses(members, begin, losses[slots],
                                     {k: v[slots] for k, v in aux.items()})
            bad = ~alive[slots]
            at_record = ~bad & (self.member_step[members] == self._next_record(begin))
            self.recorder.record(members[at_record], self.member_step[members[at_record]],
                                 {k: v[slots[at_record]] for k, v in evaluated.items()},
                                 {k: v[slots[at_record]] for k, v in piece.hparams.items()})
            reached.extend(members[at_record])
            self.diverged_step[members[bad]] = diverged_at[slots[bad]]
            diverged.extend(members[bad])
            self._end(piece, slots[bad], DIVERGED)
            done = at_record & (self.member_step[members] >= self.steps)
            completed.extend(members[done])
            self._end(piece, slots[done], COMPLETED)
        as_array = lambda x: np.asarray(x, np.int64)  # noqa: E731
        return Report(as_array(reached), as_array(completed), as_array(diverged))

    def apply(self, decision: Decision) -> None:
        """Carries out a strategy's decision: stop, then copy, then hparams, then start.

        The whole decision is checked before any of it is applied, so a refused one
        changes nothing. `copy` and `hparams` may name only members still running
        after the stops, and every copy reads the members as they were before it.
        """
        if not isinstance(decision, Decision):
            raise TypeError(f"{self.strategy!r}.decide must return a jt.Decision, got "
                            f"{type(decision).__name__}.")
        n = self.status.size
        stop = [self._member_id(member, n, "stop") for member in decision.stop]
        located = self._locate()
        stopping = set(stop)
        where = {m: place for m, place in located.items() if m not in stopping}
        copies = self._checked_copies(decision.copy, where, stopping)
        new = self._checked_hparams(decision.hparams, where, stopping)
        if decision.start is not None:
            self._check_table(decision.start)
        for member in stop:
            if self.status[member] == WAITING:
                self.status[member] = STOPPED
            elif self.status[member] == RUNNING:
                piece, slot = located[member]
                self._end(piece, np.array([slot]), STOPPED)
        if copies:
            self._copy(copies, where)
        if new:
            self._set_hparams(new, where)
        if decision.start is not None:
            self.add_configurations(decision.start)
        self.slices = [piece for piece in self.slices if np.any(piece.members >= 0)]

    def _member_id(self, member: Any, n: int, field: str) -> int:
        if isinstance(member, bool) or not isinstance(member, int | np.integer) or not (
                0 <= member < n):
            raise ValueError(f"{self.strategy!r}: Decision.{field} names member {member!r}; "
                             f"members are 0..{n - 1}.")
        return int(member)

    def _locate(self) -> dict[int, tuple[Slice, int]]:
        return {int(m): (piece, slot) for piece in self.slices
                for slot, m in enumerate(piece.members) if m >= 0}

    def _not_running(self, member: int, stopping: set[int], field: str) -> str:
        """Why `member` cannot be named in `Decision.<field>`: "is ...", for an error."""
        if member in stopping:
            return (f"is stopped by the same Decision (stops apply first); drop it from `stop` "
                    f"or from `{field}`.")
        status = self.status[member]
        return (f"is {'waiting' if status == WAITING else STATUS_NAMES[status]}; only running "
                f"members can be named in `{field}`.")

    def _checked_copies(self, copies: Any, where: dict, stopping: set[int]
                        ) -> list[tuple[int, int]]:
        """`Decision.copy` as (target, source) pairs of running members of one static group."""
        if not isinstance(copies, Mapping):
            raise TypeError(f"{self.strategy!r}: Decision.copy must be a mapping target -> "
                            f"source, e.g. {{3: 0}}, got {type(copies).__name__}.")
        n = self.status.size
        pairs = [(self._member_id(t, n, "copy"), self._member_id(s, n, "copy"))
                 for t, s in copies.items()]
        targets = {target: source for target, source in pairs}
        for target, source in pairs:
            for member in (target, source):
                if member not in where:
                    raise ValueError(f"{self.strategy!r}: Decision.copy {target} <- {source}: "
                                     f"member {member} "
                                     f"{self._not_running(member, stopping, 'copy')}")
            if where[target][0].group != where[source][0].group:
                raise ValueError(f"{self.strategy!r}: Decision.copy {target} <- {source}: the "
                                 "members belong to different static groups.")
            if source in targets and source != target:
                raise ValueError(
                    f"{self.strategy!r}: Decision.copy: member {source} is both the target of "
                    f"a copy (copy {source} <- {targets[source]}) and the source of another "
                    f"(copy {target} <- {source}), which would depend on the order of the "
                    "copies; copy only from members that no copy of the same Decision "
                    "changes.")
        return pairs

    def _checked_hparams(self, new: Any, where: dict, stopping: set[int]
                         ) -> list[tuple[int, dict[str, Any]]]:
        """`Decision.hparams` as (member, {name: value}) of running members."""
        if not isinstance(new, Mapping) or not all(isinstance(v, Mapping) for v in new.values()):
            raise TypeError(f"{self.strategy!r}: Decision.hparams must map each member to a "
                            "dict of new values, e.g. {3: {'learning_rate': 0.01}}.")
        n = self.status.size
        checked = []
        for member, values in new.items():
            member = self._member_id(member, n, "hparams")
            if member not in where:
                raise ValueError(f"{self.strategy!r}: Decision.hparams names member {member}, "
                                 f"which {self._not_running(member, stopping, 'hparams')}")
            for name in values:
                if name not in self.member_hparams:
                    raise ValueError(
                        f"{self.strategy!r}: Decision.hparams sets {name!r}, which is not a "
                        f"dynamic dimension ({', '.join(self.member_hparams) or 'none'}).")
            checked.append((member, {name: self._decided_value(member, name, value)
                                     for name, value in values.items()}))
        return checked

    def _decided_value(self, member: int, name: str, value: Any) -> int | float:
        """A decided value of dimension `name`, checked: a number of the dimension's type
        (a whole number for an integer dimension), positive on a log scale.

        Values outside the dimension's bounds are allowed (a decay may go below them).
        """
        dimension = self.space[name]
        where = f"{self.strategy!r}: Decision.hparams[{member}][{name!r}]"
        array = np.asarray(value) if not isinstance(value, str | bytes) else None
        if array is None or array.ndim != 0 or array.dtype.kind not in "iuf":
            raise TypeError(f"{where} must be a number, got {type(value).__name__} "
                            f"{value!r:.60}.")
        number = array.item()
        if not math.isfinite(number):
            raise ValueError(f"{where} must be finite, got {number!r}.")
        if np.dtype(dimension.dtype).kind == "i":
            if not float(number).is_integer():
                raise ValueError(f"{where} must be a whole number for {dimension!r}, got "
                                 f"{number!r}; round it, e.g. round(value).")
            number = int(number)
            bounds = np.iinfo(np.int32)
            if not bounds.min <= number <= bounds.max:
                raise ValueError(f"{where} must fit in int32, got {number}.")
            return number
        number = float(number)
        if abs(number) > float(np.finfo(np.float32).max):
            raise ValueError(f"{where} must fit in float32 (at most 3.4e38), got {number!r}.")
        if isinstance(dimension, LogUniform) and not np.float32(number) > 0:
            raise ValueError(f"{where} must be positive on the log scale of {dimension!r}, got "
                             f"{number!r}; multiply the current value by a factor to move it.")
        return number

    def _copy(self, pairs: Sequence[tuple[int, int]], where: dict) -> None:
        by_pair: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for target, source in pairs:
            (t_piece, t_slot), (s_piece, s_slot) = where[target], where[source]
            by_pair.setdefault((id(t_piece), id(s_piece)), []).append((t_slot, s_slot))
            self.member_step[target] = self.member_step[source]
            for values in self.member_hparams.values():
                values[target] = values[source]
            self.recorder.copy(target, source, int(self.member_step[source]))
        pieces = {id(piece): piece for piece in self.slices}
        for (t_id, s_id), slot_pairs in by_pair.items():
            target_piece, source_piece = pieces[t_id], pieces[s_id]
            size = target_piece.members.size
            index, mask = np.zeros(size, np.int32), np.zeros(size, bool)
            for t_slot, s_slot in slot_pairs:
                index[t_slot], mask[t_slot] = s_slot, True
            source_hparams = {k: v.copy() for k, v in source_piece.hparams.items()}
            trainer = self.groups[target_piece.group].trainer
            copied = trainer.select(target_piece.state, source_piece.state, index, mask)
            # The target keeps its own seed, so its own minibatch order and keys from the
            # copied step on, as in PBT (Jaderberg et al. 2017); `result.seed` says so.
            target_piece.state = copied._replace(seed=target_piece.state.seed)
            for name, values in target_piece.hparams.items():
                values[mask] = source_hparams[name][index[mask]]

    def _set_hparams(self, new: Sequence[tuple[int, dict[str, Any]]], where: dict) -> None:
        touched = {}
        for member, values in new:
            piece, slot = where[member]
            for name, value in values.items():
                self.member_hparams[name][member] = value
                piece.hparams[name][slot] = value
            touched[id(piece)] = piece
        for piece in touched.values():
            sharding = piece.state.seed.sharding
            hparams = {k: place(v, sharding) for k, v in piece.hparams.items()}
            piece.state = piece.state._replace(hparams=hparams)

    def repack(self) -> None:
        """Moves each group's running members into fewer or smaller slices.

        Only when that at least halves the group's slots (a new slice shape costs a
        compile; a few diverged members in a plain sweep are not worth one), and not
        while members of the group wait: they fill the free slots instead.
        """
        waiting_groups = set(self.member_group[self.status == WAITING].tolist())
        kept = []
        for group in range(len(self.groups)):
            pieces = [piece for piece in self.slices if piece.group == group]
            if not pieces:
                continue
            live = sum(int(np.sum(piece.members >= 0)) for piece in pieces)
            layout = [self.members_per_slice] * (live // self.members_per_slice)
            if live % self.members_per_slice:
                layout.append(self._bucket(live % self.members_per_slice))
            # Worth a new shape (a compile) only when it saves at least half the work.
            if group in waiting_groups or 2 * sum(layout) > sum(p.members.size for p in pieces):
                kept.extend(pieces)
                continue
            trainer = self.groups[group].trainer
            everything = trainer.concatenate([piece.state for piece in pieces])
            offsets = np.cumsum([0] + [piece.members.size for piece in pieces])
            positions = np.concatenate([offsets[i] + np.flatnonzero(piece.members >= 0)
                                        for i, piece in enumerate(pieces)])
            members = np.concatenate([piece.members[piece.members >= 0] for piece in pieces])
            all_hparams = {k: np.concatenate([piece.hparams[k] for piece in pieces])
                           for k in pieces[0].hparams}
            begin = 0
            for size in layout:
                chosen = positions[begin:begin + size]
                index = np.concatenate([chosen, np.repeat(chosen[:1], size - chosen.size)])
                slot_members = np.full(size, -1, np.int64)
                slot_members[:chosen.size] = members[begin:begin + size]
                kept.append(Slice(group, trainer.take(everything, index), slot_members,
                                  {k: v[index] for k, v in all_hparams.items()}))
                begin += size
        self.slices = kept

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> SweepResult:
        """Runs (or resumes) the search to its end; returns the result.

        The strategy's `setup` must have run (`sweep` calls it before planning slices).
        """
        start = time.perf_counter()
        if not (self.checkpoint is not None and self.checkpoint.restore(self)):
            self.add_configurations(self.strategy.initial(self.search), "`initial` must return")
        self._release_batches()
        bar = _progress_bar(self.progress)
        try:
            with self._interruptible():
                while True:
                    self.fill()
                    if not self.slices:
                        break
                    before = self.trained_member_steps
                    report = self.train_round()
                    try:
                        self.apply(self.strategy.decide(self.search, report))
                    except Exception as error:  # the strategy's, or its decision refused
                        self._attach_result(error, start)
                        raise
                    self.repack()
                    self._release_batches()
                    self.round += 1
                    self._draw(bar, self.trained_member_steps - before)
                    self._interrupted = any_process(self._interrupted)
                    if self.checkpoint is not None and (
                            self._interrupted or self.round % self.checkpoint_every == 0):
                        self.checkpoint.save(self)
                    if self._interrupted:
                        raise SweepInterrupted(
                            self.result(time.perf_counter() - start),
                            "sweep interrupted at a record point; `.result` holds the "
                            "records so far" + (
                                "; call `sweep` again with the same arguments to resume"
                                if self.checkpoint is not None else ""),
                        )
        finally:
            if bar is not None:
                bar.close()
        result = self.result(time.perf_counter() - start)
        if self.checkpoint is not None:
            self.checkpoint.save(self)
        return result

    def _attach_result(self, error: Exception, start: float) -> None:
        """Gives `error` the partial result as `.result`, as `SweepInterrupted` carries it.

        The exception still reaches the caller as itself (`except` on its type works);
        without `checkpoint_dir` the records would otherwise be lost with it.
        """
        try:
            error.result = self.result(time.perf_counter() - start)  # type: ignore[attr-defined]
        except Exception as failure:  # never hide the strategy's error behind another
            error.add_note(f"jaxtune: the partial result could not be attached: {failure!r}")
            return
        error.add_note(
            "jaxtune: the sweep stopped at this record point; the exception's `.result` holds "
            "the records so far (members still training have status 'running')" + (
                "; with the strategy fixed, `sweep` with the same arguments resumes from the "
                "last checkpoint" if self.checkpoint is not None else "") + ".")

    def _release_batches(self) -> None:
        """Lets a stream of batches forget the steps no member will train again."""
        stream = self.groups[0].trainer.stream if self.groups else None
        if stream is None or self.strategy.starts_members:
            return
        pending = (self.status == RUNNING) | (self.status == WAITING)
        stream.release(int(self.member_step[pending].min()) if pending.any() else self.steps)

    def _draw(self, bar: Any, advanced: int) -> None:
        if bar is None:
            return
        bar.total = int((self.status != STOPPED).sum()) * self.steps
        current = self.recorder.latest_values(self.metric)
        current = current[np.isfinite(current)]
        if current.size:
            best = current.min() if self.mode == "min" else current.max()
            bar.set_postfix({f"best member {self.metric}": f"{best:.4g}"})
        bar.update(advanced)

    @contextlib.contextmanager
    def _interruptible(self):
        """Ctrl-C asks for a stop at the next record point; a second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._interrupted:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self._interrupted = True
            if is_main_process():
                print("\njaxtune: stopping at the next record point (Ctrl-C again to abort now)",
                      flush=True)

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # -- the result ---------------------------------------------------------------------

    def result(self, seconds: float) -> SweepResult:
        columns = self.trial_columns()
        compile_s = sum(group.trainer.compile_seconds for group in self.groups)
        run_s = max(seconds - compile_s, 1e-9)
        timing = {
            "compile_s": compile_s,
            "run_s": run_s,
            "total_s": seconds,
            "compiles": float(sum(group.trainer.compiles for group in self.groups)),
            "member_steps_per_s": self.trained_member_steps / run_s,
        }
        status = STATUS_NAMES[self.status]
        recorder = self.recorder
        return SweepResult(
            hparams={name: column[self.member_trial] for name, column in columns.items()},
            trial=self.member_trial,
            seed=self.member_seed,
            steps=recorder.record_steps.astype(np.int64),
            train_loss=recorder.curves["train_loss"],
            metrics={name: recorder.curves[name] for name in (*self.eval_names,
                                                              *self.aux_names)},
            diverged=self.status == DIVERGED,
            diverged_step=np.where(self.status == DIVERGED, self.diverged_step, -1),
            metric=self.metric,
            mode=self.mode,
            **self._kept_trees(),
            timing=timing,
            step_loss=recorder.step_loss,
            status=status,
            steps_trained=self.member_step.copy(),
            hparam_history={k: v.copy() for k, v in recorder.hparam_history.items()},
            lineage=np.asarray(recorder.lineage, np.int64).reshape(-1, 3),
        )

    def _kept_trees(self) -> dict[str, Any]:
        """The kept parameters and model state, as the result's fields.

        Stacked into `params` and `model_state` when every member was kept with trees of
        one shape; else one tree per kept member (`member_params`, `member_model_state`).
        """
        params, model_state = self._stacked(self.params), self._stacked(self.model_state)
        stateless = all(tree is None for tree in self.model_state.values())
        if params is not None and (model_state is not None or stateless):
            return {"params": params, "model_state": model_state}
        return {"member_params": dict(self.params) or None,
                "member_model_state": dict(self.model_state) or None}

    def _stacked(self, kept: Mapping[int, Any]) -> Any:
        """Every member's kept tree (`params` or `model_state`) as one pytree [N, ...], or None.

        None without `keep_params`, when some member has not finished, or when static
        groups have trees of different structure or shape (a swept layer width).
        """
        if not self.keep_params or len(kept) != self.status.size:
            return None
        trees = [kept[m] for m in range(self.status.size)]
        structures = {jax.tree_util.tree_structure(t) for t in trees}
        shapes = {tuple(np.shape(a) for a in jax.tree_util.tree_leaves(t)) for t in trees}
        if len(structures) != 1 or len(shapes) != 1:
            return None
        return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *trees)


def plan_slices(members: int, devices: Sequence[jax.Device], member_bytes: int,
                members_per_slice: int | None, members_in_flight: int | None,
                required_in_flight: int | None, cpu_members_per_device: int
                ) -> tuple[int, int]:
    """The slice size and members in flight: bounded by the devices' memory.

    Raises ValueError, with the estimate and the fix, when even one slice cannot fit.
    """
    num_devices = len(devices)
    memory = device_memory_bytes(devices[0])
    # Half of the memory for the population: the rest is data, programs and scratch.
    fits = max(0, int(0.5 * memory * num_devices // max(member_bytes, 1)))
    if members_per_slice is None:
        whole = math.ceil(members / num_devices) * num_devices
        if devices[0].platform == "cpu":
            size = min(whole, cpu_members_per_device * num_devices)
        else:
            size = min(whole, max(num_devices, fits // num_devices * num_devices))
    else:
        size = math.ceil(members_per_slice / num_devices) * num_devices
    if size * member_bytes > 0.5 * memory * num_devices:
        raise ValueError(
            f"one slice of {size} members needs about {_gib(size * member_bytes)} of device "
            f"memory (about {_gib(member_bytes)} per member: parameters, optimizer state, "
            f"gradients), more than half of the {_gib(memory * num_devices)} the "
            f"{num_devices} device(s) have; pass members_per_slice={max(1, fits)} or fewer"
            + ("" if fits else ", or shrink the model") + "."
        )
    if members_in_flight is None:
        # Two slices: one trains while the other is read back and decided on.
        members_in_flight = size * max(1, min(2, fits // max(size, 1)))
    members_in_flight = max(members_in_flight, required_in_flight or 0, size)
    if members_in_flight * member_bytes > 0.5 * memory * num_devices and members_in_flight > size:
        raise ValueError(
            f"{members_in_flight} members in flight need about "
            f"{_gib(members_in_flight * member_bytes)} of device memory; at most {fits} fit. "
            "Lower `members_in_flight` (or the strategy's population)."
        )
    return size, members_in_flight


# The kept parameters may take this fraction of the host memory available when the sweep
# starts: the rest is the data, the compiled programs, the members in flight (on a CPU, the
# host's memory too) and whatever else the process holds.
KEPT_MEMORY_FRACTION = 0.5


def kept_configurations(keep_params: Any) -> int | None:
    """How many configurations' members `keep_params` keeps: None for all (True) or none.

    Raises TypeError / ValueError naming the allowed values.
    """
    allowed = ("`keep_params` must be True, False, 'best' or a positive int k (the members "
               "of the best k configurations)")
    if isinstance(keep_params, bool | np.bool_):
        return None
    if isinstance(keep_params, str):
        if keep_params != "best":
            raise ValueError(f"{allowed}, got keep_params={keep_params!r}.")
        return 1
    if not isinstance(keep_params, int | np.integer):
        raise TypeError(f"{allowed}, got {type(keep_params).__name__} {keep_params!r}.")
    if keep_params < 1:
        raise ValueError(f"{allowed}, got keep_params={keep_params}; pass keep_params=False "
                         "to keep none.")
    return int(keep_params)


def check_kept_memory(keep_params: Any, members: int, seeds: int, member_trees: Sequence[Any],
                      available: int | None = None) -> None:
    """Refuses, before anything trains, kept parameters that would outgrow the host's memory.

    `member_trees` holds one member's parameters and model state (arrays or
    `ShapeDtypeStruct`s) of each static group; the largest is counted for every kept
    member. The bound is `KEPT_MEMORY_FRACTION` of `available` (default:
    `host_memory_available()`; no check where that is unknown).

    Raises:
      ValueError: with the estimate and the `keep_params` values that fit.
    """
    best = kept_configurations(keep_params)
    if (best is None and not keep_params) or not members:
        return
    available = host_memory_available() if available is None else available
    if available is None:
        return
    per_member = max(sum(math.prod(np.shape(a)) * np.dtype(a.dtype).itemsize
                         for a in jax.tree_util.tree_leaves(tree)) for tree in member_trees)
    kept = members if best is None else min(members, best * seeds)
    bound = KEPT_MEMORY_FRACTION * available
    if kept * per_member <= bound:
        return
    fit = int(bound // max(per_member * seeds, 1))  # configurations whose members fit
    what = ("keeps every member's final parameters on the host" if best is None else
            f"keeps the members of the best {best} configuration{'s' if best > 1 else ''}")
    if fit == 0:
        fixes = "keep_params=False (not even the best configuration's members fit)"
    else:
        fixes = ", ".join([f"keep_params='best' (the best configuration's {seeds} member(s))",
                           *([f"keep_params=k for k <= {fit}"] if fit > 1 else []),
                           "or keep_params=False"])
    raise ValueError(
        f"keep_params={keep_params!r} {what}: {kept} members x {_gib(per_member)} = "
        f"{_gib(kept * per_member)}, more than {KEPT_MEMORY_FRACTION:.0%} of the "
        f"{_gib(available)} of host memory available; keep fewer: {fixes}. (A member's "
        "figure counts its parameters and model state.)")


def host_memory_available() -> int | None:
    """Bytes of host memory available now, or None where it cannot be read.

    Linux's MemAvailable (/proc/meminfo: free memory plus the page cache it can
    reclaim), else the free pages (`os.sysconf("SC_AVPHYS_PAGES")` times the page size).
    """
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(_sysconf("SC_AVPHYS_PAGES")) * int(_sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def device_memory_bytes(device: jax.Device) -> int:
    """Memory one device can hold: its allocator limit, or the host's RAM on a CPU."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some backends do not implement memory_stats
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return int(np.int64(_sysconf("SC_PAGE_SIZE")) * _sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _sysconf(name: str) -> int:
    import os

    return os.sysconf(name)


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"


def _progress_bar(enabled: bool):
    if not enabled or not is_main_process():  # one bar for a multi-process sweep
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    try:  # notebook widgets when they can be drawn; tqdm.auto warns when they cannot
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        pass
    return tqdm(total=0, unit="member-step", unit_scale=True, desc="sweep", leave=True)
