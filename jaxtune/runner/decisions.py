"""A strategy's `Decision`, checked whole before any of it is applied.

`check` turns a decision into `Checked` (member ids, copy pairs, checked values) or
raises naming the strategy, the field and the member, so a refused decision changes
nothing. `copy_members` and `set_hparams` then carry out its copies and new values on the
devices; stopping and starting members is the loop's (it keeps the stopped ones' trees).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxtune.distributed import place
from jaxtune.runner.members import STATUS_NAMES, MemberTable
from jaxtune.runner.recorder import Recorder
from jaxtune.runner.slices import Slice, Slices
from jaxtune.space import LogUniform, Space, Table
from jaxtune.strategies.base import Decision

Where = dict[int, tuple[Slice, int]]  # running member -> (its slice, its slot)


class Checked(NamedTuple):
    """A decision whose every part was checked against the population as it is."""

    stop: list[int]  # members to stop
    copy: list[tuple[int, int]]  # (target, source), both running after the stops
    hparams: list[tuple[int, dict[str, Any]]]  # (member, {name: checked value})
    start: Table | None  # new configurations
    located: Where  # every member on the devices, before the stops
    where: Where  # the members still running after the stops


def check_table(table: Any, space: Space, owner: str, what: str = "Decision.start must be"
                ) -> Table:
    """`table` if it is a `Table` of `space`; TypeError / ValueError otherwise."""
    if not isinstance(table, Table):
        raise TypeError(f"{owner}: {what} a jt.Table of the sweep's space (from "
                        f"`search.ask(n)`), got {type(table).__name__}.")
    if table.space != space:
        raise ValueError("a strategy started configurations of another space; build them "
                         "with `search.ask(n)` or `search.space.table(...)`.")
    return table


def check(decision: Any, owner: str, members: MemberTable, slices: Slices) -> Checked:
    """`decision` checked whole; `owner` (the strategy's repr) names it in every error."""
    if not isinstance(decision, Decision):
        raise TypeError(f"{owner}.decide must return a jt.Decision, got "
                        f"{type(decision).__name__}.")
    n = members.size
    stop = [_member_id(member, n, "stop", owner) for member in decision.stop]
    located = slices.locate()
    stopping = set(stop)
    where = {m: place for m, place in located.items() if m not in stopping}
    copies = _checked_copies(decision.copy, where, stopping, owner, members)
    new = _checked_hparams(decision.hparams, where, stopping, owner, members)
    if decision.start is not None:
        check_table(decision.start, members.space, owner)
    return Checked(stop, copies, new, decision.start, located, where)


def _member_id(member: Any, n: int, field: str, owner: str) -> int:
    if isinstance(member, bool) or not isinstance(member, int | np.integer) or not (
            0 <= member < n):
        raise ValueError(f"{owner}: Decision.{field} names member {member!r}; "
                         f"members are 0..{n - 1}.")
    return int(member)


def _not_running(member: int, stopping: set[int], field: str, members: MemberTable) -> str:
    """Why `member` cannot be named in `Decision.<field>`: "is ...", for an error."""
    if member in stopping:
        return (f"is stopped by the same Decision (stops apply first); drop it from `stop` "
                f"or from `{field}`.")
    return (f"is {STATUS_NAMES[members.status[member]]}; only running members can be "
            f"named in `{field}`.")


def _checked_copies(copies: Any, where: Where, stopping: set[int], owner: str,
                    members: MemberTable) -> list[tuple[int, int]]:
    """`Decision.copy` as (target, source) pairs of running members of one static group."""
    if not isinstance(copies, Mapping):
        raise TypeError(f"{owner}: Decision.copy must be a mapping target -> source, e.g. "
                        f"{{3: 0}}, got {type(copies).__name__}.")
    n = members.size
    pairs = [(_member_id(t, n, "copy", owner), _member_id(s, n, "copy", owner))
             for t, s in copies.items()]
    targets = {target: source for target, source in pairs}
    for target, source in pairs:
        for member in (target, source):
            if member not in where:
                raise ValueError(f"{owner}: Decision.copy {target} <- {source}: member {member} "
                                 f"{_not_running(member, stopping, 'copy', members)}")
        if where[target][0].group != where[source][0].group:
            raise ValueError(f"{owner}: Decision.copy {target} <- {source}: the members belong "
                             "to different static groups.")
        if source in targets and source != target:
            raise ValueError(
                f"{owner}: Decision.copy: member {source} is both the target of a copy (copy "
                f"{source} <- {targets[source]}) and the source of another (copy {target} <- "
                f"{source}), which would depend on the order of the copies; copy only from "
                "members that no copy of the same Decision changes.")
    return pairs


def _checked_hparams(new: Any, where: Where, stopping: set[int], owner: str,
                     members: MemberTable) -> list[tuple[int, dict[str, Any]]]:
    """`Decision.hparams` as (member, {name: value}) of running members."""
    if not isinstance(new, Mapping) or not all(isinstance(v, Mapping) for v in new.values()):
        raise TypeError(f"{owner}: Decision.hparams must map each member to a dict of new "
                        "values, e.g. {3: {'learning_rate': 0.01}}.")
    checked = []
    for member, values in new.items():
        member = _member_id(member, members.size, "hparams", owner)
        if member not in where:
            raise ValueError(f"{owner}: Decision.hparams names member {member}, which "
                             f"{_not_running(member, stopping, 'hparams', members)}")
        for name in values:
            if name not in members.hparams:
                raise ValueError(
                    f"{owner}: Decision.hparams sets {name!r}, which is not a dynamic "
                    f"dimension ({', '.join(members.hparams) or 'none'}).")
        where_value = f"{owner}: Decision.hparams[{member}]"
        checked.append((member, {name: decided_value(members.space[name], value,
                                                     f"{where_value}[{name!r}]")
                                 for name, value in values.items()}))
    return checked


def decided_value(dimension: Any, value: Any, where: str) -> int | float:
    """A decided value of `dimension`, checked: a number of the dimension's type (a whole
    number for an integer dimension), positive on a log scale.

    Values outside the dimension's bounds are allowed (a decay may go below them).
    """
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


def copy_members(pairs: Sequence[tuple[int, int]], where: Where, slices: Slices,
                 members: MemberTable, recorder: Recorder) -> None:
    """Each target takes its source's state, step and hyperparameters, on the devices."""
    by_pair: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for target, source in pairs:
        (t_piece, t_slot), (s_piece, s_slot) = where[target], where[source]
        by_pair.setdefault((id(t_piece), id(s_piece)), []).append((t_slot, s_slot))
        members.step[target] = members.step[source]
        for values in members.hparams.values():
            values[target] = values[source]
        recorder.copy(target, source, int(members.step[source]))
    pieces = {id(piece): piece for piece in slices}
    for (t_id, s_id), slot_pairs in by_pair.items():
        target_piece, source_piece = pieces[t_id], pieces[s_id]
        size = target_piece.members.size
        index, mask = np.zeros(size, np.int32), np.zeros(size, bool)
        for t_slot, s_slot in slot_pairs:
            index[t_slot], mask[t_slot] = s_slot, True
        source_hparams = {k: v.copy() for k, v in source_piece.hparams.items()}
        trainer = slices.groups[target_piece.group].trainer
        copied = trainer.select(target_piece.state, source_piece.state, index, mask)
        # The target keeps its own seed, so its own minibatch order and keys from the
        # copied step on, as in PBT (Jaderberg et al. 2017); `result.seed` says so.
        target_piece.state = copied._replace(seed=target_piece.state.seed)
        for name, values in target_piece.hparams.items():
            values[mask] = source_hparams[name][index[mask]]


def set_hparams(new: Sequence[tuple[int, dict[str, Any]]], where: Where,
                members: MemberTable) -> None:
    """Gives members new dynamic hyperparameter values, on the host and the devices."""
    touched = {}
    for member, values in new:
        piece, slot = where[member]
        for name, value in values.items():
            members.hparams[name][member] = value
            piece.hparams[name][slot] = value
        touched[id(piece)] = piece
    for piece in touched.values():
        sharding = piece.state.seed.sharding
        hparams = {k: place(v, sharding) for k, v in piece.hparams.items()}
        piece.state = piece.state._replace(hparams=hparams)
