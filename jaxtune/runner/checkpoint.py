"""Checkpoints of a running sweep: written atomically at record points, resumed exactly.

One file, `<checkpoint_dir>/sweep.npz`, holds everything a round depends on: every
slice's population state, the finished members' kept parameters and model state, the
records, the member table, the strategy's and the sampler's state. It is written to a
temporary file, fsynced and renamed over the previous one, so a crash at any moment
leaves either the old checkpoint or the new one, never a torn file. A fingerprint of
the sweep's arguments (`jaxtune.fingerprint`) is stored with it; a checkpoint of a
different sweep is refused, never mixed in, and so is a damaged one (truncated,
altered, missing an entry): the error names the file, to be deleted or left for another
`checkpoint_dir`. One whose fingerprint another jaxtune made (its `fingerprint_format`)
cannot be compared, and is refused saying so.

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
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jaxtune import fingerprint as fingerprints
from jaxtune._io import exclusive, write_atomically
from jaxtune.distributed import any_process, is_main_process, sync

_FILE = "sweep.npz"
_LOCK = "sweep.lock"
_FORMAT = "jaxtune.checkpoint"
_VERSION = 2  # 2: finished members' model state beside their params
_READABLE_VERSIONS = (1, 2)  # 1 resumes sweeps without model state
_META = ("fingerprint", "round", "n_trials", "asked", "trained_member_steps", "groups", "tables",
         "slices", "params_members", "strategy", "stream")  # what a restore reads of `__meta__`


class Checkpointer:
    """Writes a sweep's state to `directory` and reads it back, refusing other sweeps'.

    The state is the runner's `state_dict()`: arrays, written as the archive's entries,
    and JSON-able values, written together as its `__meta__` entry with the sweep's
    `fingerprint`. Used as a context manager, it holds `directory` for the sweep's life
    (see the module docs): `with checkpointer: runner.run()`.
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

    def save(self, state: Mapping[str, Any]) -> None:
        """Writes `state` (every process passes the same) atomically; process 0 writes."""
        arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
        meta = {"format": _FORMAT, "version": _VERSION, "fingerprint": self.fingerprint,
                "fingerprint_format": fingerprints.FORMAT,
                **{k: v for k, v in state.items() if not isinstance(v, np.ndarray)}}
        arrays["__meta__"] = np.asarray(json.dumps(meta))
        if is_main_process():  # every process gathered the same arrays; one writes them
            write_atomically(self.path, lambda file: np.savez(file, **arrays))
        sync("jaxtune checkpoint written")

    def restore(self) -> Mapping[str, Any] | None:
        """The state saved, or None when there is no checkpoint yet.

        Every entry of the file, by name (its arrays and its `__meta__` values, with the
        file's `path` and format `version`); looking up an entry it lacks raises the
        ValueError of a damaged checkpoint, naming the file.

        Raises:
          ValueError: the checkpoint of another sweep (the differing arguments named), or
            a damaged one.
        """
        if not os.path.exists(self.path):
            return None
        arrays, meta = self._read()
        self._check_fingerprint_format(meta.get("fingerprint_format", 1))
        differing = sorted(k for k in set(meta["fingerprint"]) | set(self.fingerprint)
                           if meta["fingerprint"].get(k) != self.fingerprint.get(k))
        if differing:
            shown = "; ".join(f"{k}: checkpoint {_short(meta['fingerprint'].get(k))}, now "
                              f"{_short(self.fingerprint.get(k))}" for k in differing[:4])
            raise ValueError(
                f"`checkpoint_dir` {self.directory!r} holds the checkpoint of a different sweep "
                f"({shown}). Resume with the same arguments, or pass a new `checkpoint_dir`."
            )
        return _Arrays({**arrays, **meta, "path": self.path}, self._damaged)

    def _check_fingerprint_format(self, stored: Any) -> None:
        """Refuses a checkpoint whose fingerprint another jaxtune made: it cannot be compared."""
        if stored == fingerprints.FORMAT:
            return
        older = not isinstance(stored, int) or stored < fingerprints.FORMAT
        raise ValueError(_MSG_FINGERPRINT_FORMAT.format(
            directory=self.directory, path=self.path, stored=stored, now=fingerprints.FORMAT,
            which="an older" if older else "a newer",
            fix="the jaxtune version that started it" if older else "that newer jaxtune"))

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


_MSG_FINGERPRINT_FORMAT = """\
`checkpoint_dir` {directory!r} holds a checkpoint written by {which} jaxtune, which \
identified a sweep's arguments another way (fingerprint format {stored}, this version \
{now}): whether it is this same sweep cannot be told. Resume it with {fix}, or delete \
{path} (or pass a new `checkpoint_dir`) to start this sweep afresh."""


class _Arrays(dict):
    """A checkpoint's entries by name; a missing one is a damaged checkpoint, named as such."""

    def __init__(self, arrays: Mapping[str, Any], damaged: Callable[[str], ValueError]):
        super().__init__(arrays)
        self.damaged = damaged

    def __missing__(self, key: str) -> np.ndarray:
        raise self.damaged(f"it lacks the array {key!r}")


class Prefixed(Mapping):
    """The entries of `state` whose names start with `prefix`, by the rest of their name."""

    def __init__(self, state: Mapping[str, Any], prefix: str):
        self._state, self._prefix = state, prefix

    def __getitem__(self, key: str) -> Any:
        return self._state[self._prefix + key]

    def __iter__(self):
        return (k[len(self._prefix):] for k in self._state if k.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _short(value: Any, limit: int = 300) -> str:
    """`repr(value)`, cut to `limit` characters (a fingerprint of many leaves is long)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."
