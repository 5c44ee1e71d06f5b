"""Plain values: how the space package recognises, shows, compares and stores them.

Also the size limit every table, draw and grid is held to, `MAX_CONFIGURATIONS`
(re-exported as `jaxtune.space.MAX_CONFIGURATIONS`): every check of it is a function of
this module, so all of them read this one value.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The most configurations one table (or one `ConfigStream.ask`) may hold; larger
#: requests fail before anything is allocated. A row costs about 8 bytes per
#: dimension (a float32/int32 value, plus an option index for choices, plus float64
#: scratch while drawing), so 10 million rows of a 10-dimension space already take
#: ~1 GB; and a sweep of more configurations than this cannot be trained anyway (at
#: one second per configuration it is four months of one device). Without the check,
#: a 10-dimension grid of 10 points each tried to allocate 74.5 GiB.
MAX_CONFIGURATIONS = 10_000_000

FLOAT32 = np.dtype(np.float32)
INT32 = np.dtype(np.int32)
OBJECT = np.dtype(object)
FLOAT32_MAX = float(np.finfo(np.float32).max)
INT32_MIN = int(np.iinfo(np.int32).min)
INT32_MAX = int(np.iinfo(np.int32).max)

#: Grid points per continuous or integer dimension when `points` is not given.
DEFAULT_POINTS = 5


def is_number(value: Any) -> bool:
    """Ints and floats (Python or NumPy), never bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def plain(value: Any) -> Any:
    """A NumPy scalar as the matching Python value; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def show(value: Any, limit: int = 60) -> str:
    text = repr(plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_float32(value: float) -> np.float32:
    """Rounds to float32; values beyond its range become +-inf, quietly."""
    with np.errstate(over="ignore"):
        return np.float32(value)


def same(a: Any, b: Any) -> bool:
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


def object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array holding `values` as they are (tuples stay whole)."""
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


def readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _too_many() -> str:
    return (
        f"MAX_CONFIGURATIONS = {MAX_CONFIGURATIONS:,} (jaxtune.space.MAX_CONFIGURATIONS; "
        "no sweep trains that many configurations)"
    )


def check_count_limit(name: str, value: int, fix: str, *, size: int | None = None) -> None:
    """Refuses a count argument beyond MAX_CONFIGURATIONS, before anything is allocated.

    `size`, when given, is the number of rows `value` leads to (a grid's `points` may give
    fewer values than it asks for); it is what the limit is judged on.
    """
    if (value if size is None else size) > MAX_CONFIGURATIONS:
        raise ValueError(f"`{name}` must be at most {_too_many()}, got {name}={value:,}; {fix}")


def check_grid_size(described: str, count: int, fix: str) -> None:
    """Refuses a grid of `count` rows beyond MAX_CONFIGURATIONS, before it is built."""
    if count > MAX_CONFIGURATIONS:
        raise ValueError(f"{described} = {count:,} configurations, more than {_too_many()}; {fix}")

