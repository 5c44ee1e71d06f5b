"""Fingerprints of a sweep's inputs: one way to tell whether two inputs are the same.

Two callers, one rule. A checkpoint stores the fingerprint of the sweep's arguments and
is resumed only by a sweep with the same (`jaxtune.runner.checkpoint`); the processes of
a multi-process sweep exchange digests of their arguments and refuse to run different
sweeps (`jaxtune.distributed.check_same_on_every_process`).

- An array, by its shape, dtype and a blake2b hash of its values: every byte of one up
  to 64 MiB; of a larger one, rows spread evenly over its leading axis (the first and
  the last included) adding up to about 64 MiB, and where one row alone is larger, the
  first and last rows of it, sampled in turn. blake2b hashed 0.37 GB/s on a shared
  two-core machine (0.4-1 GB/s on one core elsewhere): a large array costs at most
  ~0.2 s, once per sweep. Hashing every byte of gigabytes would cost seconds each
  (xxhash's xxh3_128, 7.3 GB/s there, would only matter then: not worth a dependency
  while large arrays are sampled). An array spread over several processes, and one of
  Python objects, by shape and dtype only.
- A function, by what it computes, as far as Python can tell: its bytecode and
  constants, its defaults, the values in its closure and the module globals its code
  names, following the functions among them (helpers, `functools.partial`, bound
  methods, `jax.jit` wrappers) and the attributes of callable objects (an Equinox or
  Flax module); numbers, strings, containers and arrays by value. Any change to what
  the code does changes it; its comments, docstring and line numbers do not (bytecode
  holds no comments or line numbers, and the docstring is left out), so fixing a typo
  in a comment keeps a checkpoint resumable. Bytecode is Python's own: another minor
  version of Python (3.11 -> 3.12) compiles the same source differently. Only named:
  modules, functions of installed packages and the standard library (their version is
  the environment's), objects that are neither callable nor pytrees (a logger holds
  per-process state).

The digests are the same in every process running the same program (sets, whose order
follows `PYTHONHASHSEED`, are digested in a fixed order).
"""

from __future__ import annotations

import functools
import hashlib
import sys
import sysconfig
import types
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

__all__ = ["FORMAT", "digest", "fingerprint_array", "fingerprint_function",
           "fingerprint_values", "qualified_name"]

# What a stored fingerprint was made by: 1, functions by name and the arrays they refer
# to directly, arrays over 64 MiB by rows; 2, functions by their code (this module).
FORMAT = 2
# Bytes of an array hashed: all of it up to this size, evenly spread rows adding up to it
# beyond (0.37 GB/s: at most ~0.2 s per array; see the module docs).
_HASHED_BYTES = 64 * 2**20
# How deep a function's digest follows objects reached from it (closures, globals,
# attributes): far enough for a loss calling helpers that close over constants.
_DEPTH = 6


