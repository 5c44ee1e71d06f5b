"""The runner: the round of a sweep, from filling slots to the checkpoint.

One *round*:

  1. fill: waiting members enter free slots (of their static group) and new slices;
  2. train: every slice runs up to the next record point of its members (every
     `eval_every` of their own steps, and the budget's end) and is evaluated;
     all slices are dispatched before any result is read back;
  3. record: each member that reached a record point gets its metrics recorded;
     members that trained their full budget complete, diverged ones are frozen out;
  4. decide: the strategy sees the records (through its `Search`) and returns a
     `Decision` (stop, copy, new hyperparameters, new configurations), checked whole
     and applied on device;
  5. repack: survivors move into fewer or smaller slices when that saves slots;
  6. checkpoint (with `checkpoint_dir`), and honour a Ctrl-C.

Everything a round does is a function of the records, so a run resumed from a
checkpoint repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxtune.distributed import any_process, gather, is_main_process
from jaxtune.results import SweepResult
from jaxtune.runner import decisions
from jaxtune.runner.ahead import CompileAhead, enabled_by_default
from jaxtune.runner.checkpoint import Checkpointer, Prefixed
from jaxtune.runner.clock import Clock
from jaxtune.runner.configs import ConfigSource
from jaxtune.runner.kept import KeptTrees
from jaxtune.runner.members import (
    COMPLETED,
    DIVERGED,
    RESULT_STATUS,
    RUNNING,
    STOPPED,
    WAITING,
    MemberTable,
)
from jaxtune.runner.recorder import Recorder
from jaxtune.runner.slices import Slice, Slices
from jaxtune.space import Table
from jaxtune.strategies.base import Report, Search, Settings, Strategy, best_of


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep at a record point; `.result` holds what was recorded.

    Members still training (or waiting) have status "running" in the partial result.
    With `checkpoint_dir`, the checkpoint of that record point is complete: calling
    `sweep` again with the same arguments resumes.
    """

    def __init__(self, result: SweepResult | None, message: str):
        super().__init__(message)
        self.result = result


