"""Many processes, one sweep: jaxtune under JAX's multi-controller runtime.

Every process runs the same program. After `jax.distributed.initialize()` the
member mesh spans every process's devices (`jax.devices()`), each process holds
only its own shards of the population, and what the host needs (losses, metrics,
the final parameters) is gathered at record points with
`jax.experimental.multihost_utils.process_allgather`. Everything the runner
decides is a function of those gathered values and of the root seed, so every
process decides the same thing and returns the same `SweepResult`; only process 0
prints, draws progress and writes files.

    import jaxtune as jt
    jt.distributed.initialize("host0:1234", num_processes=2, process_id=RANK)
    result = jt.sweep(...)            # the same call on every process

On SLURM, Open MPI or Cloud TPU, `initialize()` with no arguments reads the
environment, as `jax.distributed.initialize` does.

"The same program" is checked before the first collective: `sweep` exchanges a
digest of each of its arguments between the processes
(`check_same_on_every_process`), the user functions by their code, closures and
the globals they use (`fingerprint`, the digest of `jaxtune.fingerprint`, the one
checkpoints use), and refuses a mismatch naming what differs, instead of a mixed
result or a collective that aborts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxtune.fingerprint import digest as fingerprint
from jaxtune.fingerprint import qualified_name

__all__ = ["any_process", "check_same_on_every_process", "fingerprint", "gather",
           "initialize", "is_main_process", "sync"]

# Characters of each argument shown per process when processes disagree.
_SHOWN = 160


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, heartbeat_timeout_seconds: int = 60,
               **kwargs: Any) -> None:
    """Joins this process to a multi-process run (`jax.distributed.initialize`).

    On CPU it selects gloo for the collectives (JAX's CPU default has none across
    processes). Call it before any JAX computation, on every process, with the
    same coordinator. A process that dies makes the others fail after
    `heartbeat_timeout_seconds` instead of waiting forever.

    Args:
      coordinator_address: "host:port" of process 0 (None: from SLURM/MPI/TPU env).
      num_processes: how many processes take part (None: from the environment).
      process_id: this process's rank, 0 ... num_processes-1 (None: from the env).
      heartbeat_timeout_seconds: how long a silent process is waited for.
      **kwargs: passed on to `jax.distributed.initialize`.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_seconds, **kwargs)


def is_main_process() -> bool:
    """True on process 0, the one that prints, draws progress and writes files."""
    return jax.process_index() == 0


def gather(tree: Any) -> Any:
    """A pytree of (possibly multi-process) arrays as host NumPy arrays, on every process.

    One process alone: `np.asarray` of each leaf. Several: each leaf that is not
    fully addressable is all-gathered (a collective: every process must call this
    at the same point, as the runner does at record points).
    """
    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if leaf.is_fully_replicated:
                return np.asarray(leaf.addressable_data(0))
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(one, tree)


def sync(name: str) -> None:
    """Waits until every process reaches this point (nothing to do with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is True on any (e.g. one process got Ctrl-C)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([flag], np.int32))
    return bool(np.any(flags))


def place(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """`jax.device_put(tree, sharding)`, also when `sharding` spans other processes.

    JAX places host (NumPy) values on a multi-process sharding, each process
    putting its own shards; an array already on this process's devices is brought
    back to the host first. Every process must pass the same values.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def one(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype,
                                                                 jax.dtypes.prng_key):
            data = jax.device_put(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        if isinstance(leaf, jax.Array) and leaf.is_fully_addressable:
            leaf = np.asarray(leaf)
        return jax.device_put(leaf, sharding)

    return jax.tree_util.tree_map(one, tree)


def check_same_on_every_process(what: str, arguments: Mapping[str, Any]) -> None:
    """Raises ValueError on every process unless all give the same `arguments`.

    Call it on every process at the same point, before the first collective (it is
    one, over a few hundred bytes per argument). Each argument is compared by its
    `fingerprint`; the error names every argument that differs, with what each
    process has (a function's name and digest, a value, an array's shape). Nothing
    to do with one process.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    names = sorted(arguments)
    # The names first: processes running other versions of the caller are told so,
    # before arrays of different shapes meet in a collective.
    layout = _digest_row(json.dumps(names))
    layouts = multihost_utils.process_allgather(layout)
    if np.any(layouts != layouts[0]):
        raise ValueError(
            f"{what}: the processes run different versions of jaxtune (or of the program "
            f"calling it); install the same everywhere. This process's arguments: "
            f"{', '.join(names)}.")
    digest_of = {name: fingerprint(arguments[name]) for name in names}
    rows = np.stack([np.concatenate([_digest_row(digest_of[name]),
                                     _text_row(_shown(arguments[name], digest_of[name]))])
                     for name in names])
    gathered = multihost_utils.process_allgather(rows)  # [processes, arguments, ...]
    differ = []
    for k, name in enumerate(names):
        digests = gathered[:, k, :8]
        if np.all(digests == digests[0]):
            continue
        groups: dict[bytes, list[int]] = {}
        for process in range(gathered.shape[0]):
            groups.setdefault(digests[process].tobytes(), []).append(process)
        shown = "; ".join(
            f"process{'es' if len(ps) > 1 else ''} {', '.join(map(str, ps))}: "
            f"{_text(gathered[ps[0], k, 8:])}" for ps in groups.values())
        differ.append(f"`{name}` ({shown})")
    if differ:
        raise ValueError(
            f"{what} is not the same on every process: {'; '.join(differ)}. Every process "
            "must make the same call, with the same functions (their code, closures and the "
            "globals they use), space, settings and data; start every process from the same "
            "program and arguments.")


def _shown(value: Any, digest: str) -> str:
    """What an argument is, in a few words, for the error (its `digest` tells it apart)."""
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    if isinstance(value, np.ndarray | jax.Array):
        return f"array {value.dtype}{list(value.shape)}"
    if callable(value) and not isinstance(value, type):
        return f"{qualified_name(value)}, digest {digest}"
    return f"{type(value).__qualname__}, digest {digest}"


def _digest_row(text: str) -> np.ndarray:
    """A sha256 of `text` as 8 int32 (what a collective carries everywhere)."""
    return np.frombuffer(hashlib.sha256(text.encode()).digest(), np.int32).copy()


def _text_row(text: str) -> np.ndarray:
    data = text.encode()[:_SHOWN].ljust(_SHOWN, b"\x00")
    return np.frombuffer(data, np.uint8).astype(np.int32)


def _text(row: np.ndarray) -> str:
    data = bytes(row.astype(np.uint8)).rstrip(b"\x00")
    text = data.decode(errors="replace")
    return text + ("..." if len(data) == _SHOWN else "")
