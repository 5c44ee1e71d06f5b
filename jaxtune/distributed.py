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
the globals they use (`fingerprint`), and refuses a mismatch naming what
differs, instead of a mixed result or a collective that aborts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import sysconfig
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["any_process", "check_same_on_every_process", "fingerprint", "gather",
           "initialize", "is_main_process", "sync"]

# Bytes of an array hashed into a function's fingerprint: all of a small one (a table,
# a mask), the first and last half of this for a larger one (data it closes over).
_ARRAY_BYTES = 1 << 24
# How deep a fingerprint follows objects reached from a function (closures, globals,
# attributes): far enough for a loss calling helpers that close over constants.
_DEPTH = 6
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


def fingerprint(value: Any) -> str:
    """A digest of `value` that is the same in every process running the same program.

    Numbers, strings, containers and arrays by value (an array over 16 MiB by its
    first and last 8 MiB); a pytree by its leaves; a function by what it computes,
    as far as Python can tell: its bytecode and constants, its defaults, the values in its
    closure and the module globals its code names, following the functions among
    them (helpers, `functools.partial`, bound methods, `jax.jit` wrappers) and the
    attributes of callable objects (an Equinox or Flax module); numbers, strings,
    containers and arrays by value. Only named: where the code lives (file, line),
    modules, functions of installed libraries and the standard library (their
    version is the environment's), objects that are not callable (a logger holds
    per-process state). Two processes running different code of their own get
    different digests (16 hex digits).
    """
    digest = hashlib.sha256()
    _feed(digest, value, _DEPTH, set())
    return digest.hexdigest()[:16]


def _feed(digest: Any, value: Any, depth: int, seen: set[int]) -> None:
    """Writes a process-independent description of `value` into `digest`."""
    def put(*tokens: Any) -> None:
        for token in tokens:
            digest.update(str(token).encode() + b"\x00")

    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        put(type(value).__name__, repr(value))
        return
    if isinstance(value, types.ModuleType):
        put("module", value.__name__)
        return
    if isinstance(value, type):
        put("class", value.__module__, value.__qualname__)
        return
    if isinstance(value, np.ndarray | np.generic) or (
            isinstance(value, jax.Array) and value.is_fully_addressable):
        _feed_array(put, digest, value)
        return
    if isinstance(value, jax.Array):
        put("array", value.shape, value.dtype)  # spread over processes: its values are not here
        return
    if id(value) in seen or depth <= 0:
        put("seen", type(value).__qualname__)
        return
    seen.add(id(value))
    deeper = functools.partial(_feed, digest, depth=depth - 1, seen=seen)
    if isinstance(value, tuple | list):
        put(type(value).__name__, len(value))
        for item in value:
            deeper(item)
    elif isinstance(value, dict):
        put("dict", len(value))
        for key, item in value.items():
            deeper(key)
            deeper(item)
    elif isinstance(value, set | frozenset):  # its order differs between processes
        put("set", *sorted(fingerprint(item) for item in value))
    elif isinstance(value, types.CodeType):
        put("code", value.co_name, value.co_argcount, value.co_kwonlyargcount,
            value.co_flags, value.co_names, value.co_varnames, value.co_freevars)
        digest.update(value.co_code)
        for constant in value.co_consts:
            deeper(constant)
    elif isinstance(value, types.FunctionType):
        put("function", value.__module__, value.__qualname__)
        if _installed(value.__module__):
            return
        deeper(value.__code__)
        deeper(value.__defaults__)
        deeper(value.__kwdefaults__)
        for cell in value.__closure__ or ():
            try:
                deeper(cell.cell_contents)
            except ValueError:  # a cell not yet filled
                put("empty cell")
        for name in sorted(_global_names(value.__code__)):
            if name in value.__globals__:
                put("global", name)
                deeper(value.__globals__[name])
    elif isinstance(value, functools.partial):
        put("partial")
        deeper(value.func)
        deeper(value.args)
        deeper(value.keywords)
    elif isinstance(value, types.MethodType):
        put("method")
        deeper(value.__func__)
        deeper(value.__self__)
    elif hasattr(value, "__wrapped__"):  # jax.jit, functools.wraps
        put("wrapped")
        deeper(value.__wrapped__)
    elif isinstance(value, types.BuiltinFunctionType | types.BuiltinMethodType):
        put("builtin", getattr(value, "__module__", None), value.__qualname__)
    else:  # an object: its class; its leaves if a pytree; if callable, its code and state
        put("object", type(value).__module__, type(value).__qualname__)
        leaves = jax.tree_util.tree_leaves(value)
        if not (len(leaves) == 1 and leaves[0] is value):
            deeper(leaves)
        call = next((vars(c)["__call__"] for c in type(value).__mro__
                     if "__call__" in vars(c)), None)
        if isinstance(call, types.FunctionType):
            deeper(call)
            attributes = getattr(value, "__dict__", None)
            if isinstance(attributes, dict):
                deeper(attributes)


def _feed_array(put: Any, digest: Any, value: Any) -> None:
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    array = np.ascontiguousarray(np.asarray(value))
    put("array", array.shape, array.dtype)
    if array.dtype == object:
        return
    data = array.reshape(-1).view(np.uint8)
    if data.size > _ARRAY_BYTES:
        data = np.concatenate([data[:_ARRAY_BYTES // 2], data[-_ARRAY_BYTES // 2:]])
    digest.update(data.tobytes())


@functools.cache
def _installed(module: str | None) -> bool:
    """Whether `module` comes with Python or an installed package (not the user's code)."""
    file = getattr(sys.modules.get(module or ""), "__file__", None)
    if file is None:
        return module in sys.builtin_module_names
    paths = sysconfig.get_paths()
    return any(file.startswith(paths[key]) for key in ("stdlib", "platstdlib", "purelib",
                                                       "platlib"))


def _global_names(code: types.CodeType) -> set[str]:
    """The names a code object and the code nested in it look up (globals among them)."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


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
    rows = np.stack([np.concatenate([_digest_row(fingerprint(arguments[name])),
                                     _text_row(_shown(arguments[name]))]) for name in names])
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


def _shown(value: Any) -> str:
    """What an argument is, in a few words, for the error (its digest tells it apart)."""
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    if isinstance(value, np.ndarray | jax.Array):
        return f"array {value.dtype}{list(value.shape)}"
    if callable(value) and not isinstance(value, type):
        inner = getattr(value, "func", getattr(value, "__wrapped__", value))
        name = getattr(inner, "__qualname__", type(inner).__qualname__)
        return f"{getattr(inner, '__module__', '')}.{name}, digest {fingerprint(value)}"
    return f"{type(value).__qualname__}, digest {fingerprint(value)}"


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
