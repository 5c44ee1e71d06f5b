"""The member table: one row per member (a configuration x a seed), never reordered.

A member's id is its row, which is also its row in the result. Members are added a
configuration at a time (each with every seed) and never removed: a stopped member keeps
its row, its curves and its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxtune.results import STATUSES
from jaxtune.space import Space, Table

# A member's status, as stored: an int8 code per member.
WAITING, RUNNING, COMPLETED, STOPPED, DIVERGED = range(5)
# The names strategies see (`search.status`), by code.
STATUS_NAMES = ("waiting", "running", "completed", "stopped", "diverged")
# The names the result holds, by code: a member still waiting has not ended, so "running".
RESULT_STATUS = np.array([name if name in STATUSES else "running" for name in STATUS_NAMES])
# The per-member arrays, by attribute -> name in a checkpoint.
_ARRAYS = {"trial": "member_trial", "seed": "member_seed", "group": "member_group",
           "status": "status", "step": "member_step", "diverged_step": "diverged_step"}


class MemberTable:
    """Every member's trial, seed, static group, status, steps and dynamic hyperparameters.

    Attributes (per-member arrays, indexed by member id):
      trial: int64 [N], the configuration (row of `tables`, in order) it trains.
      seed: int64 [N], its seed, 0 .. seeds-1.
      group: int64 [N], the static group (one compiled program) it belongs to.
      status: int8 [N], one of WAITING ... DIVERGED; change it with `set_status`.
      step: int64 [N], optimizer steps trained so far.
      diverged_step: int64 [N], the step it went non-finite at, -1 if it did not.
      hparams: name -> [N], its current value of every dynamic hyperparameter.
      tables: the configurations, in trial order, a `Table` per batch added.
    """

    def __init__(self, space: Space, seeds: int):
        self.space = space
        self.seeds = seeds
        self.tables: list[Table] = []
        self.n_trials = 0
        self.trial = np.zeros(0, np.int64)
        self.seed = np.zeros(0, np.int64)
        self.group = np.zeros(0, np.int64)
        self.status = np.zeros(0, np.int8)
        self.step = np.zeros(0, np.int64)
        self.diverged_step = np.zeros(0, np.int64)
        self.hparams = {name: np.zeros(0, np.float32) for name in space.dynamic_names}
        self._names: np.ndarray | None = None  # `status_names()`, until the status changes

    @property
    def size(self) -> int:
        return self.trial.size

    def add(self, table: Table, groups: np.ndarray) -> np.ndarray:
        """Adds every row of `table` (static group `groups[row]`) as `seeds` waiting members.

        Returns the new members' ids.
        """
        n, first = len(table), self.size
        if n == 0:
            return np.zeros(0, np.int64)
        self.tables.append(table)
        added = n * self.seeds
        self.trial = np.concatenate([self.trial, self.n_trials + np.repeat(np.arange(n), self.seeds)])
        self.seed = np.concatenate([self.seed, np.tile(np.arange(self.seeds), n)])
        self.group = np.concatenate([self.group, np.repeat(groups, self.seeds)])
        self.status = np.concatenate([self.status, np.full(added, WAITING, np.int8)])
        self.step = np.concatenate([self.step, np.zeros(added, np.int64)])
        self.diverged_step = np.concatenate([self.diverged_step, np.full(added, -1, np.int64)])
        dynamic = table.dynamic()
        for name, old in self.hparams.items():
            column = np.repeat(dynamic[name], self.seeds)
            self.hparams[name] = np.concatenate([old.astype(column.dtype), column])
        self.n_trials += n
        self._names = None
        return np.arange(first, first + added)

    def set_status(self, members: Any, status: int) -> None:
        self.status[members] = status
        self._names = None

    def status_names(self) -> np.ndarray:
        """str [N], read-only: each member's status by name; built once per change."""
        if self._names is None:
            self._names = np.asarray(STATUS_NAMES)[self.status]
            self._names.flags.writeable = False
        return self._names

    def pending(self) -> np.ndarray:
        """bool [N]: the members that have not ended (waiting or running)."""
        return (self.status == WAITING) | (self.status == RUNNING)

    def trial_columns(self) -> dict[str, np.ndarray]:
        """Every configuration's hyperparameters, name -> [n_trials], in trial order."""
        return {name: np.concatenate([t.columns[name] for t in self.tables])
                for name in self.space.names}

    def state_dict(self) -> dict[str, Any]:
        """The table as arrays (by their checkpoint names) and JSON-able values."""
        state: dict[str, Any] = {key: getattr(self, name) for name, key in _ARRAYS.items()}
        state.update({f"hparam:{name}": values for name, values in self.hparams.items()})
        state["n_trials"] = self.n_trials
        state["tables"] = [table.to_dict() for table in self.tables]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what `state_dict` returned."""
        for name, key in _ARRAYS.items():
            setattr(self, name, state[key])
        self.hparams = {name: state[f"hparam:{name}"] for name in self.hparams}
        self.tables = [self.space.table(columns) for columns in state["tables"]]
        self.n_trials = state["n_trials"]
        self._names = None
