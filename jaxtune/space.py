"""Search spaces, samplers and the hyperparameter table.

A `Space` names the hyperparameters of a sweep and, for each, the set it is drawn
from: a *dimension* (`uniform`, `loguniform`, `randint`, `choice`, `fixed`).
`Space.sample` draws configurations with a sampler (random, grid, Sobol, Halton)
and `Space.table` takes configurations you list yourself; both return a `Table`,
one row per configuration. Adaptive searches that need configurations over time
ask a `ConfigStream` (`Space.stream`) for them in batches; it can be checkpointed
and resumed. A table holds at most `MAX_CONFIGURATIONS` rows.

Every dimension is *dynamic* or *static*:

- dynamic: a number that goes into the compiled program as data (a float32 or
  int32 array with one entry per configuration). Changing it never recompiles,
  so configurations that differ only in dynamic values train together.
- static: a Python value that shapes the program itself (an activation name, a
  layer width, a batch size). Configurations with different static values need
  different compiled programs; `Table.static_groups` splits a table into them.

By default numeric values (int or float, not bool) are dynamic and everything
else is static; `choice(..., static=True)` and `fixed(..., static=True)` make a
number static (a width or a batch size changes shapes, so it must be).

Dynamic values are stored in float32 (continuous dimensions and float choices)
or int32 (integer dimensions), and bounds are judged in that precision.

Example:

  >>> import jaxtune as jt
  >>> space = jt.Space(
  ...     learning_rate=jt.loguniform(1e-4, 1e-1),
  ...     warmup_steps=jt.randint(0, 500),
  ...     activation=jt.choice(["relu", "tanh"]),
  ... )
  >>> table = space.sample(8, seed=0)
  >>> len(table), table.static_names, table.dynamic_names
  (8, ('activation',), ('learning_rate', 'warmup_steps'))
  >>> table.columns["learning_rate"].dtype
  dtype('float32')
"""

from __future__ import annotations

import keyword
import math
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from ._checks import check_finite, check_in_range

__all__ = [
    "MAX_CONFIGURATIONS",
    "SAMPLERS",
    "Choice",
    "ConfigStream",
    "Dimension",
    "Fixed",
    "LogUniform",
    "RandInt",
    "Space",
    "Table",
    "Uniform",
    "choice",
    "fixed",
    "loguniform",
    "randint",
    "uniform",
]

#: The samplers `Space.sample` knows.
SAMPLERS = ("random", "grid", "sobol", "halton")

#: The most configurations one table (or one `ConfigStream.ask`) may hold; larger
#: requests fail before anything is allocated. A row costs about 8 bytes per
#: dimension (a float32/int32 value, plus an option index for choices, plus float64
#: scratch while drawing), so 10 million rows of a 10-dimension space already take
#: ~1 GB; and a sweep of more configurations than this cannot be trained anyway (at
#: one second per configuration it is four months of one device). Without the check,
#: a 10-dimension grid of 10 points each tried to allocate 74.5 GiB.
MAX_CONFIGURATIONS = 10_000_000

_FLOAT32 = np.dtype(np.float32)
_INT32 = np.dtype(np.int32)
_OBJECT = np.dtype(object)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT32_MIN = int(np.iinfo(np.int32).min)
_INT32_MAX = int(np.iinfo(np.int32).max)
_DEFAULT_POINTS = 5


# --------------------------------------------------------------------------- helpers


