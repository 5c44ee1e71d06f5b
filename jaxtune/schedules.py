"""Trace-safe schedules: optax's, under the same names, plus WSD, inverse-sqrt and cyclic.

A schedule maps a step `count` to a value (a learning rate, a weight decay, ...). The
contract, stated once:

* **Drop-in.** Every schedule optax 0.2.8 has keeps its name, argument names, order and
  defaults, and its values: with concrete arguments, `jaxtune.X(...)(count)` equals
  `optax.X(...)(count)` to float32 precision at every `count >= 0` (the deliberate
  departures are listed below).
* **Sweepable.** Every numeric argument -- values, rates, powers, exponents, step counts,
  offsets, boundaries, fractions, divisors -- may be a Python number, a concrete array or a
  tracer under `jit`/`vmap`/`grad`; `jit(vmap(lambda v: schedule(arg=v)(count)))(values)`
  equals the loop over the values, and changing a value passed as an array never
  recompiles. Only strings and booleans that choose a formula (`interpolate_type`,
  `decay_type`, `mode`, `staircase`) and the presence of `end_value` are static.
* **Validated when concrete.** A bad concrete value raises `ValueError` (a wrong kind,
  `TypeError`) at construction, naming the argument. Traced values cannot be checked;
  a traced step count, offset or boundary below 0 is treated as 0, the degenerate cases
  each docstring names follow the rule it states, and any other out-of-range traced
  value goes through the formula as given.
* `count` is a non-negative step number (an integer or float, scalar or array; the
  output broadcasts). Step-count arguments may be fractional. Outputs follow optax's
  dtypes (float32 for float inputs, unless x64 is enabled).
* **Beyond int32.** Counts, step counts, offsets and boundaries may exceed 2**31 (runs
  that count tokens, or very long runs), as Python ints or NumPy int64, eagerly and under
  `jit` -- where JAX would raise `OverflowError` on such a Python int and silently wrap a
  NumPy int64 to int32 (optax does both). Sums of concrete step arguments are taken on
  the host in int64, so they cannot wrap either. A concrete integer beyond int32 is
  carried as a float: float32 unless x64 is enabled, so such step numbers (and the float
  count they meet) resolve to 1 part in 2**24 -- a multiple of 1024 near 1e10 steps.
  Smooth schedules change by far less than float32 precision over such a span; a
  boundary may move by up to that much. Integers within int32 keep exact integer
  arithmetic, as before.

Departures from optax, all deliberate (optax logs and silently changes behaviour):

* `linear_schedule`/`polynomial_schedule` with `transition_steps=0` jump from `init_value`
  to `end_value` at `transition_begin` (the limit of ever shorter transitions) instead of
  holding `init_value` forever; so `warmup_constant_schedule(warmup_steps=0)` is "no
  warm-up" (`peak_value` from step 0), like the other warm-up schedules.
* A negative `transition_steps`/`transition_begin`/`warmup_steps`, and in
  `exponential_decay` a `transition_steps` or `decay_rate` that is not positive, raise
  `ValueError` (optax falls back to another schedule).
* `join_schedules` requires exactly one boundary fewer than schedules, non-negative and
  non-decreasing (optax silently ignores extras).
* `piecewise_*_schedule` also take `boundaries_and_scales=(boundaries, scales)` as two
  arrays, so boundaries can be swept; `piecewise_interpolate_schedule` accepts array counts.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    check_finite,
    check_in_range,
    check_nonnegative,
    check_positive,
    concrete,
    describe,
)

__all__ = [
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "cyclic_schedule",
    "exponential_decay",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "warmup_inverse_sqrt_schedule",
    "warmup_stable_decay_schedule",
]

ArrayLike = jax.typing.ArrayLike
Schedule = Callable[[ArrayLike], ArrayLike]

_CONSTANT_HINT = "Use `constant_schedule` for a fixed value."


# --------------------------------------------------------------------------- helpers


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    allowed = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(
            f"`{name}` must be a string, one of {allowed} (it is static), got "
            f"{type(value).__name__} {value!r}."
        )
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {allowed}, got {name}={value!r}.")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` must be a bool (it is static), got {type(value).__name__} {value!r}."
        )


def _check_less(low_name: str, low: Any, high_name: str, high: Any, hint: str,
                *, strict: bool) -> None:
    """Raises ValueError unless low < high (or <=) wherever both are concrete."""
    low_array, high_array = concrete(low), concrete(high)
    if low_array is None or high_array is None:
        return
    bad = low_array >= high_array if strict else low_array > high_array
    if np.any(bad):
        relation = "exceed" if strict else "be at least"
        raise ValueError(
            f"`{high_name}` must {relation} `{low_name}`, got {high_name}={describe(high_array)}"
            f" and {low_name}={describe(low_array)}. {hint}"
        )


def _int_limits() -> np.iinfo:
    """The integers JAX holds: int32, or int64 with x64 enabled (read at each call)."""
    return np.iinfo(jax.dtypes.canonicalize_dtype(np.int64))


def _steps(value: Any) -> Any:
    """A step count, offset, boundary or count in a form JAX can hold (module docstring).

    A concrete integer outside JAX's integer range (int32 unless x64 is enabled) becomes
    a float: JAX raises OverflowError for such a Python int (a weakly typed int32 constant
    under `jit`) and wraps such a NumPy int64 silently. Anything else passes as given.
    """
    if isinstance(value, (bool, np.bool_, jax.core.Tracer)):
        return value
    if isinstance(value, (numbers.Integral, np.ndarray)):
        array = np.asarray(value)
        if array.dtype.kind in "iuO" and array.size:
            limits = _int_limits()
            if array.dtype.kind == "O" or array.min() < limits.min or array.max() > limits.max:
                # A Python float stays weakly typed, like the Python int it replaces.
                return float(value) if array.ndim == 0 else array.astype(np.float64)
    return value


def _wide(value: np.ndarray) -> np.ndarray:
    """A concrete step value in int64 or float64, for host arithmetic that cannot wrap."""
    return value.astype(np.int64 if value.dtype.kind in "iub" else np.float64)


def _step_sum(a: Any, b: Any, sign: int = 1) -> Any:
    """`a + sign * b` for step values: exactly on the host when both are concrete.

    In JAX, two int32 step counts under 2**31 can sum past it and wrap around.
    """
    a_known, b_known = concrete(a), concrete(b)
    if a_known is None or b_known is None:
        return _steps(a) + sign * _steps(b)
    total = _wide(a_known) + sign * _wide(b_known)
    return _steps(total.item() if total.ndim == 0 else total)


def _clamp_steps(steps: ArrayLike) -> Any:
    """Treats a traced step count below 0 as 0; concrete ones were validated already."""
    if concrete(steps) is not None:
        return _steps(steps)
    return jnp.maximum(steps, 0)


def _as_float(count: ArrayLike) -> jax.Array:
    # As optax: float arithmetic on the count.
    return jnp.asarray(_steps(count), dtype=jnp.result_type(float))


def _vector(name: str, value: Any) -> tuple[jax.Array, np.ndarray | None]:
    """Reads a 1-D array or a sequence of scalars (each may be traced).

    Returns the vector and its NumPy copy when every entry is concrete (else None).
    Concrete entries are checked to be finite and non-negative.
    """
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_nonnegative(f"{name}[{i}]", item)
            if np.ndim(item) != 0:
                raise ValueError(
                    f"`{name}[{i}]` must be a scalar, got an array of shape "
                    f"{np.shape(item)}."
                )
        if not value:
            return jnp.zeros((0,), jnp.int32), np.zeros((0,), np.int32)
        parts = [concrete(item) for item in value]
        known = None if any(p is None for p in parts) else np.stack([_wide(p) for p in parts])
        return jnp.stack([jnp.asarray(_steps(item)) for item in value]), known
    if isinstance(value, (bool, np.bool_, numbers.Number)) or not isinstance(
        value, (np.ndarray, jax.Array, jax.core.Tracer)
    ):
        raise TypeError(
            f"`{name}` must be a 1-D array or a sequence of numbers, got "
            f"{type(value).__name__} {value!r}."
        )
    check_nonnegative(name, value)
    if np.ndim(value) != 1:
        raise ValueError(
            f"`{name}` must be one-dimensional, got an array of shape {np.shape(value)}; "
            "pass one entry per boundary."
        )
    return jnp.asarray(_steps(value)), concrete(value)


def _check_non_decreasing(name: str, known: np.ndarray | None) -> None:
    if known is not None and known.size > 1 and np.any(np.diff(known) < 0):
        raise ValueError(
            f"`{name}` must be non-decreasing, got {name}={describe(known)}; sort them."
        )


def _piecewise_entries(
    boundaries_and_scales: Any,
) -> tuple[jax.Array, jax.Array] | None:
    """Reads optax's `{boundary: scale}` dict or the `(boundaries, scales)` array form.

    Returns sorted (for the dict) boundaries and scales as vectors, or None when empty.
    """
    if boundaries_and_scales is None:
        return None
    if isinstance(boundaries_and_scales, Mapping):
        if not boundaries_and_scales:
            return None
        for key, scale in boundaries_and_scales.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Real):
                raise TypeError(
                    "`boundaries_and_scales` keys must be step numbers, got "
                    f"{type(key).__name__} {key!r}. To sweep boundaries, pass "
                    "`boundaries_and_scales=(boundaries, scales)` as two arrays."
                )
            if not np.isfinite(key) or key < 0:
                raise ValueError(
                    "`boundaries_and_scales` keys must be non-negative step numbers, got "
                    f"the key {key!r}."
                )
            check_nonnegative(
                f"boundaries_and_scales[{key!r}]", scale,
                "Each scale multiplies the value from its boundary on.",
            )
        items = sorted(boundaries_and_scales.items(), key=lambda item: item[0])
        boundaries = jnp.asarray(_steps(np.array([_wide(np.asarray(key)) for key, _ in items])))
        scales = jnp.stack([jnp.asarray(scale) for _, scale in items])
        return boundaries, scales
    if isinstance(boundaries_and_scales, tuple) and len(boundaries_and_scales) == 2:
        boundaries, known = _vector("boundaries_and_scales[0]", boundaries_and_scales[0])
        _check_non_decreasing("boundaries_and_scales[0]", known)
        scales, _ = _vector("boundaries_and_scales[1]", boundaries_and_scales[1])
        if boundaries.shape[0] != scales.shape[0]:
            raise ValueError(
                "`boundaries_and_scales` must hold as many boundaries as scales, got "
                f"{boundaries.shape[0]} boundaries and {scales.shape[0]} scales."
            )
        if boundaries.shape[0] == 0:
            return None
        return boundaries, scales
    raise TypeError(
        "`boundaries_and_scales` must be a dict `{step: scale}`, a tuple "
        f"`(boundaries, scales)` of two 1-D arrays, or None; got "
        f"{type(boundaries_and_scales).__name__} {boundaries_and_scales!r}."
    )


# ------------------------------------------------------------------------ formulas
# Unvalidated cores, shared by the public schedules (which validate with their own
# argument names).


def _power(base, exponent):
    """`base ** exponent` for base >= 0, with finite gradients where base is 0."""
    positive = base > 0
    at_zero = jnp.power(jnp.zeros_like(base), exponent)  # in array precision, like optax
    return jnp.where(positive, jnp.where(positive, base, 1.0) ** exponent, at_zero)


def _polynomial(init_value, end_value, power, transition_steps, transition_begin):
    steps = _clamp_steps(transition_steps)
    begin = _clamp_steps(transition_begin)

    def schedule(count):
        count = _steps(count)
        has_steps = steps > 0
        clipped = jnp.clip(count - begin, 0, steps)
        # (T - c) / T rather than optax's 1 - c / T: exactly 0 at the end even when the
        # compiler divides by multiplying with 1 / T (a small power would magnify the error).
        frac = (steps - clipped) / jnp.where(has_steps, steps, 1)
        # No transition steps: the value jumps to end_value at transition_begin.
        frac = jnp.where(has_steps, frac, jnp.where(count >= begin, 0.0, 1.0))
        return (init_value - end_value) * _power(frac, power) + end_value

    return schedule


def _cosine(init_value, decay_steps, alpha, exponent):
    decay_steps = _steps(decay_steps)

    def schedule(count):
        count = _as_float(count)
        has_steps = decay_steps > 0
        steps = jnp.where(has_steps, decay_steps, 1.0)
        clipped = jnp.minimum(count, steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * clipped / steps))
        # No decay steps: init_value at count 0, then the floor alpha * init_value.
        cosine = jnp.where(has_steps, cosine, jnp.where(count > 0, 0.0, 1.0))
        return init_value * ((1 - alpha) * _power(cosine, exponent) + alpha)

    return schedule


def _exponential(init_value, transition_steps, decay_rate, transition_begin, staircase,
                 end_value):
    begin = _clamp_steps(transition_begin)
    transition_steps = _steps(transition_steps)

    def schedule(count):
        count = _steps(count)
        valid = jnp.logical_and(transition_steps > 0, decay_rate > 0)
        decreased = count - begin
        p = decreased / jnp.where(transition_steps > 0, transition_steps, 1)
        if staircase:
            p = jnp.floor(p)
        # Before transition_begin the value is init_value; a zero exponent there keeps
        # the unused branch (and its gradient) finite.
        p = jnp.where(decreased <= 0, 0, p)
        rate = jnp.where(valid, decay_rate, 1.0)
        decayed = jnp.where(decreased <= 0, init_value, init_value * jnp.power(rate, p))
        if end_value is not None:
            decayed = jnp.where(
                decay_rate < 1.0,
                jnp.maximum(decayed, end_value),
                jnp.minimum(decayed, end_value),
            )
        return jnp.where(valid, decayed, init_value)

    return schedule


def _join(schedules, boundaries):
    boundaries = [_steps(boundary) for boundary in boundaries]

    def schedule(step):
        step = _steps(step)
        output = schedules[0](step)
        for boundary, later in zip(boundaries, schedules[1:]):
            output = jnp.where(step < boundary, output, later(step - boundary))
        return output

    return schedule


def _linear_interpolate(start, end, pct):
    return (end - start) * pct + start


def _cosine_interpolate(start, end, pct):
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)


def _interpolate(interpolate_type, init_value, entries):
    """Piecewise interpolation between the running products of the scales."""
    interpolate_fn = _linear_interpolate if interpolate_type == "linear" else _cosine_interpolate
    if entries is None:
        boundaries = jnp.zeros((0,), jnp.int32)
        scales = jnp.zeros((0,), jnp.result_type(init_value))
    else:
        boundaries, scales = entries
        # Traced boundaries cannot be checked for order: sort them (a no-op when sorted).
        order = jnp.argsort(boundaries, stable=True)
        boundaries, scales = _clamp_steps(boundaries[order]), scales[order]
    bounds = jnp.concatenate([jnp.zeros((1,), boundaries.dtype), boundaries])
    values = jnp.cumprod(jnp.concatenate([jnp.reshape(init_value, (1,)), scales]))
    interval_sizes = jnp.maximum(bounds[1:] - bounds[:-1], 1)

    def schedule(count):
        count = jnp.asarray(_steps(count))[..., None]
        inside = jnp.logical_and(bounds[:-1] <= count, count < bounds[1:])
        pct = (count - bounds[:-1]) / interval_sizes
        interpolated = interpolate_fn(values[:-1], values[1:], pct)
        within = jnp.sum(jnp.where(inside, interpolated, 0), axis=-1)
        return within + jnp.where(bounds[-1] <= count[..., 0], values[-1], 0)

    return schedule


def _truncated_product(fraction, steps):
    """`int(fraction * steps)`, as optax computes it (in float64) when both are known."""
    fraction_array, steps_array = concrete(fraction), concrete(steps)
    if fraction_array is not None and steps_array is not None:
        return np.trunc(fraction_array.astype(np.float64) * steps_array.astype(np.float64))
    return jnp.trunc(fraction * _steps(steps))


def _last_key_wins(boundaries, scales):
    """Mimics building optax's dict: a later entry on the same boundary replaces earlier ones.

    A replaced entry becomes a no-op knot: scale 1 at step 0, ahead of every segment.
    """
    count = len(boundaries)
    kept_boundaries, kept_scales = [], []
    for i in range(count):
        replaced = False
        for j in range(i + 1, count):
            replaced = jnp.logical_or(replaced, boundaries[j] == boundaries[i])
        kept_boundaries.append(jnp.where(replaced, 0, boundaries[i]))
        kept_scales.append(jnp.where(replaced, 1.0, scales[i]))
    return jnp.stack(kept_boundaries), jnp.stack(kept_scales)


# ---------------------------------------------------------------- optax's schedules


def constant_schedule(value: ArrayLike) -> Schedule:
    """A schedule that holds `value` at every step.

    Args:
      value: the value returned at every step. *Sweepable*.

    Returns:
      A function that maps a step count to `value` (returned as given, like optax).

    Example:
      >>> import jaxtune as jt
      >>> jt.constant_schedule(0.1)(1_000)
      0.1
    """
    check_finite("value", value)
    return lambda count: value


def polynomial_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: ArrayLike,
    transition_begin: ArrayLike = 0,
) -> Schedule:
    r"""A polynomial transition from `init_value` to `end_value`.

    .. math::
      v(t) = (I - E) \left(1 - \frac{\min(\max(t - B, 0), T)}{T}\right)^P + E

    with :math:`I` = `init_value`, :math:`E` = `end_value`, :math:`P` = `power`,
    :math:`T` = `transition_steps`, :math:`B` = `transition_begin`: `init_value` until
    step `B`, `end_value` from step `B + T` on.

    Args:
      init_value: value before and at `transition_begin`. *Sweepable*.
      end_value: value from `transition_begin + transition_steps` on. *Sweepable*.
      power: exponent of the polynomial, >= 0 (1 is linear). *Sweepable*.
      transition_steps: length of the transition, >= 0. With 0 the value jumps from
        `init_value` to `end_value` at `transition_begin` (optax instead holds
        `init_value` forever). *Sweepable*; a traced negative value counts as 0.
      transition_begin: steps to hold `init_value` before the transition, >= 0 (optax
        treats a negative value as 0; jaxtune raises). *Sweepable*; a traced negative
        value counts as 0.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete `power`, `transition_steps` or `transition_begin` below 0,
        or a value that is not finite.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
      >>> print(f"{schedule(5):.2f}")
      0.25
    """
    check_finite("init_value", init_value)
    check_finite("end_value", end_value)
    check_nonnegative("power", power, "A negative power makes the end value infinite.")
    check_nonnegative("transition_steps", transition_steps, _CONSTANT_HINT)
    check_nonnegative("transition_begin", transition_begin)
    return _polynomial(init_value, end_value, power, transition_steps, transition_begin)


def linear_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    transition_steps: ArrayLike,
    transition_begin: ArrayLike = 0,
) -> Schedule:
    r"""A linear transition from `init_value` to `end_value`.

    .. math::
      v(t) = I + \frac{\min(\max(t - B, 0), T)}{T} (E - I)

    with :math:`I` = `init_value`, :math:`E` = `end_value`, :math:`T` =
    `transition_steps`, :math:`B` = `transition_begin`. This is
    `polynomial_schedule` with `power=1`.

    Args:
      init_value: value before and at `transition_begin`. *Sweepable*.
      end_value: value from `transition_begin + transition_steps` on. *Sweepable*.
      transition_steps: length of the transition, >= 0. With 0 the value jumps from
        `init_value` to `end_value` at `transition_begin` (optax instead holds
        `init_value` forever). *Sweepable*; a traced negative value counts as 0.
      transition_begin: steps to hold `init_value` first, >= 0. *Sweepable*; a traced
        negative value counts as 0.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete `transition_steps` or `transition_begin` below 0, or a value
        that is not finite.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.linear_schedule(1.0, 0.01, transition_steps=100)
      >>> print(f"{schedule(50):.3f} {schedule(1_000):.3f}")
      0.505 0.010
    """
    check_finite("init_value", init_value)
    check_finite("end_value", end_value)
    check_nonnegative("transition_steps", transition_steps, _CONSTANT_HINT)
    check_nonnegative("transition_begin", transition_begin)
    return _polynomial(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(
    init_value: ArrayLike,
    boundaries_and_scales: Mapping[Any, ArrayLike] | tuple[Any, Any] | None = None,
) -> Schedule:
    r"""`init_value` times the product of the scales whose boundary has been reached.

    .. math::
      v(t) = I \prod_{i:\, t \ge b_i} s_i

    Args:
      init_value: the value before the first boundary. *Sweepable*.
      boundaries_and_scales: the boundaries :math:`b_i` and scales :math:`s_i`, either
        as optax's dict `{step: scale}` (steps are static, scales *sweepable*), or as a
        tuple `(boundaries, scales)` of two equal-length 1-D arrays or sequences of
        scalars, both *sweepable* (the way to sweep boundaries). Boundaries are
        non-negative and, in the tuple form, non-decreasing (a repeated boundary applies
        both scales); scales are non-negative. `None` or empty gives a constant schedule.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete negative scale or boundary, unsorted boundaries in the tuple
        form, or boundaries and scales of different lengths.
      TypeError: `boundaries_and_scales` of another kind, or dict keys that are not
        numbers.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.1})
      >>> print(f"{schedule(50):.3f} {schedule(150):.3f} {schedule(250):.3f}")
      1.000 0.100 0.010
      >>> swept = jt.piecewise_constant_schedule(1.0, ([100, 200], [0.1, 0.1]))
      >>> print(f"{swept(250):.3f}")
      0.010
    """
    check_finite("init_value", init_value)
    entries = _piecewise_entries(boundaries_and_scales)
    if entries is None:
        return lambda count: init_value
    boundaries, scales = entries

    def schedule(count):
        count = _steps(count)
        value = init_value
        for i in range(boundaries.shape[0]):
            value = jnp.where(count >= boundaries[i], value * scales[i], value)
        return value

    return schedule


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: ArrayLike,
    boundaries_and_scales: Mapping[Any, ArrayLike] | tuple[Any, Any] | None = None,
) -> Schedule:
    r"""Linear or cosine interpolation between the accumulated scaled values.

    With sorted boundaries :math:`0 = b_0 \le b_1 \le \dots \le b_n` and knot values
    :math:`v_k = I \prod_{i \le k} s_i` (:math:`v_0 = I`), the value interpolates from
    :math:`v_{k-1}` to :math:`v_k` on :math:`[b_{k-1}, b_k)` and holds :math:`v_n` from
    :math:`b_n` on.

    Args:
      interpolate_type: `'linear'` or `'cosine'`. *Static*.
      init_value: the value at step 0. *Sweepable*.
      boundaries_and_scales: as in `piecewise_constant_schedule`: optax's dict
        `{step: scale}` (scales *sweepable*), or a tuple `(boundaries, scales)` of two
        1-D arrays, both *sweepable*. Traced boundaries are sorted (and a negative one
        counts as 0); concrete ones must be non-negative and non-decreasing.

    Returns:
      A function that maps step counts (scalars or arrays) to values.

    Raises:
      ValueError: a wrong `interpolate_type`, or bad boundaries or scales (see
        `piecewise_constant_schedule`).
      TypeError: an `interpolate_type` that is not a string, or `boundaries_and_scales`
        of another kind.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 8: 0.01})
      >>> print(f"{schedule(2):.4f} {schedule(6):.4f} {schedule(10):.4f}")
      0.5500 0.0505 0.0010
    """
    _check_choice("interpolate_type", interpolate_type, ("linear", "cosine"))
    check_finite("init_value", init_value)
    return _interpolate(interpolate_type, init_value, _piecewise_entries(boundaries_and_scales))


def exponential_decay(
    init_value: ArrayLike,
    transition_steps: ArrayLike,
    decay_rate: ArrayLike,
    transition_begin: ArrayLike = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    r"""Continuous or staircase exponential decay.

    .. math::
      v(t) = I \cdot r^{p(t)}, \quad p(t) = \frac{t - B}{T}
      \ (\lfloor p \rfloor \text{ with staircase}), \quad v(t) = I \text{ for } t \le B

    with :math:`I` = `init_value`, :math:`r` = `decay_rate`, :math:`T` =
    `transition_steps`, :math:`B` = `transition_begin`; clipped below at `end_value`
    when :math:`r < 1` and above when :math:`r \ge 1`.

    Args:
      init_value: the value until `transition_begin`. *Sweepable*.
      transition_steps: steps per factor of `decay_rate`, > 0 (optax turns a value <= 0
        into a constant schedule; jaxtune raises). *Sweepable*; a traced value <= 0
        gives the constant `init_value`, as in optax.
      decay_rate: the factor per `transition_steps`, > 0 (< 1 decays, > 1 grows).
        *Sweepable*; a traced value <= 0 gives the constant `init_value`, as in optax.
      transition_begin: steps to hold `init_value` first, >= 0. *Sweepable*; a traced
        negative value counts as 0.
      staircase: decay in discrete steps every `transition_steps`. *Static*.
      end_value: bound of the decay (lower when `decay_rate < 1`, else upper), or None
        for no bound. *Sweepable* (None-ness is static).

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete `transition_steps` or `decay_rate` <= 0, a negative
        `transition_begin`, or a value that is not finite.
      TypeError: `staircase` not a bool.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)
      >>> print(f"{schedule(20):.3f}")
      0.250
    """
    check_finite("init_value", init_value)
    check_positive("transition_steps", transition_steps, _CONSTANT_HINT)
    check_positive("decay_rate", decay_rate, _CONSTANT_HINT)
    check_nonnegative("transition_begin", transition_begin)
    _check_bool("staircase", staircase)
    if end_value is not None:
        check_finite("end_value", end_value, "Pass `end_value=None` for no bound.")
    return _exponential(init_value, transition_steps, decay_rate, transition_begin,
                        staircase, end_value)


def cosine_decay_schedule(
    init_value: ArrayLike,
    decay_steps: ArrayLike,
    alpha: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    r"""Cosine decay from `init_value` to `alpha * init_value` over `decay_steps`.

    .. math::
      v(t) = I \left[(1 - \alpha) \left(\tfrac12 \left(1 + \cos \tfrac{\pi \min(t, T)}{T}
      \right)\right)^p + \alpha\right]

    with :math:`I` = `init_value`, :math:`T` = `decay_steps`, :math:`\alpha` = `alpha`,
    :math:`p` = `exponent`.

    Args:
      init_value: the value at step 0. *Sweepable*.
      decay_steps: length of the decay, > 0. *Sweepable*; a traced value <= 0 gives
        `init_value` at step 0 and `alpha * init_value` after (the limit of ever shorter
        decays).
      alpha: the final value as a fraction of `init_value`. *Sweepable*.
      exponent: power applied to the cosine factor, >= 0. *Sweepable*.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete `decay_steps` <= 0, a negative `exponent`, or a value that
        is not finite.

    References:
      Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
      <https://arxiv.org/abs/1608.03983>`_, 2017.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.cosine_decay_schedule(1.0, decay_steps=100, alpha=0.1)
      >>> print(f"{schedule(50):.3f} {schedule(500):.3f}")
      0.550 0.100
    """
    check_finite("init_value", init_value)
    check_positive("decay_steps", decay_steps, _CONSTANT_HINT)
    check_finite("alpha", alpha)
    check_nonnegative("exponent", exponent, "A negative exponent makes the end value infinite.")
    return _cosine(init_value, decay_steps, alpha, exponent)


def warmup_constant_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
) -> Schedule:
    """Linear warm-up from `init_value` to `peak_value`, then `peak_value` for good.

    Args:
      init_value: the value at step 0. *Sweepable*.
      peak_value: the value from step `warmup_steps` on. *Sweepable*.
      warmup_steps: length of the warm-up, >= 0; 0 means no warm-up (`peak_value` from
        step 0; optax instead holds `init_value` forever). *Sweepable*; a traced
        negative value counts as 0.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete negative `warmup_steps`, or a value that is not finite.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.warmup_constant_schedule(0.0, 1.0, warmup_steps=10)
      >>> print(f"{schedule(5):.2f} {schedule(100):.2f}")
      0.50 1.00
    """
    check_finite("init_value", init_value)
    check_finite("peak_value", peak_value)
    check_nonnegative("warmup_steps", warmup_steps)
    return _polynomial(init_value, peak_value, 1, warmup_steps, 0)


def warmup_cosine_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
    decay_steps: ArrayLike,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    r"""Linear warm-up to `peak_value`, then cosine decay to `end_value`.

    The warm-up goes from `init_value` to `peak_value` over `warmup_steps`; the cosine
    decay (see `cosine_decay_schedule`, with :math:`\alpha` = `end_value / peak_value`,
    or 0 when `peak_value` is 0) runs from `warmup_steps` to `decay_steps` -- which,
    as in optax, counts the whole schedule, warm-up included.

    Args:
      init_value: the value at step 0. *Sweepable*.
      peak_value: the value at the end of the warm-up. *Sweepable*.
      warmup_steps: length of the warm-up, >= 0 (0: no warm-up). *Sweepable*; a traced
        negative value counts as 0.
      decay_steps: total length, warm-up included; must exceed `warmup_steps`.
        *Sweepable*; a traced value <= `warmup_steps` gives `peak_value` at
        `warmup_steps` and `end_value` after.
      end_value: the value from step `decay_steps` on. *Sweepable*.
      exponent: power applied to the cosine factor, >= 0. *Sweepable*.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete negative `warmup_steps`, a `decay_steps` that does not
        exceed it, a negative `exponent`, or a value that is not finite.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, end_value=0.1)
      >>> print(f"{schedule(5):.2f} {schedule(10):.2f} {schedule(60):.2f} {schedule(999):.2f}")
      0.50 1.00 0.55 0.10
    """
    check_finite("init_value", init_value)
    check_finite("peak_value", peak_value)
    check_nonnegative("warmup_steps", warmup_steps)
    check_finite("decay_steps", decay_steps)
    _check_less(
        "warmup_steps", warmup_steps, "decay_steps", decay_steps,
        "`decay_steps` is the total length, warm-up included: use "
        "decay_steps = warmup_steps + the number of decay steps.",
        strict=True,
    )
    check_finite("end_value", end_value)
    check_nonnegative("exponent", exponent, "A negative exponent makes the end value infinite.")
    warmup_steps = _clamp_steps(warmup_steps)
    peak_is_zero = peak_value == 0
    alpha = jnp.where(peak_is_zero, 0.0, end_value / jnp.where(peak_is_zero, 1.0, peak_value))
    return _join(
        [
            _polynomial(init_value, peak_value, 1, warmup_steps, 0),
            _cosine(peak_value, _step_sum(decay_steps, warmup_steps, -1), alpha, exponent),
        ],
        [warmup_steps],
    )


def warmup_exponential_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
    transition_steps: ArrayLike,
    decay_rate: ArrayLike,
    transition_begin: ArrayLike = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    """Linear warm-up to `peak_value`, then `exponential_decay` from `peak_value`.

    The decay's own step count starts at `warmup_steps`; `transition_begin` delays it
    further.

    Args:
      init_value: the value at step 0. *Sweepable*.
      peak_value: the value at the end of the warm-up. *Sweepable*.
      warmup_steps: length of the warm-up, >= 0 (0: no warm-up). *Sweepable*; a traced
        negative value counts as 0.
      transition_steps: steps per factor of `decay_rate`, > 0. *Sweepable*; a traced
        value <= 0 holds `peak_value` after the warm-up.
      decay_rate: the factor per `transition_steps`, > 0. *Sweepable*; a traced value
        <= 0 holds `peak_value` after the warm-up.
      transition_begin: steps to hold `peak_value` after the warm-up, >= 0.
        *Sweepable*; a traced negative value counts as 0.
      staircase: decay in discrete steps. *Static*.
      end_value: bound of the decay, or None. *Sweepable* (None-ness is static).

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete negative step count, a `transition_steps` or `decay_rate`
        <= 0, or a value that is not finite.
      TypeError: `staircase` not a bool.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.warmup_exponential_decay_schedule(0.0, 1.0, 10, 10, 0.5)
      >>> print(f"{schedule(5):.2f} {schedule(10):.2f} {schedule(30):.2f}")
      0.50 1.00 0.25
    """
    check_finite("init_value", init_value)
    check_finite("peak_value", peak_value)
    check_nonnegative("warmup_steps", warmup_steps)
    check_positive("transition_steps", transition_steps, "Use `warmup_constant_schedule`.")
    check_positive("decay_rate", decay_rate, "Use `warmup_constant_schedule`.")
    check_nonnegative("transition_begin", transition_begin)
    _check_bool("staircase", staircase)
    if end_value is not None:
        check_finite("end_value", end_value, "Pass `end_value=None` for no bound.")
    warmup_steps = _clamp_steps(warmup_steps)
    return _join(
        [
            _polynomial(init_value, peak_value, 1, warmup_steps, 0),
            _exponential(peak_value, transition_steps, decay_rate, transition_begin,
                         staircase, end_value),
        ],
        [warmup_steps],
    )


def _check_onecycle(transition_steps, peak_value, pct_start, div_factor, final_div_factor):
    check_positive("transition_steps", transition_steps, _CONSTANT_HINT)
    check_finite("peak_value", peak_value)
    check_in_range("pct_start", pct_start, 0.0, 1.0,
                   hint="It is the fraction of `transition_steps` spent warming up.")
    check_positive("div_factor", div_factor,
                   "The initial value is `peak_value / div_factor`; 25 is usual.")
    check_positive("final_div_factor", final_div_factor,
                   "The final value is `peak_value / (div_factor * final_div_factor)`.")


def _onecycle(interpolate_type, transition_steps, peak_value, div_factor, final_div_factor,
              boundaries, scales):
    """A one-cycle schedule from its phase boundaries and the scale applied at each."""
    boundaries, scales = _last_key_wins([_steps(b) for b in boundaries], scales)
    cycle = _interpolate(interpolate_type, peak_value / div_factor, (boundaries, scales))
    final_value = peak_value / (div_factor * final_div_factor)
    return lambda count: jnp.where(transition_steps > 0, cycle(count), final_value)


def linear_onecycle_schedule(
    transition_steps: ArrayLike,
    peak_value: ArrayLike,
    pct_start: ArrayLike = 0.3,
    pct_final: ArrayLike = 0.85,
    div_factor: ArrayLike = 25.0,
    final_div_factor: ArrayLike = 1e4,
) -> Schedule:
    """One cycle with three linear phases (Smith's 1cycle policy).

    With :math:`T` = `transition_steps`, the value rises from `peak_value / div_factor`
    to `peak_value` over steps `[0, int(pct_start * T))`, falls back to
    `peak_value / div_factor` until `int(pct_final * T)`, then falls to
    `peak_value / (div_factor * final_div_factor)` at `T`, and holds it. As in optax,
    when two phase boundaries fall on the same step the later phase's target replaces
    the earlier one's.

    Args:
      transition_steps: length of the cycle, > 0. *Sweepable*; a traced value <= 0
        gives the final value at every step.
      peak_value: the maximum, reached at `int(pct_start * T)`. *Sweepable*.
      pct_start: fraction of the cycle spent rising, in [0, 1]. *Sweepable*.
      pct_final: fraction of the cycle at which the second phase ends, in
        [`pct_start`, 1]. *Sweepable*.
      div_factor: the initial value is `peak_value / div_factor`, > 0. *Sweepable*.
      final_div_factor: the final value is the initial one divided by it, > 0.
        *Sweepable*.

    Traced fractions give boundaries `trunc(pct * T)` computed in the default float
    precision, which can differ by one step from optax's float64 `int(pct * T)` when the
    product lies within float32 rounding of an integer (e.g. 0.29 * 100).

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete `transition_steps`, `div_factor` or `final_div_factor`
        <= 0, or a fraction outside [0, 1] or `pct_final < pct_start`.

    References:
      Smith & Topin, `Super-Convergence: Very Fast Training of Neural Networks Using
      Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2017.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.linear_onecycle_schedule(100, 1.0)
      >>> print(f"{schedule(0):.2f} {schedule(30):.2f} {schedule(85):.2f}")
      0.04 1.00 0.04
    """
    _check_onecycle(transition_steps, peak_value, pct_start, div_factor, final_div_factor)
    check_in_range("pct_final", pct_final, 0.0, 1.0,
                   hint="It is the fraction of `transition_steps` at which phase 2 ends.")
    _check_less("pct_start", pct_start, "pct_final", pct_final,
                "Phase 2 (decreasing) must come after phase 1 (increasing).", strict=False)
    return _onecycle(
        "linear", transition_steps, peak_value, div_factor, final_div_factor,
        [_truncated_product(pct_start, transition_steps),
         _truncated_product(pct_final, transition_steps), _clamp_steps(transition_steps)],
        [div_factor, 1.0 / div_factor, 1.0 / final_div_factor],
    )


def cosine_onecycle_schedule(
    transition_steps: ArrayLike,
    peak_value: ArrayLike,
    pct_start: ArrayLike = 0.3,
    div_factor: ArrayLike = 25.0,
    final_div_factor: ArrayLike = 1e4,
) -> Schedule:
    """One cycle with two cosine phases (Smith's 1cycle policy, fastai's form).

    With :math:`T` = `transition_steps`, the value rises along a half cosine from
    `peak_value / div_factor` to `peak_value` over `[0, int(pct_start * T))`, then falls
    to `peak_value / (div_factor * final_div_factor)` at `int(T)` and holds it. As in
    optax, if both boundaries fall on the same step the second phase's target replaces
    the first's.

    Args:
      transition_steps: length of the cycle, > 0. *Sweepable*; a traced value <= 0
        gives the final value at every step.
      peak_value: the maximum, reached at `int(pct_start * T)`. *Sweepable*.
      pct_start: fraction of the cycle spent rising, in [0, 1]. *Sweepable* (see
        `linear_onecycle_schedule` on float precision).
      div_factor: the initial value is `peak_value / div_factor`, > 0. *Sweepable*.
      final_div_factor: the final value is the initial one divided by it, > 0.
        *Sweepable*.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete `transition_steps`, `div_factor` or `final_div_factor`
        <= 0, or `pct_start` outside [0, 1].

    References:
      Smith & Topin, `Super-Convergence: Very Fast Training of Neural Networks Using
      Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2017.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.cosine_onecycle_schedule(100, 1.0)
      >>> print(f"{schedule(0):.2f} {schedule(30):.2f} {schedule(65):.2f}")
      0.04 1.00 0.50
    """
    _check_onecycle(transition_steps, peak_value, pct_start, div_factor, final_div_factor)
    return _onecycle(
        "cosine", transition_steps, peak_value, div_factor, final_div_factor,
        [_truncated_product(pct_start, transition_steps),
         _truncated_product(1, transition_steps)],
        [div_factor, 1.0 / (div_factor * final_div_factor)],
    )


def join_schedules(schedules: Sequence[Schedule], boundaries: Any) -> Schedule:
    """Runs `schedules` one after the other, switching at `boundaries`.

    From step `boundaries[i - 1]` on, the value is `schedules[i](count - boundaries[i - 1])`:
    each schedule sees the steps since its own start.

    Args:
      schedules: the schedules (callables), in order. *Static*.
      boundaries: one step per switch, `len(schedules) - 1` of them, non-negative and
        non-decreasing; a 1-D array or a sequence of scalars. *Sweepable* (traced
        boundaries are used as given, in order).

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: no schedules, a number of boundaries other than `len(schedules) - 1`
        (optax silently ignores extras), or concrete boundaries that are negative or
        decreasing.
      TypeError: a schedule that is not callable, or boundaries of another kind.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.join_schedules(
      ...     [jt.constant_schedule(1.0), jt.linear_schedule(1.0, 0.0, 10)], [5])
      >>> print(f"{schedule(4):.2f} {schedule(10):.2f}")
      1.00 0.50
    """
    if isinstance(schedules, (str, Mapping)) or not isinstance(schedules, Iterable):
        raise TypeError(
            f"`schedules` must be a sequence of schedules, got {type(schedules).__name__}."
        )
    schedules = list(schedules)
    if not schedules:
        raise ValueError("`schedules` must hold at least one schedule, got an empty sequence.")
    for i, schedule in enumerate(schedules):
        if not callable(schedule):
            raise TypeError(
                f"`schedules[{i}]` must be a schedule (a callable count -> value), got "
                f"{type(schedule).__name__} {schedule!r}."
            )
    vector, known = _vector("boundaries", boundaries)
    if vector.shape[0] != len(schedules) - 1:
        raise ValueError(
            f"`boundaries` must hold one step per switch, len(schedules) - 1 = "
            f"{len(schedules) - 1}, got {vector.shape[0]}."
        )
    _check_non_decreasing("boundaries", known)
    return _join(schedules, [vector[i] for i in range(vector.shape[0])])


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, ArrayLike]]) -> Schedule:
    """SGD with warm restarts: `warmup_cosine_decay_schedule` cycles, one after another.

    Each cycle lasts its own `decay_steps` and restarts the count from 0.

    Args:
      cosine_kwargs: one dict of `warmup_cosine_decay_schedule` arguments per cycle;
        every numeric value in them is *sweepable*.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: no cycles, or a bad value in a cycle (the message names the cycle).
      TypeError: `cosine_kwargs` not an iterable of dicts, or a cycle with missing or
        unknown arguments.

    References:
      Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
      <https://arxiv.org/abs/1608.03983>`_, 2017.

    Example:
      >>> import jaxtune as jt
      >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=10)
      >>> schedule = jt.sgdr_schedule([cycle, cycle])
      >>> print(f"{schedule(5):.2f} {schedule(10):.2f} {schedule(15):.2f}")
      0.50 1.00 0.50
    """
    if isinstance(cosine_kwargs, (str, Mapping)) or not isinstance(cosine_kwargs, Iterable):
        raise TypeError(
            "`cosine_kwargs` must be an iterable of dicts (one per cycle), got "
            f"{type(cosine_kwargs).__name__} {cosine_kwargs!r}."
        )
    cycles = list(cosine_kwargs)
    if not cycles:
        raise ValueError("`cosine_kwargs` must hold at least one cycle, got none.")
    schedules, boundaries, step = [], [], 0
    for i, kwargs in enumerate(cycles):
        if not isinstance(kwargs, Mapping):
            raise TypeError(
                f"`cosine_kwargs[{i}]` must be a dict of `warmup_cosine_decay_schedule` "
                f"arguments, got {type(kwargs).__name__} {kwargs!r}."
            )
        try:
            schedules.append(warmup_cosine_decay_schedule(**kwargs))
        except (TypeError, ValueError) as error:
            raise type(error)(f"`cosine_kwargs[{i}]`: {error}") from error
        step = _step_sum(step, kwargs["decay_steps"])
        boundaries.append(step)
    return _join(schedules, boundaries[:-1])


# ------------------------------------------------------------------ beyond optax

_WSD_DECAYS = ("linear", "cosine", "sqrt")


def warmup_stable_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
    stable_steps: ArrayLike,
    decay_steps: ArrayLike,
    end_value: ArrayLike = 0.0,
    decay_type: str = "linear",
) -> Schedule:
    r"""Warm-up, stable, decay (WSD): the trapezoid schedule of LLM training.

    Three phases, each given by its length: a linear warm-up from `init_value` to
    `peak_value` over `warmup_steps`, `peak_value` held for `stable_steps`, then a decay
    to `end_value` over `decay_steps`, after which `end_value` is held. With
    :math:`W, S, D` the three lengths, :math:`P` = `peak_value`, :math:`E` = `end_value`
    and :math:`\tau = (t - W - S) / D` clipped to [0, 1], the decay phase is

    .. math::
      v(t) = E + (P - E)\, f(\tau), \quad f(\tau) = \begin{cases}
        1 - \tau & \text{linear} \\
        \tfrac12 (1 + \cos \pi\tau) & \text{cosine} \\
        1 - \sqrt{\tau} & \text{sqrt}
      \end{cases}

    The whole schedule lasts `warmup_steps + stable_steps + decay_steps` steps. A phase
    of length 0 is skipped: no warm-up starts at `peak_value`, no decay steps drops to
    `end_value` at once.

    Args:
      init_value: the value at step 0. *Sweepable*.
      peak_value: the value held during the stable phase. *Sweepable*.
      warmup_steps: length of the warm-up, >= 0. *Sweepable*.
      stable_steps: length of the stable phase, >= 0. *Sweepable*.
      decay_steps: length of the decay, >= 0 (it does not include the other phases,
        unlike `warmup_cosine_decay_schedule`'s). *Sweepable*.
      end_value: the value at the end of the decay and after. *Sweepable*.
      decay_type: shape of the decay, `'linear'`, `'cosine'` or `'sqrt'` (1 - sqrt,
        as in MiniCPM and Hägele et al.). *Static*.

    Traced step counts below 0 count as 0.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete negative step count, a value that is not finite, or an
        unknown `decay_type`.
      TypeError: a `decay_type` that is not a string.

    References:
      Hu et al., `MiniCPM: Unveiling the Potential of Small Language Models with
      Scalable Training Strategies <https://arxiv.org/abs/2404.06395>`_, 2024.
      Hägele et al., `Scaling Laws and Compute-Optimal Training Beyond Fixed Training
      Durations <https://arxiv.org/abs/2405.18392>`_, 2024.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.warmup_stable_decay_schedule(0.0, 1.0, 10, 80, 10, end_value=0.1)
      >>> print(f"{schedule(5):.2f} {schedule(50):.2f} {schedule(95):.2f} {schedule(999):.2f}")
      0.50 1.00 0.55 0.10
    """
    check_finite("init_value", init_value)
    check_finite("peak_value", peak_value)
    check_nonnegative("warmup_steps", warmup_steps)
    check_nonnegative("stable_steps", stable_steps)
    check_nonnegative("decay_steps", decay_steps)
    check_finite("end_value", end_value)
    _check_choice("decay_type", decay_type, _WSD_DECAYS)
    warmup = _polynomial(init_value, peak_value, 1, warmup_steps, 0)
    warmup_steps = _clamp_steps(warmup_steps)
    decay_begin = _step_sum(warmup_steps, _clamp_steps(stable_steps))
    decay_steps = _clamp_steps(decay_steps)

    def schedule(count):
        count = _as_float(count)
        has_steps = decay_steps > 0
        tau = jnp.clip((count - decay_begin) / jnp.where(has_steps, decay_steps, 1.0), 0, 1)
        tau = jnp.where(has_steps, tau, jnp.where(count >= decay_begin, 1.0, 0.0))
        if decay_type == "linear":
            remaining = 1 - tau
        elif decay_type == "cosine":
            remaining = 0.5 * (1 + jnp.cos(jnp.pi * tau))
        else:
            # sqrt has an infinite slope at 0; keep gradients finite there.
            positive = tau > 0
            remaining = 1 - jnp.where(positive, jnp.sqrt(jnp.where(positive, tau, 1.0)), 0.0)
        decayed = end_value + (peak_value - end_value) * remaining
        return jnp.where(count < warmup_steps, warmup(count), decayed)

    return schedule


def warmup_inverse_sqrt_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: ArrayLike,
) -> Schedule:
    r"""Linear warm-up, then decay with the inverse square root of the step ("Noam").

    .. math::
      v(t) = \begin{cases}
        I + (P - I)\, t / W & t < W \\
        P \sqrt{\max(W, 1) / \max(t, W, 1)} & t \ge W
      \end{cases}

    with :math:`I` = `init_value`, :math:`P` = `peak_value`, :math:`W` = `warmup_steps`:
    for :math:`W \ge 1` the decay is :math:`P \sqrt{W / t}`, equal to :math:`P` at the end
    of the warm-up. `warmup_steps=0` means no warm-up: :math:`P` at steps 0 and 1, then
    :math:`P / \sqrt{t}` -- a warm-up shorter than one step decays as if it lasted one,
    so the value is continuous in `warmup_steps`.

    Args:
      init_value: the value at step 0 (with a warm-up). *Sweepable*.
      peak_value: the value at the end of the warm-up. *Sweepable*.
      warmup_steps: length of the warm-up, >= 0. *Sweepable*; a traced negative value
        counts as 0.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete negative `warmup_steps`, or a value that is not finite.

    References:
      Vaswani et al., `Attention Is All You Need <https://arxiv.org/abs/1706.03762>`_,
      2017 (section 5.3). Raffel et al., `Exploring the Limits of Transfer Learning with
      a Unified Text-to-Text Transformer <https://arxiv.org/abs/1910.10683>`_, 2020.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.warmup_inverse_sqrt_schedule(0.0, 1.0, warmup_steps=100)
      >>> print(f"{schedule(50):.2f} {schedule(100):.2f} {schedule(400):.2f}")
      0.50 1.00 0.50
    """
    check_finite("init_value", init_value)
    check_finite("peak_value", peak_value)
    check_nonnegative("warmup_steps", warmup_steps)
    warmup = _polynomial(init_value, peak_value, 1, warmup_steps, 0)
    warmup_steps = _clamp_steps(warmup_steps)

    def schedule(count):
        count = _as_float(count)
        reference = jnp.maximum(warmup_steps, 1.0)
        decayed = peak_value * jnp.sqrt(reference / jnp.maximum(count, reference))
        return jnp.where(count < warmup_steps, warmup(count), decayed)

    return schedule


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def cyclic_schedule(
    base_value: ArrayLike,
    max_value: ArrayLike,
    step_size: ArrayLike,
    mode: str = "triangular",
    gamma: ArrayLike = 1.0,
) -> Schedule:
    r"""Cyclical values (Smith's CLR): triangles between `base_value` and `max_value`.

    .. math::
      c = \left\lfloor 1 + \frac{t}{2 s} \right\rfloor, \quad
      x = \left| \frac{t}{s} - 2 c + 1 \right|, \quad
      v(t) = b + (m - b) \max(0, 1 - x)\, \sigma(c, t)

    with :math:`b` = `base_value`, :math:`m` = `max_value`, :math:`s` = `step_size` (half
    a cycle) and the amplitude scale :math:`\sigma` = 1 (`'triangular'`),
    :math:`2^{-(c - 1)}` (`'triangular2'`, halved every cycle) or :math:`\gamma^t`
    (`'exp_range'`). The value starts at `base_value`, reaches the peak at step `s`, and
    is back at `base_value` at step `2s`.

    Args:
      base_value: the lower end of each cycle. *Sweepable*.
      max_value: the upper end of the first cycle. *Sweepable*.
      step_size: half a cycle, in steps, > 0. *Sweepable*; a traced value <= 0 gives
        `base_value` at every step.
      mode: `'triangular'`, `'triangular2'` or `'exp_range'`. *Static*.
      gamma: decay of the amplitude per step in `'exp_range'` mode, in (0, 1]; unused
        by the other modes. *Sweepable*.

    Returns:
      A function that maps step counts to values.

    Raises:
      ValueError: a concrete `step_size` <= 0, a `gamma` outside (0, 1], a value that is
        not finite, or an unknown `mode`.
      TypeError: a `mode` that is not a string.

    References:
      Smith, `Cyclical Learning Rates for Training Neural Networks
      <https://arxiv.org/abs/1506.01186>`_, WACV 2017.

    Example:
      >>> import jaxtune as jt
      >>> schedule = jt.cyclic_schedule(0.1, 1.0, step_size=10, mode="triangular2")
      >>> print(f"{schedule(5):.2f} {schedule(10):.2f} {schedule(20):.2f} {schedule(30):.2f}")
      0.55 1.00 0.10 0.55
    """
    check_finite("base_value", base_value)
    check_finite("max_value", max_value)
    check_positive("step_size", step_size, f"It is half a cycle, in steps. {_CONSTANT_HINT}")
    _check_choice("mode", mode, _CYCLIC_MODES)
    check_in_range("gamma", gamma, 0.0, 1.0, closed_low=False,
                   hint="It scales the amplitude by gamma**count; 0.9999 is typical.")
    step_size = _steps(step_size)

    def schedule(count):
        count = _as_float(count)
        valid = step_size > 0
        half_cycle = jnp.where(valid, step_size, 1.0)
        # Smith's x = |t/s - 2c + 1| equals |r/s - 1| with r = t mod 2s; the remainder is
        # exact in floating point, so x stays accurate after many cycles.
        within = jnp.remainder(count, 2 * half_cycle)
        cycle = jnp.round((count - within) / (2 * half_cycle)) + 1
        x = jnp.abs(within / half_cycle - 1)
        amplitude = (max_value - base_value) * jnp.maximum(0.0, 1 - x)
        if mode == "triangular2":
            amplitude = amplitude / 2.0 ** (cycle - 1)
        elif mode == "exp_range":
            amplitude = amplitude * gamma**count
        return jnp.where(valid, base_value + amplitude, base_value)

    return schedule
