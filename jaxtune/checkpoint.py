"""Checkpoints of a running sweep: written atomically at record points, resumed exactly.

One file, `<checkpoint_dir>/sweep.npz`, holds everything a round depends on: every
slice's population state, the finished members' kept parameters and model state, the
records, the member table, the strategy's and the sampler's state. It is written to a
temporary file, fsynced and renamed over the previous one, so a crash at any moment
leaves either the old checkpoint or the new one, never a torn file. A fingerprint of
the sweep's arguments is stored with it; a checkpoint of a different sweep is refused,
never mixed in, and so is a damaged one (truncated, altered, missing an entry): the
error names the file, to be deleted or left for another `checkpoint_dir`.

Why not orbax-checkpoint: measured with `bench/checkpoint_io.py` (see bench/README.md),
a single-process sweep's state is a few host arrays that one `np.savez` writes
faster than orbax's per-array directories, and orbax costs seconds of import time. A
multi-host sweep is where orbax earns its place.

One sweep at a time: while a sweep runs, `<checkpoint_dir>/sweep.lock` (JSON: the
owner's `pid` and `host`) holds the directory, and a second sweep on it is refused
rather than overwriting the first one's checkpoints. The lock goes when the sweep ends,
normally, by an exception or by Ctrl-C; one left by a process killed outright is taken
over, with a warning, once no process of that pid runs on this host. Over many
processes (`jaxtune.distributed`) process 0, which writes the checkpoints, holds it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxtune._io import exclusive, write_atomically
from jaxtune.distributed import any_process, gather, is_main_process, sync
from jaxtune.engine import PopulationState

if TYPE_CHECKING:
    from jaxtune.runner import Runner

_FILE = "sweep.npz"
_LOCK = "sweep.lock"
_KEPT = ("params", "model_state")  # what the runner keeps of each finished member
_FORMAT = "jaxtune.checkpoint"
_VERSION = 2  # 2: finished members' model state beside their params
_READABLE_VERSIONS = (1, 2)  # 1 resumes sweeps without model state
# An array up to this size is fingerprinted whole, a larger one by rows spread evenly over
# its leading axis adding up to about this size. blake2b hashes 0.4-1 GB/s on one core
# (0.37 GB/s measured on a shared two-core machine): 64 MiB cost at most ~0.2 s, once per
# sweep. xxhash's xxh3_128 measured 7.3 GB/s there, but only matters for whole hashes of
# gigabytes, not worth a dependency while large arrays are sampled.
_HASHED_BYTES = 64 * 2**20
_META = ("fingerprint", "round", "n_trials", "asked", "trained_member_steps", "groups", "tables",
         "slices", "params_members", "strategy", "stream")  # what restore reads of `__meta__`


class Checkpointer:
    """Saves and restores a `Runner` in `directory`, refusing other sweeps' checkpoints.

    Used as a context manager, it holds `directory` for the sweep's life (see the
    module docs): `with checkpointer: runner.run()`.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: Mapping[str, Any]):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, _FILE)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        os.makedirs(self.directory, exist_ok=True)
        self._held = contextlib.ExitStack()

    def __enter__(self) -> Checkpointer:
        refused = None
        if is_main_process():  # the one process that writes checkpoints holds the lock
            try:
                self._held.enter_context(exclusive(
                    os.path.join(self.directory, _LOCK), f"`checkpoint_dir` {self.directory!r}",
                    "pass another `checkpoint_dir`"))
            except ValueError as error:
                refused = error
        if any_process(refused is not None):  # every process stops, not only process 0
            raise refused or ValueError(
                f"`checkpoint_dir` {self.directory!r} is in use by another sweep (process 0 "
                "says by which); pass another `checkpoint_dir`.")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._held.close()

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
        arrays, meta = self._read()
        differing = sorted(k for k in set(meta["fingerprint"]) | set(self.fingerprint)
                           if meta["fingerprint"].get(k) != self.fingerprint.get(k))
        if differing:
            shown = "; ".join(f"{k}: checkpoint {_short(meta['fingerprint'].get(k))}, now "
                              f"{_short(self.fingerprint.get(k))}" for k in differing[:4])
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
        runner.recorder.load_arrays(_Arrays(
            {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)},
            self._damaged, prefix))
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
                if meta["version"] < 2 and any(key not in arrays for key in keys):
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

    def _read(self) -> tuple[_Arrays, dict[str, Any]]:
        """The checkpoint's arrays and metadata, refused whole if any part is damaged."""
        with open(self.path, "rb") as file:  # an unreadable file: the OSError names it
            magic = file.read(4)
            file.seek(0)
            if magic != b"PK\x03\x04":
                raise self._damaged("it is empty" if not magic else "it is not an .npz archive")
            try:
                with np.load(file, allow_pickle=False) as data:
                    arrays = {key: data[key] for key in data.files}
            except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
                    zlib.error) as error:
                reason = ("it holds pickled (object) data, which no checkpoint does"
                          if "pickle" in str(error) else f"{type(error).__name__}: {error}")
                raise self._damaged(reason) from error
        if "__meta__" not in arrays:
            raise self._damaged("it has no `__meta__` entry")
        try:
            meta = json.loads(str(arrays.pop("__meta__")[()]))
        except ValueError as error:
            raise self._damaged(f"its `__meta__` is not JSON: {error}") from error
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT \
                or meta.get("version") not in _READABLE_VERSIONS:
            versions = " or ".join(map(str, _READABLE_VERSIONS))
            raise ValueError(f"{self.path} is not a jaxtune sweep checkpoint of version "
                             f"{versions}; delete it or pass another `checkpoint_dir`.")
        missing = [key for key in _META if key not in meta]
        if missing:
            raise self._damaged(f"its `__meta__` lacks {', '.join(map(repr, missing))}")
        if not isinstance(meta["fingerprint"], dict):
            raise self._damaged("its `__meta__` fingerprint is not a JSON object")
        return _Arrays(arrays, self._damaged), meta

    def _damaged(self, reason: str) -> ValueError:
        return ValueError(f"the checkpoint {self.path} is damaged ({reason}); delete it to start "
                          "the sweep afresh, or pass another `checkpoint_dir`.")


