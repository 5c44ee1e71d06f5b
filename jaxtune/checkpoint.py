"""Checkpoints of a running sweep: written atomically at record points, resumed exactly.

One file, `<checkpoint_dir>/sweep.npz`, holds everything a round depends on: every
slice's population state, the finished members' kept parameters and model state, the
records, the member table, the strategy's and the sampler's state. It is written to a
temporary file, fsynced and renamed over the previous one, so a crash at any moment
leaves either the old checkpoint or the new one, never a torn file. A fingerprint of
the sweep's arguments is stored with it; a checkpoint of a different sweep is refused,
never mixed in.

Why not orbax-checkpoint: measured with `bench/checkpoint_io.py` (see bench/README.md),
a single-process sweep's state is a few host arrays that one `np.savez` writes
faster than orbax's per-array directories, and orbax costs seconds of import time. A
multi-host sweep is where orbax earns its place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxtune._io import write_atomically
from jaxtune.distributed import gather, is_main_process, sync
from jaxtune.population import PopulationState

if TYPE_CHECKING:
    from jaxtune.runner import Runner

_FILE = "sweep.npz"
_KEPT = ("params", "model_state")  # what the runner keeps of each finished member
_FORMAT = "jaxtune.checkpoint"
_VERSION = 2  # 2: finished members' model state beside their params
_READABLE_VERSIONS = (1, 2)  # 1 resumes sweeps without model state


class Checkpointer:
    """Saves and restores a `Runner` in `directory`, refusing other sweeps' checkpoints."""

    def __init__(self, directory: str | os.PathLike, fingerprint: Mapping[str, Any]):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, _FILE)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        os.makedirs(self.directory, exist_ok=True)

    def save(self, runner: Runner) -> None:
        arrays: dict[str, np.ndarray] = {}
        slices = []
        for k, piece in enumerate(runner.slices):
            leaves = jax.tree_util.tree_leaves(gather(piece.state))
            for i, leaf in enumerate(leaves):
                arrays[f"slice:{k}:{i}"] = np.asarray(leaf)
            for name, values in piece.hparams.items():
                arrays[f"slice_hparam:{k}:{name}"] = values
            slices.append({"group": piece.group, "members": piece.members.tolist(),
                           "leaves": len(leaves)})
        for name, values in runner.recorder.arrays().items():
            arrays[f"record:{name}"] = values
        for name in ("member_trial", "member_seed", "member_group", "status", "member_step",
                     "diverged_step"):
            arrays[name] = getattr(runner, name)
        for name, values in runner.member_hparams.items():
            arrays[f"hparam:{name}"] = values
        for name in _KEPT:
            for member, tree in getattr(runner, name).items():
                for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
                    arrays[f"{name}:{member}:{i}"] = np.asarray(leaf)
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": self.fingerprint,
            "round": runner.round,
            "n_trials": runner.n_trials,
            "asked": runner.asked,
            "trained_member_steps": runner.trained_member_steps,
            "groups": [_json_static(group.static) for group in runner.groups],
            "tables": [table.to_dict() for table in runner.tables],
            "slices": slices,
            "params_members": sorted(runner.params),
            "strategy": runner.strategy.state_dict(),
            "stream": None if runner.stream is None else runner.stream.state_dict(),
        }
        arrays["__meta__"] = np.asarray(json.dumps(meta))
        if is_main_process():  # every process gathered the same arrays; one writes them
            write_atomically(self.path, lambda file: np.savez(file, **arrays))
        sync("jaxtune checkpoint written")

    def restore(self, runner: Runner) -> bool:
        """Loads the checkpoint into `runner`; False when there is none yet."""
        if not os.path.exists(self.path):
            return False
        with np.load(self.path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("__meta__")[()]))
        if meta.get("format") != _FORMAT or meta.get("version") not in _READABLE_VERSIONS:
            versions = " or ".join(map(str, _READABLE_VERSIONS))
            raise ValueError(f"{self.path} is not a jaxtune sweep checkpoint of version "
                             f"{versions}; remove it or choose another `checkpoint_dir`.")
        differing = sorted(k for k in set(meta["fingerprint"]) | set(self.fingerprint)
                           if meta["fingerprint"].get(k) != self.fingerprint.get(k))
        if differing:
            shown = "; ".join(f"{k}: checkpoint {meta['fingerprint'].get(k)!r}, now "
                              f"{self.fingerprint.get(k)!r}" for k in differing[:4])
            raise ValueError(
                f"`checkpoint_dir` {self.directory!r} holds the checkpoint of a different sweep "
                f"({shown}). Resume with the same arguments, or pass a new `checkpoint_dir`."
            )
        for static in meta["groups"]:
            runner.group_of(static)
        for columns in meta["tables"]:
            runner.tables.append(runner.space.table(columns))
        runner.n_trials = meta["n_trials"]
        runner.asked = meta["asked"]
        runner.round = meta["round"]
        runner.trained_member_steps = meta["trained_member_steps"]
        for name in ("member_trial", "member_seed", "member_group", "status", "member_step",
                     "diverged_step"):
            setattr(runner, name, arrays[name])
        runner.member_hparams = {name: arrays[f"hparam:{name}"] for name in runner.member_hparams}
        prefix = "record:"
        runner.recorder.load_arrays({k[len(prefix):]: v for k, v in arrays.items()
                                     if k.startswith(prefix)})
        from jaxtune.runner import Slice

        runner.slices = []
        for k, entry in enumerate(meta["slices"]):
            group = runner.groups[entry["group"]]
            members = np.asarray(entry["members"], np.int64)
            hparams = {name: arrays[f"slice_hparam:{k}:{name}"] for name in runner.member_hparams}
            abstract = group.trainer.abstract_state(hparams, members.size)
            treedef = jax.tree_util.tree_structure(abstract)
            leaves = [arrays[f"slice:{k}:{i}"] for i in range(entry["leaves"])]
            state = group.trainer.place(jax.tree_util.tree_unflatten(treedef, leaves))
            runner.slices.append(Slice(entry["group"], PopulationState(*state), members, hparams))
        for member in meta["params_members"]:
            group = runner.groups[int(runner.member_group[member])]
            hparams = {name: values[member:member + 1]
                       for name, values in runner.member_hparams.items()}
            resolved = group.trainer.resolve(hparams)
            for name in _KEPT:
                treedef = jax.tree_util.tree_structure(getattr(resolved, name))
                keys = [f"{name}:{member}:{i}" for i in range(treedef.num_leaves)]
                if any(key not in arrays for key in keys):
                    raise ValueError(
                        f"{self.path} lacks the `{name}` of finished member {member} "
                        "(checkpoints before version 2 kept no model state); remove it or "
                        "choose another `checkpoint_dir`.")
                getattr(runner, name)[member] = jax.tree_util.tree_unflatten(
                    treedef, [arrays[key] for key in keys])
        runner.strategy.load_state_dict(meta["strategy"])
        if meta["stream"] is not None:
            from jaxtune.space import ConfigStream

            runner.stream = ConfigStream.from_state(runner.space, meta["stream"])
        return True


def _json_static(static: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in static.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return json.loads(json.dumps(out))