def fingerprint_array(x: Any) -> list:
    """`[shape, dtype, hash of its values]` (see the module docs for what is hashed).

    `[shape, dtype]` for an array spread over several processes (its values are not all
    here) and one of Python objects.
    """
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    shape = list(np.shape(x))
    dtype = str(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return [shape, dtype]
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
        if x.dtype == object:
            return [shape, dtype]
    hashed = hashlib.blake2b(digest_size=16)
    for piece in _sampled(x, _HASHED_BYTES):
        hashed.update(np.ascontiguousarray(np.asarray(piece)).reshape(-1).view(np.uint8))
    return [shape, dtype, hashed.hexdigest()]


def _sampled(x: Any, budget: int) -> list[Any]:
    """Pieces of `x` (NumPy or JAX: indexed where it lives) adding up to about `budget`
    bytes, spread evenly over it."""
    nbytes = x.size * x.dtype.itemsize
    if nbytes <= budget or x.ndim == 0:
        return [x]
    n = x.shape[0]
    rows = budget * n // nbytes  # whole rows within the budget
    if rows >= 1:
        return [x[np.unique(np.linspace(0, n - 1, rows).round().astype(np.int64))]]
    ends = sorted({0, n - 1})  # one row alone is over the budget
    return [piece for i in ends for piece in _sampled(x[i], budget // len(ends))]


def fingerprint_values(tree: Any) -> list | None:
    """Each leaf of `tree` as `fingerprint_array` gives it (None for None).

    A leaf that is not numeric (a function inside an Equinox module) counts by its
    shape and type only.
    """
    if tree is None:
        return None
    return [fingerprint_array(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def fingerprint_function(fn: Callable | None) -> list | None:
    """`[qualified name, digest(fn)]`: which function, and what it computes (None for None)."""
    return None if fn is None else [qualified_name(fn), digest(fn)]


def qualified_name(fn: Any) -> str:
    """`module.qualname` of a function (of the function inside a partial or a wrapper)."""
    inner = getattr(fn, "func", getattr(fn, "__wrapped__", fn))
    name = getattr(inner, "__qualname__", type(inner).__qualname__)
    return f"{getattr(inner, '__module__', '')}.{name}"


def digest(value: Any) -> str:
    """A digest of `value` (16 hex digits), the same in every process running the same
    program: values by value, functions by their code (see the module docs)."""
    feeder = _Feeder()
    feeder.feed(value, _DEPTH)
    return feeder.hash.hexdigest()[:16]


class _Feeder:
    """Writes a process-independent description of values into one blake2b hash."""

    def __init__(self):
        self.hash = hashlib.blake2b(digest_size=16)
        self.seen: set[int] = set()  # objects described already (cycles, shared helpers)

    def put(self, *tokens: Any) -> None:
        for token in tokens:
            self.hash.update(str(token).encode() + b"\x00")

    def feed(self, value: Any, depth: int) -> None:
        """Describes `value`, following what it refers to `depth` levels deep."""
        if self._atom(value):
            return
        if id(value) in self.seen or depth <= 0:
            self.put("seen", type(value).__qualname__)
            return
        self.seen.add(id(value))
        deeper = functools.partial(self.feed, depth=depth - 1)
        if isinstance(value, tuple | list | dict | set | frozenset):
            self._container(value, deeper)
        elif isinstance(value, types.CodeType):
            self._code(value, deeper)
        elif isinstance(value, types.FunctionType):
            self._function(value, deeper)
        elif not self._wrapper(value, deeper):
            self._object(value, deeper)

    def _atom(self, value: Any) -> bool:
        """Describes a number, string, module, class or array; False for anything else."""
        if value is None or isinstance(value, bool | int | float | complex | str | bytes):
            self.put(type(value).__name__, repr(value))
        elif isinstance(value, types.ModuleType):
            self.put("module", value.__name__)
        elif isinstance(value, type):
            self.put("class", value.__module__, value.__qualname__)
        elif isinstance(value, np.ndarray | np.generic | jax.Array):
            self.put("array", *fingerprint_array(value))
        else:
            return False
        return True

    def _container(self, value: Any, deeper: Callable) -> None:
        if isinstance(value, tuple | list):
            self.put(type(value).__name__, len(value))
            for item in value:
                deeper(item)
        elif isinstance(value, dict):
            self.put("dict", len(value))
            for key, item in value.items():
                deeper(key)
                deeper(item)
        else:  # a set: its order differs between processes
            self.put("set", *sorted(digest(item) for item in value))

    def _code(self, code: types.CodeType, deeper: Callable, docstring: Any = None) -> None:
        """Bytecode, names and constants: not line numbers, not the `docstring` constant."""
        self.put("code", code.co_name, code.co_argcount, code.co_kwonlyargcount,
                 code.co_flags, code.co_names, code.co_varnames, code.co_freevars)
        self.hash.update(code.co_code)
        for constant in code.co_consts:
            deeper(None if docstring is not None and constant is docstring else constant)

    def _function(self, fn: types.FunctionType, deeper: Callable) -> None:
        self.put("function", fn.__module__, fn.__qualname__)
        if _installed(fn.__module__):
            return
        self._code(fn.__code__, deeper, docstring=fn.__doc__)
        deeper(fn.__defaults__)
        deeper(fn.__kwdefaults__)
        for cell in fn.__closure__ or ():
            try:
                deeper(cell.cell_contents)
            except ValueError:  # a cell not yet filled
                self.put("empty cell")
        for name in sorted(_global_names(fn.__code__)):
            if name in fn.__globals__:
                self.put("global", name)
                deeper(fn.__globals__[name])

    def _wrapper(self, value: Any, deeper: Callable) -> bool:
        """Describes a partial, bound method, wrapper or builtin; False for anything else."""
        if isinstance(value, functools.partial):
            self.put("partial")
            deeper(value.func)
            deeper(value.args)
            deeper(value.keywords)
        elif isinstance(value, types.MethodType):
            self.put("method")
            deeper(value.__func__)
            deeper(value.__self__)
        elif hasattr(value, "__wrapped__"):  # jax.jit, functools.wraps
            self.put("wrapped")
            deeper(value.__wrapped__)
        elif isinstance(value, types.BuiltinFunctionType | types.BuiltinMethodType):
            self.put("builtin", getattr(value, "__module__", None), value.__qualname__)
        else:
            return False
        return True

    def _object(self, value: Any, deeper: Callable) -> None:
        """Its class; its leaves if a pytree; if callable, its code and attributes."""
        self.put("object", type(value).__module__, type(value).__qualname__)
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
