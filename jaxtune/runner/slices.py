"""Slots on the devices: which member trains in which slot of which compiled population.

The population lives in *slices*: populations of a fixed, bucketed size (the device count
times a power of two, at most `members_per_slice`), each trained by one compiled program
of its static group. At most `members_in_flight` members are on the devices at once; the
others wait, so peak memory follows the slices in flight, not the population.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from jaxtune.distributed import gather
from jaxtune.engine import PopulationState, Trainer
from jaxtune.runner.members import WAITING, MemberTable


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


class Groups:
    """The static groups met so far, in order; each is built once, on first sight."""

    def __init__(self, make_trainer: Callable[[Mapping[str, Any]], Trainer]):
        self._make_trainer = make_trainer
        self._groups: list[Group] = []
        self._index: dict[tuple, int] = {}

    def of(self, static: Mapping[str, Any]) -> int:
        """The index of the group of `static` values, built if new."""
        key = tuple(sorted((k, repr(v)) for k, v in static.items()))
        if key not in self._index:
            self._index[key] = len(self._groups)
            self._groups.append(Group(dict(static), self._make_trainer(static)))
        return self._index[key]

    def __getitem__(self, index: int) -> Group:
        return self._groups[index]

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self):
        return iter(self._groups)

    def state_dict(self) -> dict[str, Any]:
        return {"groups": [_json_static(group.static) for group in self._groups]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for static in state["groups"]:
            self.of(static)


class Slices:
    """The slices in flight: filled from the waiting members, repacked as members end."""

    def __init__(self, groups: Groups, members: MemberTable, devices: int,
                 members_per_slice: int, members_in_flight: int):
        self.groups = groups
        self.members = members
        self.devices = devices
        self.members_per_slice = members_per_slice
        self.members_in_flight = members_in_flight
        self.pieces: list[Slice] = []
        # Told `(template, size, members)` before a repack builds a slice of `size` slots
        # from the slices of `template`'s group (the runner compiles its programs ahead).
        self.on_repack: Callable[[Slice, int, np.ndarray], None] | None = None

    def __iter__(self):
        return iter(self.pieces)

    def __bool__(self) -> bool:
        return bool(self.pieces)

    def bucket(self, count: int) -> int:
        """The slice size for `count` members: devices x 2^k, at most `members_per_slice`."""
        size = self.devices
        while size < count and size < self.members_per_slice:
            size *= 2
        return min(size, self.members_per_slice)

    def fitted(self, count: int) -> int:
        """The repacked slice size for `count` members: devices x 2^k or devices x 3 x 2^k,
        at most `members_per_slice`.

        Finer than `bucket`: a shrinking population (successive halving keeps a third)
        would otherwise train up to half its slots empty until its end; 9 survivors take
        12 slots, not 16, and 3 take 3, not 4. A repack compiles a new shape anyway.
        """
        size = self.bucket(count)
        three_quarters = size // 4 * 3
        if three_quarters >= count and three_quarters % self.devices == 0:
            return three_quarters
        return size

    def locate(self) -> dict[int, tuple[Slice, int]]:
        """Every member on the devices -> (its slice, its slot)."""
        return {int(m): (piece, slot) for piece in self.pieces
                for slot, m in enumerate(piece.members) if m >= 0}

    def drop_empty(self) -> None:
        self.pieces = [piece for piece in self.pieces if np.any(piece.members >= 0)]

    def _initial_state(self, group: Group, members: np.ndarray, size: int
                       ) -> tuple[PopulationState, dict[str, np.ndarray]]:
        padded = np.concatenate([members, np.repeat(members[:1], size - members.size)])
        hparams = {k: v[padded] for k, v in self.members.hparams.items()}
        return group.trainer.init(hparams, self.members.seed[padded]), hparams

    def fill(self) -> np.ndarray:
        """Waiting members enter free slots of their group's slices, then new slices.

        Returns the members that entered (the caller starts them).
        """
        table = self.members
        waiting = np.flatnonzero(table.status == WAITING)
        taken = np.zeros(table.size, bool)
        for piece in self.pieces if waiting.size else ():
            free = np.flatnonzero(piece.members < 0)
            candidates = waiting[(table.group[waiting] == piece.group) & ~taken[waiting]]
            if free.size == 0 or candidates.size == 0:
                continue
            entering = candidates[:free.size]
            slots = free[:entering.size]
            trainer = self.groups[piece.group].trainer
            size = piece.members.size
            fresh, fresh_hparams = self._initial_state(self.groups[piece.group], entering, size)
            index, mask = np.zeros(size, np.int32), np.zeros(size, bool)
            index[slots] = np.arange(entering.size)
            mask[slots] = True
            piece.state = trainer.select(piece.state, fresh, index, mask)
            for name, values in piece.hparams.items():
                values[slots] = fresh_hparams[name][:entering.size]
            piece.members[slots] = entering
            taken[entering] = True
        in_flight = sum(piece.members.size for piece in self.pieces)
        while waiting.size:
            left = waiting[~taken[waiting]]
            if left.size == 0:
                break
            group = table.group[left[0]]
            candidates = left[table.group[left] == group]
            size = self.bucket(candidates.size)
            if self.pieces and in_flight + size > self.members_in_flight:
                break
            entering = candidates[:size]
            state, hparams = self._initial_state(self.groups[group], entering, size)
            members = np.full(size, -1, np.int64)
            members[:entering.size] = entering
            self.pieces.append(Slice(int(group), state, members, hparams))
            taken[entering] = True
            in_flight += size
        return np.flatnonzero(taken)

    def repack(self) -> None:
        """Moves each group's running members into fewer or smaller slices.

        Only when that at least halves the group's slots (a new slice shape costs a
        compile; a few diverged members in a plain sweep are not worth one), and not
        while members of the group wait: they fill the free slots instead.
        """
        waiting_groups = set(self.members.group[self.members.status == WAITING].tolist())
        kept = []
        for group in range(len(self.groups)):
            pieces = [piece for piece in self.pieces if piece.group == group]
            if not pieces:
                continue
            live = sum(int(np.sum(piece.members >= 0)) for piece in pieces)
            layout = [self.members_per_slice] * (live // self.members_per_slice)
            if live % self.members_per_slice:
                layout.append(self.fitted(live % self.members_per_slice))
            # Worth a new shape (a compile) only when it saves at least half the work.
            if group in waiting_groups or 2 * sum(layout) > sum(p.members.size for p in pieces):
                kept.extend(pieces)
                continue
            kept.extend(self._repacked(group, pieces, layout))
        self.pieces = kept

    def _repacked(self, group: int, pieces: list[Slice], layout: list[int]) -> list[Slice]:
        """The live members of `pieces` in new slices of the sizes `layout`."""
        trainer = self.groups[group].trainer
        everything = trainer.concatenate([piece.state for piece in pieces])
        offsets = np.cumsum([0] + [piece.members.size for piece in pieces])
        positions = np.concatenate([offsets[i] + np.flatnonzero(piece.members >= 0)
                                    for i, piece in enumerate(pieces)])
        members = np.concatenate([piece.members[piece.members >= 0] for piece in pieces])
        all_hparams = {k: np.concatenate([piece.hparams[k] for piece in pieces])
                       for k in pieces[0].hparams}
        if self.on_repack is not None:  # the new shapes' programs, while these move
            begin = 0
            for size in layout:
                self.on_repack(pieces[0], size, members[begin:begin + size])
                begin += size
        out, begin = [], 0
        for size in layout:
            chosen = positions[begin:begin + size]
            index = np.concatenate([chosen, np.repeat(chosen[:1], size - chosen.size)])
            slot_members = np.full(size, -1, np.int64)
            slot_members[:chosen.size] = members[begin:begin + size]
            out.append(Slice(group, trainer.take(everything, index), slot_members,
                             {k: v[index] for k, v in all_hparams.items()}))
            begin += size
        return out

    def state_dict(self) -> dict[str, Any]:
        """Every slice's population state (gathered to the host), slots and hyperparameters."""
        state: dict[str, Any] = dict(self.groups.state_dict())
        entries = []
        for k, piece in enumerate(self.pieces):
            leaves = jax.tree_util.tree_leaves(gather(piece.state))
            for i, leaf in enumerate(leaves):
                state[f"slice:{k}:{i}"] = np.asarray(leaf)
            for name, values in piece.hparams.items():
                state[f"slice_hparam:{k}:{name}"] = values
            entries.append({"group": piece.group, "members": piece.members.tolist(),
                            "leaves": len(leaves)})
        state["slices"] = entries
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what `state_dict` returned, placing every slice on the devices."""
        self.groups.load_state_dict(state)
        self.pieces = []
        for k, entry in enumerate(state["slices"]):
            group = self.groups[entry["group"]]
            members = np.asarray(entry["members"], np.int64)
            hparams = {name: state[f"slice_hparam:{k}:{name}"] for name in self.members.hparams}
            abstract = group.trainer.abstract_state(hparams, members.size)
            treedef = jax.tree_util.tree_structure(abstract)
            leaves = [state[f"slice:{k}:{i}"] for i in range(entry["leaves"])]
            placed = group.trainer.place(jax.tree_util.tree_unflatten(treedef, leaves))
            self.pieces.append(Slice(entry["group"], PopulationState(*placed), members, hparams))


def _json_static(static: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in static.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return json.loads(json.dumps(out))