class Runner:
    """Trains members in slices, records them and applies a strategy's decisions.

    Built whole from the parts `sweep` assembled: the strategy's `search` view is over
    the same `members`, `recorder` and `configs` the runner changes. With `compile_ahead`
    (default: on unless `JAXTUNE_COMPILE_AHEAD=0`), static groups compile in background
    threads as soon as their members are added (`jaxtune.runner.ahead`).
    """

    def __init__(self, *, settings: Settings, strategy: Strategy, search: Search,
                 members: MemberTable, recorder: Recorder, configs: ConfigSource,
                 slices: Slices, kept: KeptTrees, eval_names: tuple[str, ...],
                 aux_names: tuple[str, ...] = (), progress: bool = False,
                 checkpoint: Checkpointer | None = None, checkpoint_every: int = 1,
                 compile_ahead: bool | None = None):
        self.settings = settings
        self.strategy = strategy
        self.search = search
        self.members = members
        self.recorder = recorder
        self.configs = configs
        self.slices = slices
        self.kept = kept
        self.eval_names = eval_names
        self.aux_names = tuple(aux_names)  # training metrics from `loss_fn`'s aux dict
        self.progress = progress
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.round = 0
        self.trained_member_steps = 0
        self._interrupted = False
        self.compile_ahead = enabled_by_default() if compile_ahead is None else compile_ahead
        self._ahead: CompileAhead | None = None
        self.clock = Clock(slices.groups)

    # -- members -----------------------------------------------------------------------

    def add_configurations(self, table: Table, what: str = "Decision.start must be"
                           ) -> np.ndarray:
        """Adds every row of `table` as a trial of `seeds` waiting members; returns them."""
        decisions.check_table(table, self.settings.space, repr(self.strategy), what)
        groups = np.empty(len(table), np.int64)
        for static, rows in table.static_groups():
            groups[rows] = self.slices.groups.of(static)
        added = self.members.add(table, groups)
        self.recorder.add_members(added.size)
        if self._ahead is not None:
            self._ahead.schedule(added)
        return added

    def _end(self, piece: Slice, slots: np.ndarray, status: int) -> None:
        """Members in `slots` leave the devices with `status`; their trees are kept."""
        self.members.set_status(piece.members[slots], status)
        self.kept.keep(piece, slots, self.recorder, self.settings.metric, self.settings.mode)
        piece.members[slots] = -1

    def _repacking(self, template: Slice, size: int, members: np.ndarray) -> None:
        """Compiles ahead the programs of a slice of `size` slots that `members` are about
        to be repacked into (its next chunk's length from their steps)."""
        steps = self.members.step[members]
        slot_steps = np.concatenate([steps, np.full(size - members.size, -1)])
        length = int(np.min(self._next_record(steps) - steps))
        self._ahead.schedule_repacked(template, size, slot_steps, length)

    def _next_record(self, step: np.ndarray) -> np.ndarray:
        every, steps = self.settings.eval_every, self.settings.steps
        return np.minimum(steps, (step // every + 1) * every)

    # -- one round ----------------------------------------------------------------------

    def fill(self) -> None:
        """Waiting members enter free slots and new slices, at step 0."""
        entered = self.slices.fill()
        self.members.set_status(entered, RUNNING)
        self.members.step[entered] = 0

    def train_round(self) -> Report:
        """Trains every slice to its members' next record point; records; returns the report."""
        table = self.members
        pending = []
        hypergradients = []  # (slot members, name -> [slots]) per slice, when asked for
        self.clock.start_training()
        for piece in self.slices:
            live = piece.members[piece.members >= 0]
            if live.size == 0:
                continue
            steps = table.step[live]
            length = int(np.min(self._next_record(steps) - steps))
            trainer = self.slices.groups[piece.group].trainer
            slot_steps = np.where(piece.members >= 0, table.step[piece.members], -1)
            piece.state, losses, aux = _train(trainer, piece, length, slot_steps,
                                              self.strategy.hypergradients, hypergradients)
            evaluated = trainer.evaluate(piece.state) if self.eval_names else {}
            pending.append((piece, length, losses, aux, evaluated))
        self.clock.end_training([entry[2:] for entry in pending])  # apart from recording
        reached, completed, diverged = [], [], []
        for piece, length, losses, aux, evaluated in pending:
            losses, aux, evaluated, alive, diverged_at = gather(
                (losses, aux, evaluated, piece.state.alive, piece.state.diverged_step))
            slots = np.flatnonzero(piece.members >= 0)
            members = piece.members[slots]
            begin = table.step[members]
            table.step[members] = begin + length
            self.trained_member_steps += length * members.size
            self.recorder.add_losses(members, begin, losses[slots],
                                     {k: v[slots] for k, v in aux.items()})
            bad = ~alive[slots]
            at_record = ~bad & (table.step[members] == self._next_record(begin))
            self.recorder.record(members[at_record], table.step[members[at_record]],
                                 {k: v[slots[at_record]] for k, v in evaluated.items()},
                                 {k: v[slots[at_record]] for k, v in piece.hparams.items()})
            reached.extend(members[at_record])
            table.diverged_step[members[bad]] = diverged_at[slots[bad]]
            diverged.extend(members[bad])
            self._end(piece, slots[bad], DIVERGED)
            done = at_record & (table.step[members] >= self.settings.steps)
            completed.extend(members[done])
            self._end(piece, slots[done], COMPLETED)
        as_array = lambda x: np.asarray(x, np.int64)  # noqa: E731
        return Report(as_array(reached), as_array(completed), as_array(diverged),
                      _by_member_id(hypergradients, table.size))

    def apply(self, decision: Any) -> None:
        """Carries out a strategy's decision: stop, then copy, then hparams, then start.

        The whole decision is checked before any of it is applied, so a refused one
        changes nothing. `copy` and `hparams` may name only members still running
        after the stops, and every copy reads the members as they were before it.
        """
        checked = decisions.check(decision, repr(self.strategy), self.members, self.slices)
        ending: dict[int, tuple[Slice, list[int]]] = {}  # slice id -> (slice, slots to end)
        for member in dict.fromkeys(checked.stop):
            if self.members.status[member] == WAITING:
                self.members.set_status(member, STOPPED)
            elif self.members.status[member] == RUNNING:
                piece, slot = checked.located[member]
                ending.setdefault(id(piece), (piece, []))[1].append(slot)
        for piece, slots in ending.values():  # one read-back of each slice's trees
            self._end(piece, np.array(slots), STOPPED)
        if checked.copy:
            decisions.copy_members(checked.copy, checked.where, self.slices, self.members,
                                   self.recorder)
        if checked.hparams:
            decisions.set_hparams(checked.hparams, checked.where, self.members)
        if checked.start is not None:
            self.add_configurations(checked.start)
        self.slices.drop_empty()

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> SweepResult:
        """Runs (or resumes) the search to its end; returns the result.

        The strategy's `setup` must have run (`sweep` calls it before planning slices).
        """
        start = time.perf_counter()
        if self.compile_ahead and jax.process_count() == 1:  # `ahead`: no collectives
            self._ahead = CompileAhead(
                self.slices, min(self.settings.eval_every, self.settings.steps),
                bool(self.eval_names), self.strategy.starts_members)
            self.slices.on_repack = self._repacking
        bar = _progress_bar(self.progress)
        try:
            state = None if self.checkpoint is None else self.checkpoint.restore()
            if state is not None:
                self.load_state_dict(state)
            else:
                self.add_configurations(self.strategy.initial(self.search),
                                        "`initial` must return")
            self._release_batches()
            with self._interruptible():
                while self._round(start, bar):
                    pass
        finally:
            if bar is not None:
                bar.close()
            if self._ahead is not None:
                self._ahead.close()
                self._ahead = None
                self.slices.on_repack = None
        result = self.result(time.perf_counter() - start)
        if self.checkpoint is not None:
            self.checkpoint.save(self.state_dict())
        return result

    def _round(self, start: float, bar: Any) -> bool:
        """One round; False when no member is left to train."""
        self.clock.start_round()
        self.fill()
        if not self.slices:
            return False
        before = self.trained_member_steps
        report = self.train_round()
        try:
            self.apply(self.strategy.decide(self.search, report))
        except Exception as error:  # the strategy's, or its decision refused
            self._attach_result(error, start)
            raise
        self.slices.repack()
        self._release_batches()
        self.round += 1
        self._draw(bar, self.trained_member_steps - before)
        self._interrupted = any_process(self._interrupted)
        if self.checkpoint is not None and (
                self._interrupted or self.round % self.checkpoint_every == 0):
            self.checkpoint.save(self.state_dict())
        self.clock.end_round()
        if self._interrupted:
            raise SweepInterrupted(
                self.result(time.perf_counter() - start),
                "sweep interrupted at a record point; `.result` holds the records so far" + (
                    "; call `sweep` again with the same arguments to resume"
                    if self.checkpoint is not None else ""))
        return True

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
        groups = self.slices.groups
        batches = groups[0].trainer.stream if len(groups) else None
        if batches is None or self.strategy.starts_members:
            return
        pending = self.members.pending()
        batches.release(int(self.members.step[pending].min()) if pending.any()
                        else self.settings.steps)

    def _draw(self, bar: Any, advanced: int) -> None:
        if bar is None:
            return
        bar.total = int((self.members.status != STOPPED).sum()) * self.settings.steps
        bar.set_postfix(self._postfix(), refresh=False)
        bar.update(advanced)

    def _postfix(self) -> dict[str, str]:
        """The progress bar's figures: the best member's metric so far, and the seconds
        spent compiling (apart from training: in background threads they overlap it)."""
        postfix = {}
        current = self.recorder.latest_values(self.settings.metric)
        current = current[np.isfinite(current)]
        if current.size:
            best = best_of(current.tolist(), self.settings.mode)
            postfix[f"best member {self.settings.metric}"] = f"{best:.4g}"
        postfix["compile"] = f"{self.clock.compile_seconds():.1f} s"
        return postfix

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

    # -- checkpoints and the result -----------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a round depends on: arrays and JSON-able values, by distinct names."""
        return {
            "round": self.round, "trained_member_steps": self.trained_member_steps,
            **self.members.state_dict(), **self.slices.state_dict(), **self.kept.state_dict(),
            **{f"record:{k}": v for k, v in self.recorder.state_dict().items()},
            **self.configs.state_dict(), "strategy": self.strategy.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what `state_dict` returned (from a checkpoint: see `Checkpointer`)."""
        self.round = state["round"]
        self.trained_member_steps = state["trained_member_steps"]
        self.members.load_state_dict(state)
        self.recorder.load_state_dict(Prefixed(state, "record:"))
        self.slices.load_state_dict(state)
        self.kept.load_state_dict(state)
        self.strategy.load_state_dict(state["strategy"])
        self.configs.load_state_dict(state)

    def result(self, seconds: float) -> SweepResult:
        table, recorder = self.members, self.recorder
        columns = table.trial_columns()
        timing = self.clock.timing(seconds, self.trained_member_steps)
        diverged = table.status == DIVERGED
        return SweepResult(
            hparams={name: column[table.trial] for name, column in columns.items()},
            trial=table.trial,
            seed=table.seed,
            steps=recorder.record_steps.astype(np.int64),
            train_loss=recorder.curves["train_loss"],
            metrics={name: recorder.curves[name] for name in (*self.eval_names,
                                                              *self.aux_names)},
            diverged=diverged,
            diverged_step=np.where(diverged, table.diverged_step, -1),
            metric=self.settings.metric,
            mode=self.settings.mode,
            **self.kept.result_fields(),
            timing=timing,
            step_loss=recorder.step_loss,
            status=RESULT_STATUS[table.status],
            steps_trained=table.step.copy(),
            hparam_history={k: v.copy() for k, v in recorder.hparam_history.items()},
            lineage=np.asarray(recorder.lineage, np.int64).reshape(-1, 3),
        )


def _train(trainer: Any, piece: Slice, length: int, slot_steps: np.ndarray,
           request: Mapping[str, Any] | None, hypergradients: list) -> tuple:
    """`trainer.train_with_metrics` on a slice; with a strategy's hypergradient `request`,
    `train_with_hypergradients`, its gradients appended to `hypergradients` with the slots'
    members (`jaxtune.hypergradient`)."""
    if request is None:
        return trainer.train_with_metrics(piece.state, length, donate=True,
                                          member_steps=slot_steps)
    state, losses, aux, grads = trainer.train_with_hypergradients(
        piece.state, length, donate=True, member_steps=slot_steps, **request)
    hypergradients.append((piece.members.copy(), grads))
    return state, losses, aux


def _by_member_id(entries: list, size: int) -> dict[str, np.ndarray]:
    """name -> float [size]: each slice's per-slot values at its members' ids, NaN elsewhere."""
    columns: dict[str, np.ndarray] = {}
    for members, values in entries:
        slots = np.flatnonzero(members >= 0)
        for name, column in gather(values).items():
            columns.setdefault(name, np.full(size, np.nan))[members[slots]] = column[slots]
    return columns


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