class _Arrays(dict):
    """A checkpoint's arrays by name; a missing one is a damaged checkpoint, named as such."""

    def __init__(self, arrays: Mapping[str, np.ndarray],
                 damaged: Callable[[str], ValueError], prefix: str = ""):
        super().__init__(arrays)
        self.damaged, self.prefix = damaged, prefix

    def __missing__(self, key: str) -> np.ndarray:
        raise self.damaged(f"it lacks the array {self.prefix + key!r}")


def _short(value: Any, limit: int = 300) -> str:
    """`repr(value)`, cut to `limit` characters (a fingerprint of many leaves is long)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def fingerprint_values(tree: Any) -> list | None:
    """Each leaf of `tree` as [shape, dtype, hash of its values], for a sweep's fingerprint.

    The hash covers every byte of an array up to 64 MiB; of a larger one, rows spread
    evenly over its leading axis (the first and last included) adding up to 64 MiB.
    An array spread over several processes, and a leaf that is not numeric (a function
    inside an Equinox module), are fingerprinted by their shape and type only.
    """
    return None if tree is None else [_leaf_fingerprint(x) for x in jax.tree_util.tree_leaves(tree)]


def fingerprint_function(fn: Any) -> list:
    """`fn`'s qualified name, and the values of the arrays it refers to directly.

    Those are the arrays in its closure, in the module globals its code names, and
    among a `functools.partial`'s arguments: where a `batch_fn` or an `init_fn` keeps
    its data. Arrays reached only through other objects are not seen.
    """
    captured: list[Any] = []
    while isinstance(fn, functools.partial):
        captured += [fn.args, fn.keywords]
        fn = fn.func
    code = getattr(fn, "__code__", None)
    if code is not None:
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                captured.append(cell.cell_contents)
            except ValueError:  # a cell not yet filled
                pass
        names = getattr(fn, "__globals__", {})
        captured += [names[name] for name in code.co_names if name in names]
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    return [name, *(fingerprint_values(value) for value in captured if _is_arrays(value))]


def _is_arrays(value: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(value)
    return bool(leaves) and all(isinstance(leaf, np.ndarray | jax.Array) for leaf in leaves)


def _leaf_fingerprint(x: Any) -> list:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    shape = list(np.shape(x))
    dtype = str(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return [shape, dtype]  # its values are on other processes too
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
        if x.dtype == object:
            return [shape, dtype]
    nbytes = x.size * x.dtype.itemsize
    if nbytes > _HASHED_BYTES and x.ndim:
        n = x.shape[0]
        count = max(1, min(n, _HASHED_BYTES * n // nbytes))
        x = x[np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))]
    values = np.ascontiguousarray(np.asarray(x)).reshape(-1).view(np.uint8)
    return [shape, dtype, hashlib.blake2b(values, digest_size=16).hexdigest()]


def _json_static(static: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in static.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return json.loads(json.dumps(out))
