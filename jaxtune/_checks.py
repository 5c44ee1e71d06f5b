"""Validation helpers shared by every module.

Numeric hyperparameters may be tracers: every public schedule and transform must work
under `jit`/`vmap`/`grad` of any numeric argument, so a value is validated only when it
is concrete (a Python number or a concrete array) and passes unchecked when traced.
`concrete(x)` is the single place that decides what "concrete" means.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import numpy as np


def concrete(value: Any) -> np.ndarray | None:
    """Returns `value` as a NumPy array if it is known now, else None (a tracer)."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (numbers.Number, np.ndarray, np.generic, jax.Array)):
        return np.asarray(value)
    return None


def describe(value: Any) -> str:
    """A short rendering of a concrete value for an error message."""
    array = np.asarray(value)
    if array.ndim == 0:
        return repr(array.item())
    return np.array2string(array, threshold=8)


def check_numeric(name: str, value: Any) -> None:
    """Raises TypeError unless `value` is a number, an array or a tracer."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a number or an array, got the bool {value!r}.")
    if isinstance(value, (numbers.Number, np.ndarray, np.generic, jax.Array, jax.core.Tracer)):
        return
    raise TypeError(
        f"`{name}` must be a number or an array, got {type(value).__name__} {value!r}."
    )


def check_finite(name: str, value: Any, hint: str = "") -> None:
    """Raises ValueError if a concrete `value` has a NaN or an infinity."""
    check_numeric(name, value)
    array = concrete(value)
    if array is not None and not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got {name}={describe(array)}.{_hint(hint)}")


def check_nonnegative(name: str, value: Any, hint: str = "") -> None:
    """Raises ValueError if a concrete `value` is negative (or not finite)."""
    check_finite(name, value, hint)
    array = concrete(value)
    if array is not None and np.any(array < 0):
        raise ValueError(
            f"`{name}` must be non-negative, got {name}={describe(array)}.{_hint(hint)}"
        )


def check_positive(name: str, value: Any, hint: str = "") -> None:
    """Raises ValueError if a concrete `value` is not strictly positive."""
    check_finite(name, value, hint)
    array = concrete(value)
    if array is not None and np.any(array <= 0):
        raise ValueError(f"`{name}` must be positive, got {name}={describe(array)}.{_hint(hint)}")


def check_in_range(
    name: str, value: Any, low: float, high: float, *, closed_low: bool = True,
    closed_high: bool = True, hint: str = "",
) -> None:
    """Raises ValueError if a concrete `value` lies outside [low, high] (or open ends)."""
    check_finite(name, value, hint)
    array = concrete(value)
    if array is None:
        return
    below = array < low if closed_low else array <= low
    above = array > high if closed_high else array >= high
    if np.any(below) or np.any(above):
        interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"
        raise ValueError(
            f"`{name}` must lie in {interval}, got {name}={describe(array)}.{_hint(hint)}"
        )


def _hint(hint: str) -> str:
    return f" {hint}" if hint else ""


def positive_int(name: str, value: Any, hint: str = "") -> int:
    """`value` as an int; TypeError unless it is an integer, ValueError unless it is >= 1."""
    return _int(name, value, 1, "a positive integer", hint)


def nonnegative_int(name: str, value: Any, hint: str = "") -> int:
    """`value` as an int; TypeError unless it is an integer, ValueError unless it is >= 0."""
    return _int(name, value, 0, "a non-negative integer", hint)


def _int(name: str, value: Any, minimum: int, what: str, hint: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be {what}, got {type(value).__name__} {value!r}.{_hint(hint)}"
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be {what}, got {name}={int(value)}.{_hint(hint)}")
    return int(value)


def boolean(name: str, value: Any) -> bool:
    """`value` if it is a bool; TypeError otherwise (a string such as "no" is not False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def one_of(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    """`value` if it is one of `allowed`; ValueError naming the choices otherwise."""
    if not isinstance(value, str | int | float | type(None)) or value not in allowed:
        shown = ", ".join(map(repr, allowed))
        raise ValueError(f"`{name}` must be one of {shown}, got {name}={value!r}.")
    return value


def integer(name: str, value: Any, hint: str = "") -> int:
    """`value` as an int; TypeError unless it is an integer (of any sign; bools are not)."""
    return _int(name, value, -float("inf"), "an integer", hint)


def index(name: str, value: Any, size: int, what: str) -> int:
    """`value` as an int in 0..size-1, a position among `size` `what` (e.g. "members");
    TypeError unless it is an integer, ValueError unless it is in range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer index into the {size} {what}, got "
                        f"{type(value).__name__} {value!r}.")
    if not 0 <= value < size:
        raise ValueError(f"`{name}` must be one of the {size} {what} (0..{size - 1}), got "
                         f"{name}={int(value)}.")
    return int(value)


def real(name: str, value: Any) -> float:
    """`value` as a float; TypeError unless it is a finite real number (bools are not)."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)):
        raise TypeError(f"`{name}` must be a finite number, got {type(value).__name__} "
                        f"{value!r}.")
    return float(value)
