"""Dimensions: one hyperparameter's set of values, and the constructors that build them.

`uniform` and `loguniform` are float ranges, `randint` an integer range (static with
`static=True`), `choice` a list of options, `fixed` a single value and `Family` named
alternatives stored as int32 indices (`jaxtune.families.optimizer_choice`). A dimension draws
values (`Dimension.sample`), maps points of [0, 1] to values (`Dimension.from_unit`, what
every sampler of `jaxtune.space.samplers` goes through), spreads values for a grid
(`Dimension.grid`) and tells members from non-members (`Dimension.contains`). Dynamic
values are stored in float32 or int32 and judged in that precision; static values stay
Python values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxtune._checks import boolean, check_finite, check_in_range, integer, positive_int

from .values import (
    DEFAULT_POINTS,
    FLOAT32,
    FLOAT32_MAX,
    INT32,
    INT32_MAX,
    INT32_MIN,
    OBJECT,
    check_count_limit,
    is_integer,
    is_number,
    object_array,
    plain,
    readonly,
    same,
    show,
    to_float32,
)

__all__ = [
    "Choice",
    "Dimension",
    "Family",
    "Fixed",
    "LogUniform",
    "RandInt",
    "Uniform",
    "choice",
    "fixed",
    "loguniform",
    "randint",
    "uniform",
]


# ------------------------------------------------------------------------- arguments


def _real_argument(name: str, value: Any) -> float:
    """A finite real scalar argument that fits in float32, as a Python float."""
    if not is_number(value):
        raise TypeError(
            f"`{name}` must be a real number, got {type(value).__name__} {show(value)}."
        )
    check_finite(name, value)
    value = float(value)
    if abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"`{name}` must fit in float32 (magnitude at most {FLOAT32_MAX:.4g}), "
            f"got {name}={value!r}."
        )
    return value


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
        raise TypeError(f"`u` must be an array of numbers in [0, 1], got {show(u)}.") from error
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
        return [plain(v) for v in values.tolist()]
    if not isinstance(values, Sequence):
        raise TypeError(
            f"`values` must be a sequence (a list or a tuple), got "
            f"{type(values).__name__} {show(values)}."
        )
    return [plain(v) for v in values]


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
        n = positive_int("n", n)
        check_count_limit("n", n, "draw fewer values.")
        values, _ = self._draw(rng, n)
        return values

    def from_unit(self, u: Any) -> np.ndarray:
        """Maps points of the unit interval to values (the inverse CDF).

        Every sampler goes through it: evenly spread points in [0, 1) become
        evenly spread values. 1.0 is accepted and maps to the top of the range.

        Args:
          u: an array of numbers in [0, 1].

        Returns:
          An array of values, the shape of `u`, with dtype `self.dtype`.
        """
        u = _unit_argument(u)
        values, _ = self._map_unit(u.ravel())
        return values.reshape(u.shape)

    def grid(self, points: int = DEFAULT_POINTS) -> np.ndarray:
        """Evenly spread values for a grid search.

        Args:
          points: static; how many values for a continuous or integer range, a
            positive int (ignored by `choice` and `fixed`, which give all values).

        Returns:
          A 1-D array of distinct values with dtype `self.dtype`.
        """
        points = positive_int("points", points)
        check_count_limit("points", points, "use fewer points.", size=self._grid_bound(points))
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

    def _shown(self, column: np.ndarray) -> np.ndarray:
        """A column of stored values as tables and results show it (a `Family`: its names)."""
        return column

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
        return len(mine) == len(theirs) and all(same(a, b) for a, b in zip(mine, theirs))

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
    dtype = FLOAT32

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
        if not is_number(value):
            return None
        x = float(value)
        if not math.isfinite(x):
            return None
        x32 = to_float32(x)
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
    """Integers drawn uniformly from [low, high), `high` excluded. Build it with `randint`.

    Dynamic, values are int32 data; static, they are Python ints, each stored with its
    offset from `low` (its index among the integers), by which `Table.static_groups`
    groups rows.
    """

    __slots__ = ("dtype", "high", "low", "static")

    def __init__(self, low: int, high: int, *, static: bool = False) -> None:
        low = integer("low", low)
        high = integer("high", high)
        static = boolean("static", static)
        if not low < high:
            raise ValueError(
                f"`low` must be less than `high`, got low={low}, high={high}; `high` is "
                f"excluded, so randint({low}, {low + 1}) is the single value {low} "
                f"(or use fixed({low}))."
            )
        if low < INT32_MIN or high - 1 > INT32_MAX:
            raise ValueError(
                f"randint values must fit in int32 ([{INT32_MIN}, {INT32_MAX}]), got "
                f"low={low}, high={high}; narrow the range, or use a static choice."
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "static", static)
        object.__setattr__(self, "dtype", OBJECT if static else INT32)

    @property
    def _count(self) -> int:
        return self.high - self.low

    def _stored(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """int64 `values` as stored: int32 (dynamic), or Python ints with their offsets."""
        if not self.static:
            return values.astype(np.int32), None
        return object_array(values.tolist()), (values - self.low).astype(np.intp)

    def _draw(self, rng, n):
        return self._stored(rng.integers(self.low, self.high, size=n, dtype=np.int64))

    def _map_unit(self, u):
        offsets = np.minimum(np.floor(u * self._count), self._count - 1).astype(np.int64)
        return self._stored(self.low + offsets)

    def _grid(self, points):
        # More points than integers gives every integer once: build no more than that.
        spread = np.linspace(self.low, self.high - 1, min(points, self._count))
        return self._stored(np.unique(np.round(spread).astype(np.int64)))

    def contains(self, value: Any) -> bool:
        """Whether `value` is an integer (or integral float) in [low, high)."""
        return self._encode(value) is not None

    def _encode(self, value):
        if is_integer(value):
            x = int(value)
        elif is_number(value) and math.isfinite(float(value)) and float(value).is_integer():
            x = int(float(value))
        else:
            return None
        if not self.low <= x < self.high:
            return None
        return (x, x - self.low) if self.static else (np.int32(x), None)

    def _to_python(self, stored, code):
        return int(stored) if code is None else self.low + int(code)

    def _key(self):
        return (self.low, self.high, self.static)

    def _arguments(self):
        return (self.low, self.high), {"static": self.static}

    def __repr__(self) -> str:
        flag = ", static=True" if self.static else ""
        return f"randint({self.low}, {self.high}{flag})"


class _Discrete(Dimension):
    """A finite list of options; values are stored with their option index."""

    __slots__ = ("_array", "_options", "dtype", "static")

    def _setup(self, options: list[Any], static: bool | None, argument: str) -> None:
        numeric = all(is_number(v) for v in options)
        for i, v in enumerate(options):
            if is_number(v) and not math.isfinite(float(v)):
                where = argument if argument == "value" else f"{argument}[{i}]"
                raise ValueError(
                    f"`{where}` must be finite, got {v!r}; use a large finite number instead."
                )
        if static is None:
            static = not numeric
        elif not static and not numeric:
            i, v = next((i, v) for i, v in enumerate(options) if not is_number(v))
            where = argument if argument == "value" else f"{argument}[{i}]"
            raise ValueError(
                f"`static=False` needs numbers, but `{where}` is {type(v).__name__} {show(v)}; "
                "only int and float values can be dynamic. Leave static=None to make this "
                "dimension static."
            )
        if static:
            dtype = OBJECT
            array = object_array(options)
        elif all(is_integer(v) for v in options):
            dtype = INT32
            options = [int(v) for v in options]
            for i, v in enumerate(options):
                if not INT32_MIN <= v <= INT32_MAX:
                    where = argument if argument == "value" else f"{argument}[{i}]"
                    raise ValueError(
                        f"`{where}` must fit in int32 to be dynamic, got {v}; pass "
                        "static=True to keep it a Python int."
                    )
            array = np.asarray(options, dtype=np.int32)
        else:
            dtype = FLOAT32
            options = [float(v) for v in options]
            for i, v in enumerate(options):
                if abs(v) > FLOAT32_MAX:
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
        object.__setattr__(self, "_array", readonly(array))

    def _check_distinct(self, options: list[Any], array: np.ndarray, static: bool) -> None:
        for j in range(1, len(options)):
            for i in range(j):
                equal = same(options[i], options[j]) if static else array[i] == array[j]
                if equal:
                    raise ValueError(
                        f"`values` lists {show(options[i])} twice (values[{i}] and "
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
        value = plain(value)
        if self.static:
            return next((i for i, v in enumerate(self._options) if same(v, value)), None)
        if not is_number(value) or not math.isfinite(float(value)):
            return None
        if self.dtype == INT32:
            if not float(value).is_integer():
                return None
            stored: Any = int(value)
            if not INT32_MIN <= stored <= INT32_MAX:
                return None
        else:
            stored = to_float32(float(value))
        hits = np.flatnonzero(self._array == stored)
        return int(hits[0]) if hits.size else None

    def _encode(self, value):
        index = self._index(value)
        return None if index is None else (self._array[index], index)

    def _to_python(self, stored, code):
        return self._options[code]

    def _forced_static(self) -> bool:
        """Whether `static=True` was needed (the options alone would be dynamic)."""
        return self.static and all(is_number(v) for v in self._options)

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
        self._setup([plain(value)], static, "value")

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


class Family(Choice):
    """One of named alternatives, stored as its int32 index: a dynamic choice among non-numbers.

    `jaxtune.families.optimizer_choice` declares one (its `.dimension`): every member trains
    in one compiled program whatever its family, and its index selects the family's code
    inside the program (`lax.switch`). The index is what the program, a strategy's
    `Decision.hparams` and `SweepResult.hparam_history` see (0 for the first name, in the
    order given); tables, results and `OptunaSearch` (a categorical over the names) show
    the names, and configurations you list (`configs=`, `Space.table`) give names.

    Args:
      names: static; a non-empty list of distinct non-empty strings.
    """

    __slots__ = ()

    def __init__(self, names: Sequence[str]) -> None:
        options = _values_argument(names)
        if not options:
            raise ValueError("`names` must not be empty; name at least one alternative.")
        for i, name in enumerate(options):
            if not isinstance(name, str) or not name:
                raise TypeError(f"`names[{i}]` must be a non-empty str, got {show(name)}.")
        self._check_distinct(options, object_array(options), True)
        object.__setattr__(self, "static", False)
        object.__setattr__(self, "dtype", INT32)
        object.__setattr__(self, "_options", tuple(options))
        object.__setattr__(self, "_array", readonly(np.arange(len(options), dtype=np.int32)))

    @property
    def names(self) -> tuple[str, ...]:
        """The names, in the order given: name `i` is stored as the index `i`."""
        return self._options

    def _index(self, value: Any) -> int | None:
        # Names only: an index would be ambiguous in a table of values you list.
        value = plain(value)
        return self._options.index(value) if isinstance(value, str) and value in self._options \
            else None

    def _shown(self, column: np.ndarray) -> np.ndarray:
        return object_array([self._options[i] for i in column.tolist()])

    def _arguments(self):
        return (list(self._options),), {}

    def __repr__(self) -> str:
        return f"Family({list(self._options)!r})"


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


def randint(low: int, high: int, *, static: bool = False) -> RandInt:
    """Integers drawn uniformly from [low, high): **`high` is excluded**.

    Like `numpy.random.Generator.integers`, `jax.random.randint` and Ray Tune's
    `randint`: `randint(0, 500)` gives 0, 1, ..., 499. Stored as int32, or, with
    `static=True`, as Python ints that may set a shape (a layer width): the sweep then
    compiles one program per distinct value drawn, so a wide range costs nothing until
    it is drawn, but each distinct value drawn costs a compilation. A static randint
    draws the same values as a dynamic one for the same seed, and `OptunaSearch` asks
    both as `suggest_int(name, low, high - 1)`, keeping their order (a static `choice`
    of the same integers would be an unordered category).
    `grid(points)` gives evenly spread distinct integers from `low` to `high - 1`.

    Args:
      low: static; the smallest value, an int.
      high: static; one past the largest value, an int greater than `low`.
      static: static; False (int32 data in the compiled program, changing it never
        recompiles) or True (a Python int fixed at compile time, one compiled program
        per distinct value drawn).

    Returns:
      A `Dimension`, dynamic unless `static=True`.

    Example:
      >>> import jaxtune as jt
      >>> jt.randint(0, 5).grid(10)
      array([0, 1, 2, 3, 4], dtype=int32)
      >>> jt.randint(4, 129, static=True).grid(3)
      array([4, 66, 128], dtype=object)
    """
    return RandInt(low, high, static=static)


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
