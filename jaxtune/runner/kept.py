"""The finished members' parameters and model state, as `keep_params` asks.

`keep_params=True` keeps every member's; "best" or an int k keeps the members of the best
k configurations only, ranked as trials end by the result's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxtune.devices import kept_configurations
from jaxtune.distributed import gather
from jaxtune.results import final_values, trial_stats
from jaxtune.runner.members import DIVERGED, RESULT_STATUS, MemberTable
from jaxtune.runner.recorder import Recorder
from jaxtune.runner.slices import Groups, Slice

_KEPT = ("params", "model_state")  # what is kept of each finished member


class KeptTrees:
    """Finished members' parameters and model state on the host, by member id."""

    def __init__(self, keep_params: bool | int | str, members: MemberTable, groups: Groups):
        self.enabled = bool(keep_params)
        # keep_params="best" or k: the members of the best k configurations only.
        self.best = kept_configurations(keep_params)
        self.members = members
        self.groups = groups
        self.params: dict[int, Any] = {}  # member -> final parameters (host)
        self.model_state: dict[int, Any] = {}  # member -> final model state (host)

    def keep(self, piece: Slice, slots: np.ndarray, recorder: Recorder, metric: str,
             mode: str) -> None:
        """Keeps the trees of the members in `slots` of `piece`, which have just ended."""
        if not self.enabled or slots.size == 0:
            return
        kept = gather((piece.state.params, piece.state.model_state))
        for slot, member in zip(slots, piece.members[slots]):
            self.params[int(member)], self.model_state[int(member)] = (
                jax.tree_util.tree_map(lambda a, s=slot: a[s].copy(), kept))
        if self.best is not None:
            self._drop_outranked(recorder, metric, mode)

    def _drop_outranked(self, recorder: Recorder, metric: str, mode: str) -> None:
        """Forgets the kept trees of every ended trial outside the best `best`.

        Only trials whose every member has ended are ranked, by the result's rules: their
        final values never change again, so a trial outranked now is outranked in the
        result too, and the trees kept at the end are exactly the result's top k. The
        finished members of trials still training are kept until their trial ends.
        """
        table = self.members
        trials, inverse = np.unique(table.trial, return_inverse=True)
        still_training = np.zeros(trials.size, bool)
        np.logical_or.at(still_training, inverse, table.pending())
        members = np.flatnonzero(~still_training[inverse])
        trial = table.trial[members]
        if np.unique(trial).size <= self.best:
            return
        steps_trained = table.step[members]
        diverged = table.status[members] == DIVERGED
        final = final_values(recorder.curve(metric)[members], recorder.record_steps,
                             steps_trained, diverged)
        stats = trial_stats(trial, final, RESULT_STATUS[table.status[members]], diverged,
                            steps_trained, mode)
        outranked = stats.trials[stats.order[self.best:]]
        for member in members[np.isin(trial, outranked)]:
            self.params.pop(int(member), None)
            self.model_state.pop(int(member), None)

    def result_fields(self) -> dict[str, Any]:
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
        """Every member's kept tree as one pytree [N, ...], or None.

        None without `keep_params`, when some member has not finished, or when static
        groups have trees of different structure or shape (a swept layer width).
        """
        n = self.members.size
        if not self.enabled or len(kept) != n:
            return None
        trees = [kept[m] for m in range(n)]
        structures = {jax.tree_util.tree_structure(t) for t in trees}
        shapes = {tuple(np.shape(a) for a in jax.tree_util.tree_leaves(t)) for t in trees}
        if len(structures) != 1 or len(shapes) != 1:
            return None
        return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *trees)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"params_members": sorted(self.params)}
        for name in _KEPT:
            for member, tree in getattr(self, name).items():
                for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
                    state[f"{name}:{member}:{i}"] = np.asarray(leaf)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what `state_dict` returned; the trees' structure comes from the trainers.

        A checkpoint before version 2 kept no model state: resuming one with finished
        members is refused, naming the file's `path` and the member.
        """
        self.params, self.model_state = {}, {}
        for member in state["params_members"]:
            group = self.groups[int(self.members.group[member])]
            hparams = {name: values[member:member + 1]
                       for name, values in self.members.hparams.items()}
            resolved = group.trainer.resolve(hparams)
            for name in _KEPT:
                treedef = jax.tree_util.tree_structure(getattr(resolved, name))
                keys = [f"{name}:{member}:{i}" for i in range(treedef.num_leaves)]
                if state["version"] < 2 and any(key not in state for key in keys):
                    raise ValueError(
                        f"{state['path']} lacks the `{name}` of finished member {member} "
                        "(checkpoints before version 2 kept no model state); remove it or "
                        "choose another `checkpoint_dir`.")
                getattr(self, name)[member] = jax.tree_util.tree_unflatten(
                    treedef, [state[key] for key in keys])