def _is_number(value: Any) -> bool:
    """Ints and floats (Python or NumPy), never bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _plain(value: Any) -> Any:
    """A NumPy scalar as the matching Python value; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _show(value: Any, limit: int = 60) -> str:
    text = repr(_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_float32(value: float) -> np.float32:
    """Rounds to float32; values beyond its range become +-inf, quietly."""
    with np.errstate(over="ignore"):
        return np.float32(value)


def _same(a: Any, b: Any) -> bool:
    """Whether two static values are the same value (True is not 1)."""
    if a is b:
        return True
    if isinstance(a, (bool, np.bool_)) != isinstance(b, (bool, np.bool_)):
        return False
    try:
        equal = a == b
        if isinstance(equal, (bool, np.bool_)):
            return bool(equal)
        return bool(np.array_equal(a, b))
    except Exception:
        return False


def _object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array holding `values` as they are (tuples stay whole)."""
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _real_argument(name: str, value: Any) -> float:
    """A finite real scalar argument that fits in float32, as a Python float."""
    if not _is_number(value):
        raise TypeError(
            f"`{name}` must be a real number, got {type(value).__name__} {_show(value)}."
        )
    check_finite(name, value)
    value = float(value)
    if abs(value) > _FLOAT32_MAX:
        raise ValueError(
            f"`{name}` must fit in float32 (magnitude at most {_FLOAT32_MAX:.4g}), "
            f"got {name}={value!r}."
        )
    return value


def _int_argument(name: str, value: Any) -> int:
    if not _is_integer(value):
        raise TypeError(
            f"`{name}` must be an integer, got {type(value).__name__} {_show(value)}."
        )
    return int(value)


def _count_argument(name: str, value: Any, hint: str = "") -> int:
    """A positive integer count (`n`, `points`)."""
    if not _is_integer(value):
        raise TypeError(
            f"`{name}` must be a positive integer, got {type(value).__name__} "
            f"{_show(value)}.{hint}"
        )
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {name}={int(value)}.{hint}")
    return int(value)


def _too_many() -> str:
    return (
        f"MAX_CONFIGURATIONS = {MAX_CONFIGURATIONS:,} (jaxtune.space.MAX_CONFIGURATIONS; "
        "no sweep trains that many configurations)"
    )


def _check_count_limit(name: str, value: int, fix: str) -> None:
    """Refuses a count argument beyond MAX_CONFIGURATIONS, before anything is allocated."""
    if value > MAX_CONFIGURATIONS:
        raise ValueError(f"`{name}` must be at most {_too_many()}, got {name}={value:,}; {fix}")


def _check_grid_size(described: str, count: int, fix: str) -> None:
    """Refuses a grid of `count` rows beyond MAX_CONFIGURATIONS, before it is built."""
    if count > MAX_CONFIGURATIONS:
        raise ValueError(f"{described} = {count:,} configurations, more than {_too_many()}; {fix}")


def _sampler_argument(sampler: Any) -> str:
    if not isinstance(sampler, str):
        raise TypeError(
            f"`sampler` must be a string, one of {', '.join(map(repr, SAMPLERS))}; "
            f"got {type(sampler).__name__} {_show(sampler)}."
        )
    if sampler not in SAMPLERS:
        raise ValueError(
            f"`sampler` must be one of {', '.join(map(repr, SAMPLERS))}, "
            f"got sampler={sampler!r}."
        )
    return sampler


def _seed_argument(seed: Any) -> int:
    if not _is_integer(seed):
        raise TypeError(f"`seed` must be a non-negative integer, got {type(seed).__name__} "
                        f"{_show(seed)}.")
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got seed={int(seed)}.")
    return int(seed)


def _rng_argument(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"`rng` must be a numpy.random.Generator, got {type(rng).__name__}; "
            "create one with np.random.default_rng(seed)."
        )
    return rng


def _unit_argument(u: Any) -> np.ndarray:
    try:
        array = np.asarray(u, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`u` must be an array of numbers in [0, 1], got {_show(u)}.") from error
    check_in_range("u", array, 0.0, 1.0)
    return array


def _values_argument(values: Any) -> list[Any]:
    """The options of a `choice`, as a list of plain values."""
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"`values` must be a sequence of values, got the string {values!r}; "
            f"write choice([{values!r}]) for a single string."
        )
    if isinstance(values, (Mapping, set, frozenset)):
        raise TypeError(
            f"`values` must be an ordered sequence (a list or a tuple), got "
            f"{type(values).__name__}; pass a list so the order, and therefore every "
            "seeded draw, is reproducible."
        )
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(
                f"`values` must be one-dimensional, got an array of shape {values.shape}."
            )
        return [_plain(v) for v in values.tolist()]
    if not isinstance(values, Sequence):
        raise TypeError(
            f"`values` must be a sequence (a list or a tuple), got "
            f"{type(values).__name__} {_show(values)}."
        )
    return [_plain(v) for v in values]


def _static_argument(static: Any) -> bool | None:
    if static is None or isinstance(static, (bool, np.bool_)):
        return None if static is None else bool(static)
    raise TypeError(f"`static` must be True, False or None (automatic), got {static!r}.")


# ------------------------------------------------------------------------- dimensions


class Dimension:
    """One hyperparameter's set of values. Immutable.

    Build dimensions with `uniform`, `loguniform`, `randint`, `choice` and `fixed`.

    Attributes:
      static: whether values are Python values fixed at compile time (True) or
        float32/int32 data in the compiled program (False).
      dtype: np.float32 or np.int32 for dynamic dimensions, object for static ones.
    """

    __slots__ = ()

    static: bool
    dtype: np.dtype

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draws `n` values independently.

        Args:
          rng: a `numpy.random.Generator`, advanced by the draw.
          n: static; number of values, a positive int.

        Returns:
          A 1-D array of length `n` with dtype `self.dtype`.
        """
        _rng_argument(rng)
        n = _count_argument("n", n)
        _check_count_limit("n", n, "draw fewer values.")
        values, _ = self._draw(rng, n)
        return values

    def from_unit(self, u: Any) -> np.ndarray:
        """Maps points of the unit interval to values (the inverse CDF).

        Quasi-random samplers use it: evenly spread points in [0, 1) become
        evenly spread values. 1.0 is accepted and maps to the top of the range.

        Args:
          u: an array of numbers in [0, 1].

        Returns:
          An array of values, the shape of `u`, with dtype `self.dtype`.
        """
        u = _unit_argument(u)
        values, _ = self._map_unit(u.ravel())
        return values.reshape(u.shape)

    def grid(self, points: int = _DEFAULT_POINTS) -> np.ndarray:
        """Evenly spread values for a grid search.

        Args:
          points: static; how many values for a continuous or integer range, a
            positive int (ignored by `choice` and `fixed`, which give all values).

        Returns:
          A 1-D array of distinct values with dtype `self.dtype`.
        """
        points = _count_argument("points", points)
        if self._grid_bound(points) > MAX_CONFIGURATIONS:
            _check_count_limit("points", points, "use fewer points.")
        values, _ = self._grid(points)
        return values

    def contains(self, value: Any) -> bool:
        """Whether `value` is one of this dimension's values."""
        raise NotImplementedError

    # Internal protocol used by `Space` and `Table`. Each returns the stored
    # values and, for dimensions with a finite list of options, the index of
    # each value among the options (None otherwise).

    def _draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _map_unit(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _grid(self, points: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _grid_bound(self, points: int) -> int:
        """The most values `_grid(points)` can return, known without building it."""
        count = self._count
        return points if count is None else min(points, count)

    @property
    def _count(self) -> int | None:
        """How many distinct values; None for a continuous range."""
        return None

    def _encode(self, value: Any) -> tuple[Any, int | None] | None:
        """(stored value, option index) for a member, None for a non-member."""
        raise NotImplementedError

    def _to_python(self, stored: Any, code: int | None) -> Any:
        raise NotImplementedError

    def _key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"{type(self).__name__} is immutable; build a new dimension instead of "
            f"setting `{name}`."
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; cannot delete `{name}`.")

    def __reduce__(self):
        args, kwargs = self._arguments()
        return _rebuild, (type(self), args, kwargs)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        mine, theirs = self._key(), other._key()  # type: ignore[attr-defined]
        return len(mine) == len(theirs) and all(_same(a, b) for a, b in zip(mine, theirs))

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.static))


def _rebuild(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Dimension:
    return cls(*args, **kwargs)


class _Continuous(Dimension):
    """A float range [low, high), sampled uniformly after `_forward`."""

    __slots__ = ("_high32", "_low32", "_top32", "high", "low")

    _name = ""

    def __init__(self, low: float, high: float) -> None:
        low = _real_argument("low", low)
        high = _real_argument("high", high)
        self._check_bounds(low, high)
        low32, high32 = np.float32(low), np.float32(high)
        if not low32 < high32:
            raise ValueError(
                f"`low` and `high` round to the same float32 value, got low={low!r}, "
                f"high={high!r}; widen the range, or use fixed({low!r})."
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "_low32", low32)
        object.__setattr__(self, "_high32", high32)
        # The largest float32 a draw may return: draws exclude `high`.
        object.__setattr__(self, "_top32", np.nextafter(high32, np.float32(-np.inf)))

    static = False
    dtype = _FLOAT32

    def _check_bounds(self, low: float, high: float) -> None:
        if not low < high:
            raise ValueError(
                f"`low` must be less than `high`, got low={low!r}, high={high!r}; "
                f"swap them, or use fixed({low!r}) for a single value."
            )

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _finish(self, x: np.ndarray) -> np.ndarray:
        # Rounding to float32 can land on `high` (or just outside the range);
        # clipping keeps every draw in [low, high) at float32 precision.
        return np.clip(x.astype(np.float32), self._low32, self._top32)

    def _draw(self, rng, n):
        lo, hi = self._forward(np.float64(self.low)), self._forward(np.float64(self.high))
        return self._finish(self._backward(rng.uniform(lo, hi, size=n))), None

    def _map_unit(self, u):
        lo, hi = self._forward(np.float64(self.low)), self._forward(np.float64(self.high))
        return self._finish(self._backward(lo + u * (hi - lo))), None

    def _grid(self, points):
        lo, hi = self._forward(np.float64(self.low)), self._forward(np.float64(self.high))
        values = self._backward(np.linspace(lo, hi, points))
        values[0] = self.low
        if points > 1:
            values[-1] = self.high
        # Narrow ranges can map neighbouring points to one float32: keep each once.
        return np.unique(values.astype(np.float32)), None

    def contains(self, value: Any) -> bool:
        """Whether `value` lies in [low, high], compared in float32.

        Draws never return `high`, but `high` itself (as in a grid, or a value you
        list in `Space.table`) is accepted.
        """
        return self._encode(value) is not None

    def _encode(self, value):
        if not _is_number(value):
            return None
        x = float(value)
        if not math.isfinite(x):
            return None
        x32 = _to_float32(x)
        if self._low32 <= x32 <= self._high32:
            return x32, None
        return None

    def _to_python(self, stored, code):
        return float(stored)

    def _key(self):
        return (self.low, self.high)

    def _arguments(self):
        return (self.low, self.high), {}

    def __repr__(self) -> str:
        return f"{self._name}({self.low!r}, {self.high!r})"


class Uniform(_Continuous):
    """Floats drawn uniformly from [low, high). Build it with `uniform`."""

    __slots__ = ()
    _name = "uniform"

    def _forward(self, x):
        return x

    def _backward(self, y):
        return y


class LogUniform(_Continuous):
    """Floats whose logarithm is uniform on [log low, log high). Build it with `loguniform`."""

    __slots__ = ()
    _name = "loguniform"

    def _check_bounds(self, low, high):
        if low <= 0 or not np.float32(low) > 0:
            raise ValueError(
                f"`low` must be positive for a log-uniform range, got low={low!r}; "
                "use uniform(...) for a range that includes zero or negative values."
            )
        super()._check_bounds(low, high)

    def _forward(self, x):
        return np.log(x)

    def _backward(self, y):
        return np.exp(y)


class RandInt(Dimension):
    """Integers drawn uniformly from [low, high), `high` excluded. Build it with `randint`."""

    __slots__ = ("high", "low")

    static = False
    dtype = _INT32

    def __init__(self, low: int, high: int) -> None:
        low = _int_argument("low", low)
        high = _int_argument("high", high)
        if not low < high:
            raise ValueError(
                f"`low` must be less than `high`, got low={low}, high={high}; `high` is "
                f"excluded, so randint({low}, {low + 1}) is the single value {low} "
                f"(or use fixed({low}))."
            )
        if low < _INT32_MIN or high - 1 > _INT32_MAX:
            raise ValueError(
                f"randint values must fit in int32 ([{_INT32_MIN}, {_INT32_MAX}]), got "
                f"low={low}, high={high}; narrow the range, or use a static choice."
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def _count(self) -> int:
        return self.high - self.low

    def _draw(self, rng, n):
        return rng.integers(self.low, self.high, size=n, dtype=np.int64).astype(np.int32), None

    def _map_unit(self, u):
        offsets = np.minimum(np.floor(u * self._count), self._count - 1).astype(np.int64)
        return (self.low + offsets).astype(np.int32), None

    def _grid(self, points):
        # More points than integers gives every integer once: build no more than that.
        spread = np.linspace(self.low, self.high - 1, min(points, self._count))
        return np.unique(np.round(spread).astype(np.int64)).astype(np.int32), None

    def contains(self, value: Any) -> bool:
        """Whether `value` is an integer (or integral float) in [low, high)."""
        return self._encode(value) is not None

    def _encode(self, value):
        if _is_integer(value):
            x = int(value)
        elif _is_number(value) and math.isfinite(float(value)) and float(value).is_integer():
            x = int(float(value))
        else:
            return None
        return (np.int32(x), None) if self.low <= x < self.high else None

    def _to_python(self, stored, code):
        return int(stored)

    def _key(self):
        return (self.low, self.high)

    def _arguments(self):
        return (self.low, self.high), {}

    def __repr__(self) -> str:
        return f"randint({self.low}, {self.high})"


class _Discrete(Dimension):
    """A finite list of options; values are stored with their option index."""

    __slots__ = ("_array", "_options", "dtype", "static")

    def _setup(self, options: list[Any], static: bool | None, argument: str) -> None:
        numeric = all(_is_number(v) for v in options)
        for i, v in enumerate(options):
            if _is_number(v) and not math.isfinite(float(v)):
                where = argument if argument == "value" else f"{argument}[{i}]"
                raise ValueError(
                    f"`{where}` must be finite, got {v!r}; use a large finite number instead."
                )
        if static is None:
            static = not numeric
        elif not static and not numeric:
            i, v = next((i, v) for i, v in enumerate(options) if not _is_number(v))
            where = argument if argument == "value" else f"{argument}[{i}]"
            raise ValueError(
                f"`static=False` needs numbers, but `{where}` is {type(v).__name__} {_show(v)}; "
                "only int and float values can be dynamic. Leave static=None to make this "
                "dimension static."
            )
        if static:
            dtype = _OBJECT
            array = _object_array(options)
        elif all(_is_integer(v) for v in options):
            dtype = _INT32
            options = [int(v) for v in options]
            for i, v in enumerate(options):
                if not _INT32_MIN <= v <= _INT32_MAX:
                    where = argument if argument == "value" else f"{argument}[{i}]"
                    raise ValueError(
                        f"`{where}` must fit in int32 to be dynamic, got {v}; pass "
                        "static=True to keep it a Python int."
                    )
            array = np.asarray(options, dtype=np.int32)
        else:
            dtype = _FLOAT32
            options = [float(v) for v in options]
            for i, v in enumerate(options):
                if abs(v) > _FLOAT32_MAX:
                    where = argument if argument == "value" else f"{argument}[{i}]"
                    raise ValueError(
                        f"`{where}` must fit in float32 to be dynamic, got {v!r}; pass "
                        "static=True to keep it a Python float."
                    )
            array = np.asarray(options, dtype=np.float32)
        self._check_distinct(options, array, static)
        object.__setattr__(self, "static", bool(static))
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "_options", tuple(options))
        object.__setattr__(self, "_array", _readonly(array))

    def _check_distinct(self, options: list[Any], array: np.ndarray, static: bool) -> None:
        for j in range(1, len(options)):
            for i in range(j):
                same = _same(options[i], options[j]) if static else array[i] == array[j]
                if same:
                    raise ValueError(
                        f"`values` lists {_show(options[i])} twice (values[{i}] and "
                        f"values[{j}]"
                        f"{', equal in float32' if not static and options[i] != options[j] else ''}"
                        "); give each value once."
                    )

    @property
    def _count(self) -> int:
        return len(self._options)

    def _take(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._array[codes], codes

    def _draw(self, rng, n):
        return self._take(rng.integers(0, self._count, size=n))

    def _map_unit(self, u):
        return self._take(np.minimum(np.floor(u * self._count), self._count - 1).astype(np.intp))

    def _grid(self, points):
        return self._take(np.arange(self._count))

    def _grid_bound(self, points):
        return self._count

    def contains(self, value: Any) -> bool:
        """Whether `value` is one of the options (numbers compared in float32/int32)."""
        return self._encode(value) is not None

    def _index(self, value: Any) -> int | None:
        value = _plain(value)
        if self.static:
            return next((i for i, v in enumerate(self._options) if _same(v, value)), None)
        if not _is_number(value) or not math.isfinite(float(value)):
            return None
        if self.dtype == _INT32:
            if not float(value).is_integer():
                return None
            stored: Any = int(value)
            if not _INT32_MIN <= stored <= _INT32_MAX:
                return None
        else:
            stored = _to_float32(float(value))
        hits = np.flatnonzero(self._array == stored)
        return int(hits[0]) if hits.size else None

    def _encode(self, value):
        index = self._index(value)
        return None if index is None else (self._array[index], index)

    def _to_python(self, stored, code):
        return self._options[code]

    def _forced_static(self) -> bool:
        """Whether `static=True` was needed (the options alone would be dynamic)."""
        return self.static and all(_is_number(v) for v in self._options)

    def _key(self):
        return (self.static, *self._options)


class Choice(_Discrete):
    """One of a list of values, each equally likely. Build it with `choice`."""

    __slots__ = ()

    def __init__(self, values: Sequence[Any], *, static: bool | None = None) -> None:
        static = _static_argument(static)
        options = _values_argument(values)
        if not options:
            raise ValueError(
                "`values` must not be empty; list at least one value, e.g. choice([0.0, 0.1])."
            )
        self._setup(options, static, "values")

    @property
    def values(self) -> tuple[Any, ...]:
        """The options, as Python values, in the order given."""
        return self._options

    def _arguments(self):
        return (list(self._options),), {"static": self.static}

    def __repr__(self) -> str:
        flag = ", static=True" if self._forced_static() else ""
        return f"choice({list(self._options)!r}{flag})"


class Fixed(_Discrete):
    """A single value. Build it with `fixed`."""

    __slots__ = ()

    def __init__(self, value: Any, *, static: bool | None = None) -> None:
        static = _static_argument(static)
        self._setup([_plain(value)], static, "value")

    @property
    def value(self) -> Any:
        """The value, as a Python value."""
        return self._options[0]

    def _draw(self, rng, n):
        # A constant draws nothing, so it does not shift other dimensions' draws.
        return self._take(np.zeros(n, dtype=np.intp))

    def _arguments(self):
        return (self._options[0],), {"static": self.static}

    def __repr__(self) -> str:
        flag = ", static=True" if self._forced_static() else ""
        return f"fixed({self._options[0]!r}{flag})"


def uniform(low: float, high: float) -> Uniform:
    """Floats drawn uniformly from [low, high).

    Stored as float32. Draws never return `high`; `grid` spans [low, high] with
    both ends, and `contains` accepts the closed range.

    Args:
      low: static; the lower bound, a finite float.
      high: static; the upper bound, a finite float greater than `low`.

    Returns:
      A dynamic `Dimension`.

    Example:
      >>> import jaxtune as jt
      >>> jt.uniform(0.0, 1.0).grid(3)
      array([0. , 0.5, 1. ], dtype=float32)
    """
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """Floats whose logarithm is uniform on [log low, log high): every decade is equally likely.

    The usual prior for learning rates and weight decays. Stored as float32.
    Draws never return `high`; `grid` is geometric over [low, high] with both ends.

    Args:
      low: static; the lower bound, a positive finite float.
      high: static; the upper bound, a finite float greater than `low`.

    Returns:
      A dynamic `Dimension`.

    Example:
      >>> import jaxtune as jt
      >>> jt.loguniform(1e-4, 1e-2).grid(3)
      array([0.0001, 0.001 , 0.01  ], dtype=float32)
    """
    return LogUniform(low, high)


def randint(low: int, high: int) -> RandInt:
    """Integers drawn uniformly from [low, high): **`high` is excluded**.

    Like `numpy.random.Generator.integers`, `jax.random.randint` and Ray Tune's
    `randint`: `randint(0, 500)` gives 0, 1, ..., 499. Stored as int32.
    `grid(points)` gives evenly spread distinct integers from `low` to `high - 1`.

    Args:
      low: static; the smallest value, an int.
      high: static; one past the largest value, an int greater than `low`.

    Returns:
      A dynamic `Dimension`.

    Example:
      >>> import jaxtune as jt
      >>> jt.randint(0, 5).grid(10)
      array([0, 1, 2, 3, 4], dtype=int32)
    """
    return RandInt(low, high)


def choice(values: Sequence[Any], *, static: bool | None = None) -> Choice:
    """One of a list of values, each equally likely.

    Numbers (int or float, not bool) are dynamic by default: stored as int32 when
    all are ints, else float32. Anything else (strings, bools, None, tuples,
    callables) makes the dimension static. A grid uses every value once, in order.

    Args:
      values: static; a non-empty list or tuple of distinct values.
      static: static; None (automatic, as above), True to keep numbers as Python
        values that may change shapes (a layer width, a batch size), or False to
        insist on dynamic (only valid for numbers).

    Returns:
      A `Dimension`.

    Example:
      >>> import jaxtune as jt
      >>> jt.choice([0.0, 1e-4]).static, jt.choice(["relu", "tanh"]).static
      (False, True)
      >>> jt.choice([64, 128], static=True)
      choice([64, 128], static=True)
    """
    return Choice(values, static=static)


def fixed(value: Any, *, static: bool | None = None) -> Fixed:
    """A single value: a hyperparameter held constant in this sweep.

    A finite number is dynamic (int32 for an int, float32 for a float), anything
    else static, as for `choice`.

    Args:
      value: static; the value. A number must be finite.
      static: static; None (automatic), True to keep a number a Python value, or
        False to insist on dynamic (only valid for a number).

    Returns:
      A `Dimension`.

    Example:
      >>> import jaxtune as jt
      >>> jt.fixed(0.9), jt.fixed("adam").static
      (fixed(0.9), True)
    """
    return Fixed(value, static=static)


# ------------------------------------------------------------------------------ space


def _describe_non_dimension(name: str, value: Any) -> str:
    if _is_number(value):
        return (
            f"`{name}` must be a dimension, got the number {_show(value)}; write "
            f"{name}=fixed({_show(value)}) for a constant."
        )
    if isinstance(value, (list, tuple)):
        return (
            f"`{name}` must be a dimension, got the {type(value).__name__} {_show(value)}; "
            f"write {name}=choice({_show(list(value))}) to choose among these values."
        )
    return (
        f"`{name}` must be a dimension (uniform, loguniform, randint, choice or fixed), "
        f"got {type(value).__name__} {_show(value)}; wrap a constant in fixed(...)."
    )


class Space:
    """Named hyperparameters and the set each is drawn from.

    Names are keyword arguments of your model/optimizer factory, so they must be
    valid Python identifiers. Insertion order is kept: it is the column order of
    tables and the order in which dimensions consume the random generator.
    An empty space is allowed: one configuration, no hyperparameters.

    Args:
      dims: static; a mapping name -> `Dimension` (positional only), merged with
      **dims: static; more dimensions by keyword.

    Example:
      >>> import jaxtune as jt
      >>> space = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1),
      ...                  activation=jt.choice(["relu", "tanh"]))
      >>> space.names, space.static_names
      (('learning_rate', 'activation'), ('activation',))
      >>> len(space.sample(sampler="grid", points=3))
      6
    """

    __slots__ = ("_dims",)

    def __init__(self, dims: Mapping[str, Dimension] | None = None, /, **kwargs: Dimension):
        merged: dict[str, Dimension] = {}
        if dims is not None:
            if isinstance(dims, Space):
                dims = dims._dims
            if not isinstance(dims, Mapping):
                raise TypeError(
                    f"`dims` must be a mapping name -> dimension, got {type(dims).__name__}; "
                    "or pass the dimensions as keyword arguments."
                )
            merged.update(dims)
        for name, dim in kwargs.items():
            if name in merged:
                raise ValueError(
                    f"`{name}` is given twice, in `dims` and as a keyword argument; give it once."
                )
            merged[name] = dim
        for name, dim in merged.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"dimension names must be strings, got {type(name).__name__} {name!r}."
                )
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(
                    f"dimension name {name!r} is not a valid Python identifier; names become "
                    "keyword arguments, so use letters, digits and underscores "
                    f"(e.g. {_suggest_identifier(name)!r})."
                )
            if not isinstance(dim, Dimension):
                raise TypeError(_describe_non_dimension(name, dim))
        object.__setattr__(self, "_dims", MappingProxyType(merged))

    @property
    def names(self) -> tuple[str, ...]:
        """All names, in insertion order."""
        return tuple(self._dims)

    @property
    def static_names(self) -> tuple[str, ...]:
        """Names of the static dimensions, in insertion order."""
        return tuple(name for name, dim in self._dims.items() if dim.static)

    @property
    def dynamic_names(self) -> tuple[str, ...]:
        """Names of the dynamic dimensions, in insertion order."""
        return tuple(name for name, dim in self._dims.items() if not dim.static)

    @property
    def size(self) -> int | None:
        """The number of distinct configurations, or None if any dimension is continuous.

        When every dimension is discrete it is the product of their counts: a
        `choice` counts its values, a `fixed` 1, `randint(low, high)` high - low. An
        empty space has 1 configuration. It is an exact Python int, however large
        (compare it with `MAX_CONFIGURATIONS` before enumerating). The grid sampler
        enumerates all of them when `points` covers every `randint` range
        (points[name] >= high - low); choices and fixed values always give all their
        values.

        Example:
          >>> import jaxtune as jt
          >>> jt.Space(a=jt.choice([0.1, 0.2, 0.3]), b=jt.randint(0, 4), c=jt.fixed(1)).size
          12
          >>> jt.Space(a=jt.choice([0.1, 0.2]), lr=jt.loguniform(1e-4, 1e-1)).size is None
          True
        """
        counts = [dim._count for dim in self._dims.values()]
        if any(count is None for count in counts):
            return None
        return math.prod(counts)

    def __getitem__(self, name: str) -> Dimension:
        try:
            return self._dims[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not in the space; it has: {', '.join(self._dims) or 'nothing'}."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._dims

    def __len__(self) -> int:
        return len(self._dims)

    def __iter__(self) -> Iterator[str]:
        return iter(self._dims)

    def items(self):
        """(name, dimension) pairs, in insertion order."""
        return self._dims.items()

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={dim!r}" for name, dim in self._dims.items())
        return f"Space({inner})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Space):
            return NotImplemented
        return self.names == other.names and all(
            self._dims[name] == other._dims[name] for name in self.names
        )

    def __hash__(self) -> int:
        return hash(self.names)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Space is immutable; build a new Space instead of setting `{name}`.")

    def __reduce__(self):
        return Space, (dict(self._dims),)

    # ---- sampling

    def sample(
        self,
        n: int | None = None,
        *,
        sampler: str = "random",
        seed: int = 0,
        points: int | Mapping[str, int] = _DEFAULT_POINTS,
    ) -> Table:
        """Draws configurations.

        Samplers:

        - "random": each dimension draws `n` values independently from one
          `np.random.default_rng(seed)`, in the space's order.
        - "sobol", "halton": scrambled quasi-random points from `scipy.stats.qmc`
          (one coordinate per dimension, mapped with `Dimension.from_unit`); they
          cover the space more evenly than random draws. Any `n` works for Sobol
          (powers of two balance best).
        - "grid": every combination of each dimension's `grid(points)`, the first
          dimension varying slowest. `choice` and `fixed` use all their values.

        Draws are reproducible for a given seed (and, for Sobol and Halton, scipy
        version). A table holds at most `MAX_CONFIGURATIONS` rows: a larger `n` or
        grid is refused before anything is allocated. To draw configurations in
        batches as a search needs them, use `Space.stream`.

        Args:
          n: static; the number of configurations, a positive int. For "grid" it is
            optional (None: the whole grid) and, if given, must equal the grid size.
          sampler: static; one of "random", "grid", "sobol", "halton".
          seed: static; a non-negative int. Unused by "grid".
          points: static; grid points per continuous or integer dimension, an int
            or a mapping name -> int (missing names get 5). Used only by "grid".

        Returns:
          A `Table` with one row per configuration.
        """
        sampler = _sampler_argument(sampler)
        counts = self._point_counts(points)
        seed = _seed_argument(seed)
        if sampler == "grid":
            return self._sample_grid(n, counts)
        if n is None:
            raise TypeError(
                f"`n` is required for sampler={sampler!r}: the number of configurations to draw."
            )
        n = _count_argument("n", n)
        _check_count_limit(
            "n", n,
            "draw fewer (a few hundred configurations already cover a space well), or "
            "draw them in batches as the search needs them with Space.stream(...).ask(n).",
        )
        columns: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray | None] = {}
        if sampler == "random":
            rng = np.random.default_rng(seed)
            for name, dim in self._dims.items():
                columns[name], codes[name] = dim._draw(rng, n)
        elif self._dims:
            unit = _quasi_random(sampler, len(self._dims), n, seed)
            for j, (name, dim) in enumerate(self._dims.items()):
                columns[name], codes[name] = dim._map_unit(unit[:, j])
        return Table._make(self, columns, codes, n)

    def _point_counts(self, points: Any) -> dict[str, int]:
        hint = " `points` is the number of grid values per continuous or integer dimension."
        if isinstance(points, Mapping):
            unknown = [name for name in points if name not in self._dims]
            if unknown:
                raise ValueError(
                    f"`points` names {', '.join(f'`{u}`' for u in unknown)}, which "
                    f"{'is' if len(unknown) == 1 else 'are'} not in the space; it has: "
                    f"{', '.join(self._dims) or 'nothing'}."
                )
            return {
                name: _count_argument(f"points[{name!r}]", points.get(name, _DEFAULT_POINTS), hint)
                for name in self._dims
            }
        count = _count_argument("points", points, hint)
        return {name: count for name in self._dims}

    def _grids(self, counts: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Each dimension's grid values (and option indices), sizes checked first."""
        fix = (
            "use fewer `points` (an int for every continuous or integer dimension, or a "
            "mapping name -> int, e.g. points={'learning_rate': 8}), or draw a fixed "
            "number of configurations with sampler='random' or 'sobol' "
            "(Space.sample(n, ...), or `trials=` in jaxtune.sweep)."
        )
        # A dimension's grid is built only once its own size is known to be allowed.
        for name, dim in self._dims.items():
            if dim._grid_bound(counts[name]) > MAX_CONFIGURATIONS:
                _check_count_limit(f"points[{name!r}]", counts[name], fix)
        grids = {name: dim._grid(counts[name]) for name, dim in self._dims.items()}
        sizes = [len(values) for values, _ in grids.values()]
        _check_grid_size(
            f"sampler='grid' gives {' x '.join(map(str, sizes))}", math.prod(sizes), fix
        )
        return grids

    def _sample_grid(self, n: int | None, counts: dict[str, int]) -> Table:
        grids = self._grids(counts)
        sizes = [len(values) for values, _ in grids.values()]
        total = math.prod(sizes)
        if n is not None:
            n = _count_argument("n", n)
            if n != total:
                product = " x ".join(map(str, sizes)) if sizes else "1 (an empty space)"
                raise ValueError(
                    f"`n`={n} does not match the grid, which has {product} = {total} "
                    f"configurations; pass n=None (or n={total}), or change `points`."
                )
        columns: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray | None] = {}
        if sizes:
            positions = np.unravel_index(np.arange(total), sizes)
            for (name, (values, value_codes)), position in zip(grids.items(), positions):
                columns[name] = values[position]
                codes[name] = None if value_codes is None else value_codes[position]
        return Table._make(self, columns, codes, total)

    def stream(
        self,
        *,
        sampler: str = "random",
        seed: int = 0,
        points: int | Mapping[str, int] = _DEFAULT_POINTS,
    ) -> ConfigStream:
        """A deterministic, resumable stream of configurations, for searches that ask for more over time.

        `ConfigStream(self, sampler=..., seed=..., points=...)`; see `ConfigStream`
        for the rule each sampler follows.

        Example:
          >>> import jaxtune as jt
          >>> space = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1))
          >>> stream = space.stream(sampler="sobol", seed=0)
          >>> first, more = stream.ask(3), stream.ask(5)
          >>> stream.position, len(more)
          (8, 5)
        """
        return ConfigStream(self, sampler=sampler, seed=seed, points=points)

    # ---- explicit tables

    def table(self, data: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | Table
              ) -> Table:
        """Builds a table from configurations you list.

        Every value is checked against its dimension.

        Args:
          data: a mapping name -> sequence of values (all the same length), a list
            of mappings name -> value (one per configuration), or a `Table`.

        Returns:
          A `Table` with one row per configuration.

        Example:
          >>> import jaxtune as jt
          >>> space = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1))
          >>> space.table([{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]).row(0)
          {'learning_rate': 0.0010000000474974513}
        """
        if isinstance(data, Table):
            data = data.to_dict()
        if isinstance(data, Mapping):
            columns = self._columns_from_mapping(data)
            # An empty space has one configuration, so `{}` is one row.
            n = len(next(iter(columns.values()))) if columns else 1
        elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
            columns = self._columns_from_rows(data)
            n = len(data)
        else:
            hint = (
                " For a pandas DataFrame pass df.to_dict('list')."
                if hasattr(data, "to_dict") else ""
            )
            raise TypeError(
                "`data` must be a mapping name -> list of values or a list of mappings "
                f"name -> value, got {type(data).__name__}.{hint}"
            )
        if n == 0:
            raise ValueError("`data` has no configurations; give at least one.")
        stored: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray | None] = {}
        for name, dim in self._dims.items():
            values = columns[name]
            encoded = []
            for i, value in enumerate(values):
                member = dim._encode(value)
                if member is None:
                    raise ValueError(
                        f"`{name}`: row {i} has value {_show(value)}, outside {dim!r}."
                    )
                encoded.append(member)
            if dim.static:
                stored[name] = _object_array([s for s, _ in encoded])
            else:
                stored[name] = np.asarray([s for s, _ in encoded], dtype=dim.dtype)
            if isinstance(dim, _Discrete):
                codes[name] = np.asarray([c for _, c in encoded], dtype=np.intp)
            else:
                codes[name] = None
        return Table._make(self, stored, codes, n)

    def _check_names(self, given: Sequence[str], where: str) -> None:
        unknown = [name for name in given if name not in self._dims]
        if unknown:
            raise ValueError(
                f"{where} has unknown name{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(f'`{u}`' for u in unknown)}; the space has: "
                f"{', '.join(self._dims) or 'nothing'}."
            )
        missing = [name for name in self._dims if name not in given]
        if missing:
            raise ValueError(
                f"{where} is missing {', '.join(f'`{m}`' for m in missing)}; every "
                "configuration needs a value for each name in the space (put a constant "
                "in the space as fixed(...))."
            )

    def _columns_from_mapping(self, data: Mapping[str, Any]) -> dict[str, list[Any]]:
        self._check_names(list(data), "`data`")
        columns: dict[str, list[Any]] = {}
        for name in self._dims:
            column = data[name]
            if isinstance(column, np.ndarray):
                if column.ndim != 1:
                    raise ValueError(
                        f"column `{name}` must be one-dimensional, got shape {column.shape}."
                    )
                columns[name] = list(column)
            elif isinstance(column, (str, bytes, Mapping)) or not hasattr(column, "__len__") \
                    or not hasattr(column, "__iter__"):
                raise TypeError(
                    f"column `{name}` must be a sequence of values, got "
                    f"{type(column).__name__} {_show(column)}; for one configuration write "
                    f"{name}=[{_show(column)}]."
                )
            else:
                columns[name] = list(column)
        lengths = {name: len(column) for name, column in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                "columns of `data` must have equal lengths, got "
                + ", ".join(f"{name}: {length}" for name, length in lengths.items())
                + "."
            )
        return columns

    def _columns_from_rows(self, rows: Sequence[Any]) -> dict[str, list[Any]]:
        if not rows:
            raise ValueError("`data` has no configurations; give at least one.")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(
                    f"row {i} of `data` must be a mapping name -> value, got "
                    f"{type(row).__name__} {_show(row)}."
                )
            self._check_names(list(row), f"row {i} of `data`")
        return {name: [row[name] for row in rows] for name in self._dims}


def _suggest_identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    if keyword.iskeyword(cleaned):
        cleaned += "_"
    return cleaned


def _quasi_random(sampler: str, d: int, n: int, seed: int, start: int = 0) -> np.ndarray:
    """Points start, ..., start + n - 1 of the scrambled Sobol or Halton sequence in [0, 1)^d."""
    try:
        from scipy.stats import qmc
    except ImportError as error:  # scipy is optional: only these samplers need it
        raise ImportError(
            f"sampler={sampler!r} needs scipy; install it (pip install scipy) or use "
            "sampler='random'."
        ) from error
    engine_type = qmc.Sobol if sampler == "sobol" else qmc.Halton
    try:
        engine = engine_type(d=d, scramble=True, rng=seed)
    except TypeError:  # scipy < 1.15 names the argument `seed`
        engine = engine_type(d=d, scramble=True, seed=seed)
    with warnings.catch_warnings():
        # Sobol warns when n is not a power of two: its balance properties then
        # hold only approximately. Sweeps pick n freely, and the points remain
        # far more even than random ones, so the warning is deliberately silenced.
        warnings.filterwarnings(
            "ignore", message="The balance properties of Sobol", category=UserWarning
        )
        if start:
            engine.fast_forward(start)
        return engine.random(n)


# Philox4x64 emits its 64-bit words in blocks of four; `advance` counts blocks.
_PHILOX_BLOCK = 4


def _counter_unit(seed: int, start: int, count: int) -> np.ndarray:
    """Words start, ..., start + count - 1 of Philox(seed) as floats in [0, 1).

    Counter-based, so any stretch costs the same to reach as the first one: the
    stream jumps to `start` instead of generating the words before it.
    """
    bit_generator = np.random.Philox(seed)
    bit_generator.advance(start // _PHILOX_BLOCK)
    bit_generator.random_raw(start % _PHILOX_BLOCK)
    # Generator.random turns each word into a double from its top 53 bits, in C
    # (random_raw returns the words ~15x slower).
    return np.random.Generator(bit_generator).random(count)


# ------------------------------------------------------------------------------ table


class Table:
    """The hyperparameter table: one row per configuration.

    Dynamic columns are float32/int32 arrays of shape [N], ready to become the
    hyperparameter arrays of a population; static columns are 1-D object arrays
    of Python values. All arrays are read-only. Build tables with `Space.sample`
    or `Space.table` (`Table(space, data)` is `space.table(data)`).

    Attributes:
      space: the `Space` the table belongs to.
    """

    __slots__ = ("_codes", "_columns", "_n", "_space")

    def __init__(self, space: Space, data: Any, /) -> None:
        if not isinstance(space, Space):
            raise TypeError(f"`space` must be a Space, got {type(space).__name__}.")
        other = space.table(data)
        self._space, self._n = other._space, other._n
        self._columns, self._codes = other._columns, other._codes

    @classmethod
    def _make(
        cls, space: Space, columns: dict[str, np.ndarray],
        codes: dict[str, np.ndarray | None], n: int,
    ) -> Table:
        table = cls.__new__(cls)
        table._space = space
        table._n = int(n)
        table._columns = {name: _readonly(np.asarray(columns[name])) for name in space.names}
        table._codes = {
            name: None if codes[name] is None else _readonly(np.asarray(codes[name], np.intp))
            for name in space.names
        }
        return table

    def __reduce__(self):
        return _restore_table, (self._space, dict(self._columns), dict(self._codes), self._n)

    @property
    def space(self) -> Space:
        return self._space

    @property
    def names(self) -> tuple[str, ...]:
        return self._space.names

    @property
    def static_names(self) -> tuple[str, ...]:
        return self._space.static_names

    @property
    def dynamic_names(self) -> tuple[str, ...]:
        return self._space.dynamic_names

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """name -> read-only array of shape [N] (a new dict each call)."""
        return dict(self._columns)

    def dynamic(self) -> dict[str, np.ndarray]:
        """The dynamic columns only: name -> read-only float32/int32 array [N]."""
        return {name: self._columns[name] for name in self.dynamic_names}

    def __len__(self) -> int:
        return self._n

    def _value(self, name: str, i: int) -> Any:
        codes = self._codes[name]
        dim = self._space[name]
        return dim._to_python(self._columns[name][i], None if codes is None else int(codes[i]))

    def _index(self, i: Any) -> int:
        if not _is_integer(i):
            raise TypeError(f"`i` must be an integer row index, got {type(i).__name__} {_show(i)}.")
        if not -self._n <= i < self._n:
            raise IndexError(f"row {int(i)} is out of range for a table of {self._n} rows.")
        return int(i) % self._n

    def row(self, i: int) -> dict[str, Any]:
        """Configuration `i` as name -> plain Python value (float, int, str, ...).

        Choice and fixed values come back exactly as declared (e.g. 1e-4, not
        its float32 rounding); uniform and loguniform values are the stored
        float32 value as a Python float.
        """
        i = self._index(i)
        return {name: self._value(name, i) for name in self.names}

    def rows(self) -> list[dict[str, Any]]:
        """Every configuration, as `row` gives it."""
        columns = self.to_dict()
        return [{name: columns[name][i] for name in self.names} for i in range(self._n)]

    def to_dict(self) -> dict[str, list[Any]]:
        """name -> list of plain Python values, one per row."""
        out: dict[str, list[Any]] = {}
        for name, dim in self._space.items():
            codes = self._codes[name]
            if codes is None:
                out[name] = [dim._to_python(v, None) for v in self._columns[name].tolist()]
            else:
                out[name] = [dim._to_python(None, c) for c in codes.tolist()]
        return out

    def take(self, indices: Any) -> Table:
        """The rows at `indices`, in that order (repeats allowed, negatives count from the end).

        Args:
          indices: a 1-D sequence or array of integer row indices.

        Returns:
          A new `Table` with len(indices) rows.
        """
        index = np.asarray(indices)
        if index.dtype == np.bool_:
            raise TypeError(
                "`indices` must be integer row indices, got booleans; convert a mask "
                "with np.flatnonzero(mask)."
            )
        if index.size == 0:
            index = index.astype(np.intp)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise TypeError(
                f"`indices` must be a 1-D sequence of integers, got {_show(indices)}."
            )
        bad = np.flatnonzero((index < -self._n) | (index >= self._n))
        if bad.size:
            raise IndexError(
                f"`indices`[{int(bad[0])}] = {int(index[bad[0]])} is out of range for a "
                f"table of {self._n} rows."
            )
        index = index.astype(np.intp) % max(self._n, 1)
        columns = {name: column[index] for name, column in self._columns.items()}
        codes = {name: None if c is None else c[index] for name, c in self._codes.items()}
        return Table._make(self._space, columns, codes, len(index))

    def static_groups(self) -> list[tuple[dict[str, Any], np.ndarray]]:
        """Rows grouped by their static values, one group per compiled program.

        Returns:
          A list of (static values as name -> Python value, row indices as an int
          array), groups in order of first appearance, indices ascending. With no
          static dimensions: one group `({}, arange(N))`.
        """
        static = self.static_names
        if not static:
            return [({}, np.arange(self._n))]
        keys = zip(*(self._codes[name].tolist() for name in static))  # type: ignore[union-attr]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        return [
            (
                {name: self._space[name]._to_python(None, code) for name, code in zip(static, key)},
                np.asarray(rows, dtype=np.intp),
            )
            for key, rows in groups.items()
        ]

    def __repr__(self) -> str:
        return f"Table(N={self._n}, names={list(self.names)!r})"


def _restore_table(space, columns, codes, n) -> Table:
    return Table._make(space, columns, codes, n)


# ----------------------------------------------------------------------------- stream


_STATE_KEYS = ("names", "sampler", "seed", "points", "position")


class ConfigStream:
    """A deterministic, resumable stream of configurations: `ask(n)` gives the next n.

    Adaptive searches (successive halving, ASHA, ask/tell optimizers) start
    configurations over time. A stream hands them out in batches, and the sequence
    depends only on the space, the sampler, the seed and (for the grid) `points`,
    never on how it was split into batches: `ask(3)` then `ask(5)` gives the same
    eight configurations as `ask(8)`.

    Samplers:

    - "random": configuration i is a pure function of (seed, i). Its dimensions,
      in the space's order, map (with `Dimension.from_unit`) the 64-bit words
      i*d, ..., i*d + d - 1 of `np.random.Philox(seed)` (d dimensions), each turned
      into a float in [0, 1) from its top 53 bits. Reaching position i costs
      nothing (Philox is counter-based). This is *not* the rule of
      `Space.sample(sampler="random")`, which draws each dimension in turn from one
      generator, so its rows depend on n; the two give different values for the
      same seed, drawn from the same distributions.
    - "sobol", "halton": the scrambled sequence of `Space.sample` continued: the
      first n configurations are `Space.sample(n, sampler=..., seed=...)`
      (reproducible for a given scipy version).
    - "grid": the rows of `Space.sample(sampler="grid", points=...)` in order
      (grids larger than `MAX_CONFIGURATIONS` are refused, as there). The grid is
      finite: `ask(n)` gives at most `remaining` rows, like a file's `read(n)`, so
      an exhausted stream returns an empty table.

    `state_dict()` and `ConfigStream.from_state` checkpoint and resume a stream:
    the resumed stream continues with exactly the configurations the original
    would have given.

    Args:
      space: static; the `Space` to draw from.
      sampler: static; one of "random", "grid", "sobol", "halton".
      seed: static; a non-negative int. Unused by "grid".
      points: static; grid points per continuous or integer dimension, an int or a
        mapping name -> int (missing names get 5). Used only by "grid".
      position: static; how many configurations to skip, a non-negative int
        (at most the grid size for "grid").

    Example:
      >>> import jaxtune as jt
      >>> space = jt.Space(lr=jt.loguniform(1e-4, 1e-1), act=jt.choice(["relu", "tanh"]))
      >>> stream = space.stream(seed=0)
      >>> batch = stream.ask(4)
      >>> state = stream.state_dict()            # JSON-able; save it with the checkpoint
      >>> from jaxtune.space import ConfigStream
      >>> resumed = ConfigStream.from_state(space, state)
      >>> resumed.ask(2).to_dict() == stream.ask(2).to_dict()
      True
      >>> grid = space.stream(sampler="grid", points=2)
      >>> grid.remaining, len(grid.ask(3)), len(grid.ask(3)), grid.remaining
      (4, 3, 1, 0)
    """

    __slots__ = ("_grids", "_points", "_position", "_sampler", "_seed", "_space", "_total")

    def __init__(
        self,
        space: Space,
        *,
        sampler: str = "random",
        seed: int = 0,
        points: int | Mapping[str, int] = _DEFAULT_POINTS,
        position: int = 0,
    ) -> None:
        if not isinstance(space, Space):
            raise TypeError(
                f"`space` must be a Space, got {type(space).__name__}; build one with "
                "jaxtune.Space(name=dimension, ...)."
            )
        self._space = space
        self._sampler = _sampler_argument(sampler)
        counts = space._point_counts(points)
        self._seed = _seed_argument(seed)
        self._grids: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None
        self._total: int | None = None
        self._points: dict[str, int] | None = None
        if self._sampler == "grid":
            self._points = counts
            self._grids = space._grids(counts)
            self._total = math.prod(len(values) for values, _ in self._grids.values())
        self._position = self._position_argument(position)

    def _position_argument(self, position: Any) -> int:
        if not _is_integer(position):
            raise TypeError(
                f"`position` must be a non-negative integer, got {type(position).__name__} "
                f"{_show(position)}."
            )
        if position < 0:
            raise ValueError(f"`position` must be a non-negative integer, got position={position}.")
        if self._total is not None and position > self._total:
            raise ValueError(
                f"`position` must be at most the grid size {self._total}, got "
                f"position={position}; the grid has no configuration there (check the "
                "`points` the stream was built with)."
            )
        return int(position)

    @property
    def space(self) -> Space:
        return self._space

    @property
    def sampler(self) -> str:
        return self._sampler

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def position(self) -> int:
        """How many configurations the stream has handed out (or skipped) so far."""
        return self._position

    @property
    def remaining(self) -> int | None:
        """How many configurations are left: for "grid" an int, else None (unbounded)."""
        return None if self._total is None else self._total - self._position

    def ask(self, n: int) -> Table:
        """The next `n` configurations, and the stream moves past them.

        Args:
          n: static; a non-negative int, at most `MAX_CONFIGURATIONS` per call.

        Returns:
          A `Table` of `n` rows; for "grid", of min(n, remaining) rows (empty once
          the grid is exhausted).
        """
        if not _is_integer(n):
            raise TypeError(f"`n` must be a non-negative integer, got {type(n).__name__} "
                            f"{_show(n)}.")
        if n < 0:
            raise ValueError(f"`n` must be a non-negative integer, got n={int(n)}.")
        n = int(n)
        if self._total is not None:
            n = min(n, self._total - self._position)
        _check_count_limit("n", n, "ask in smaller batches.")
        table = self._rows(self._position, n)
        self._position += n
        return table

    def _rows(self, start: int, n: int) -> Table:
        space = self._space
        dims = space._dims
        columns: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray | None] = {}
        if self._grids is not None:
            sizes = [len(values) for values, _ in self._grids.values()]
            positions = np.unravel_index(np.arange(start, start + n), sizes) if sizes else ()
            for (name, (values, value_codes)), position in zip(self._grids.items(), positions):
                columns[name] = values[position]
                codes[name] = None if value_codes is None else value_codes[position]
            return Table._make(space, columns, codes, n)
        if not dims:
            return Table._make(space, columns, codes, n)
        d = len(dims)
        if self._sampler == "random":
            unit = _counter_unit(self._seed, start * d, n * d).reshape(n, d)
        elif n:
            unit = _quasi_random(self._sampler, d, n, self._seed, start)
        else:
            unit = np.empty((0, d))
        for j, (name, dim) in enumerate(dims.items()):
            columns[name], codes[name] = dim._map_unit(unit[:, j])
        return Table._make(space, columns, codes, n)

    def state_dict(self) -> dict[str, Any]:
        """The stream's state as JSON-able values, for `ConfigStream.from_state`.

        Returns:
          A new dict with "names" (the space's names, checked on resume),
          "sampler", "seed", "points" (name -> int for "grid", else None) and
          "position".
        """
        return {
            "names": list(self._space.names),
            "sampler": self._sampler,
            "seed": self._seed,
            "points": None if self._points is None else dict(self._points),
            "position": self._position,
        }

    @classmethod
    def from_state(cls, space: Space, state: Mapping[str, Any]) -> ConfigStream:
        """Resumes a stream from `state_dict()`: it continues exactly where that one was.

        Args:
          space: the same `Space` the saved stream drew from (its names are checked;
            changing a dimension's range changes the values the stream gives).
          state: a mapping as returned by `state_dict()` (e.g. after a JSON round trip).

        Returns:
          A new `ConfigStream` at the saved position.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"`state` must be a mapping from ConfigStream.state_dict(), got "
                f"{type(state).__name__} {_show(state)}."
            )
        missing = [key for key in _STATE_KEYS if key not in state]
        unknown = [key for key in state if key not in _STATE_KEYS]
        if missing or unknown:
            problems = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"has unknown {', '.join(map(repr, unknown))}"] if unknown else []
            )
            raise ValueError(
                f"`state` {' and '.join(problems)}; pass the dict ConfigStream.state_dict() "
                f"returned, with keys {', '.join(map(repr, _STATE_KEYS))}."
            )
        if isinstance(space, Space) and list(state["names"]) != list(space.names):
            raise ValueError(
                f"`state` was saved from a stream over {list(state['names'])!r}, but `space` "
                f"has {list(space.names)!r}; resume with the space the stream was built from."
            )
        points = state["points"]
        return cls(
            space,
            sampler=state["sampler"],
            seed=state["seed"],
            points=_DEFAULT_POINTS if points is None else points,
            position=state["position"],
        )

    def __repr__(self) -> str:
        return (
            f"ConfigStream(sampler={self._sampler!r}, seed={self._seed}, "
            f"position={self._position}, remaining={self.remaining})"
        )
