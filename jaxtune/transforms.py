"""Tuning-aware gradient transformations on optax's protocol.

Every transformation here is an `optax.GradientTransformation` (or
`optax.GradientTransformationExtraArgs`) and composes with `optax.chain`. Every
numeric argument is *sweepable*: a Python number, a concrete array, or a tracer
under `jit(vmap(...))`, so a population of configurations runs as one compiled
program. Numeric arguments are validated only when concrete; structural
arguments (masks) are static.

- `reduce_on_plateau`: optax's `contrib.reduce_on_plateau`, traceable in every
  argument and correct for negative monitored values.
- `proximal_l1`: the proximal (soft-thresholding) step of an L1 penalty, giving
  exactly sparse parameters.
- `l1_penalty`, `l2_penalty`: additive penalties for use inside a loss.

Decoupled weight decay needs nothing new: `optax.add_decayed_weights` already
takes a traced or scheduled rate and a mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import (
    check_in_range,
    check_nonnegative,
    check_numeric,
    concrete,
    describe,
)

__all__ = [
    "ReduceOnPlateauState",
    "reduce_on_plateau",
    "ProximalL1State",
    "proximal_l1",
    "l1_penalty",
    "l2_penalty",
]


def _check_integer(name: str, value: Any, minimum: int, hint: str = "") -> None:
    """Raises ValueError unless a concrete `value` is a whole number >= `minimum`."""
    check_numeric(name, value)
    array = concrete(value)
    if array is None:
        return
    kind = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
    valid = np.all(np.isfinite(array)) and np.all(array == np.round(array))
    if not valid or np.any(array < minimum):
        suffix = f" {hint}" if hint else ""
        raise ValueError(f"`{name}` must be {kind}, got {name}={describe(array)}.{suffix}")


def _check_scalar_or_schedule(name: str, value: Any) -> None:
    """Validates a sweepable argument that may also be a schedule `step -> value`."""
    if callable(value):
        return
    if not isinstance(value, (int, float, np.ndarray, np.generic, jax.Array, jax.core.Tracer)) or (
        isinstance(value, (bool, np.bool_))
    ):
        raise TypeError(
            f"`{name}` must be a number, an array or a schedule `step -> value`, "
            f"got {type(value).__name__} {value!r}."
        )
    check_nonnegative(name, value)


# --------------------------------------------------------------------------- #
# Reduce on plateau
# --------------------------------------------------------------------------- #


class ReduceOnPlateauState(NamedTuple):
    """State for `reduce_on_plateau` (same fields as optax's `ReduceLROnPlateauState`)."""

    scale: jax.Array  # shape=(), dtype=lowest dtype of the params; multiplies the updates
    best_value: jax.Array  # shape=(), dtype=highest dtype of the params; +inf before any value
    plateau_count: jax.Array  # shape=(), dtype=jnp.int32; evaluations without improvement
    cooldown_count: jax.Array  # shape=(), dtype=jnp.int32; evaluations left to ignore
    count: jax.Array  # shape=(), dtype=jnp.int32; values accumulated into `avg_value`
    avg_value: jax.Array  # shape=(), dtype=highest dtype of the params; running mean


def reduce_on_plateau(
    factor: Any = 0.1,
    patience: Any = 10,
    rtol: Any = 1e-4,
    atol: Any = 0.0,
    cooldown: Any = 0,
    accumulation_size: Any = 1,
    min_scale: Any = 0.0,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales updates down by `factor` when a monitored value stops improving.

    A drop-in for `optax.contrib.reduce_on_plateau` (same signature, state fields
    and update rule) with two differences that matter for tuning:

    1. **Every numeric argument is sweepable.** optax's version raises
       `TracerBoolConversionError` when `factor`, `rtol` or `atol` is a tracer
       (it validates them with Python comparisons); here all seven arguments can
       carry a population axis under `jit(vmap(...))`.
    2. **Correct for negative values.** optax counts an improvement when
       `value < (1 - rtol) * best - atol`; for a negative `best` that threshold
       lies *above* `best`, so a slightly worse value counts as an improvement and
       a plateau below zero never reduces the scale (optax PR #1767). Here the
       test is

       .. math:: v < b - \mathrm{rtol}\,|b| - \mathrm{atol},

       with :math:`v` the average of the last `accumulation_size` values and
       :math:`b` the best average so far. It equals optax's for :math:`b \ge 0`
       and asks for the same relative margin below :math:`b` for :math:`b < 0`.

    The rule, applied once every `accumulation_size` calls: an improving average
    becomes the new best and resets the plateau count; otherwise the count grows,
    and when it reaches `patience` the scale is multiplied by `factor` (never
    going below `min_scale`), the count resets and the next `cooldown`
    evaluations are ignored. `patience=0` reduces at the first evaluation without
    improvement, like `patience=1` (optax's equality test would instead reduce at
    every *improving* evaluation). `factor=1` is allowed, as the no-reduction
    baseline of a sweep, and so is `rtol = atol = 0` (any strict decrease
    improves), both of which optax rejects.

    Args:
      factor: sweepable, in (0, 1]. Multiplies the scale at each reduction.
      patience: sweepable, non-negative integer. Evaluations without
        improvement before a reduction.
      rtol: sweepable, in [0, 1]. Relative improvement required, as a fraction
        of `|best|`.
      atol: sweepable, non-negative. Absolute improvement required.
      cooldown: sweepable, non-negative integer. Evaluations ignored after a
        reduction.
      accumulation_size: sweepable, integer >= 1. Number of `value`s averaged
        into one evaluation (use > 1 when `value` is a noisy minibatch loss).
      min_scale: sweepable, in [0, 1]. The scale never goes below it.

    Returns:
      An `optax.GradientTransformationExtraArgs` whose `update` takes the
      monitored quantity as the keyword argument `value` (pass it through
      `optax.chain(...).update(..., value=loss)`).

    Example:
      >>> import jax.numpy as jnp, optax, jaxtune as jt
      >>> opt = optax.chain(optax.sgd(0.1), jt.reduce_on_plateau(factor=0.5, patience=2))
      >>> params = jnp.zeros(2)
      >>> state = opt.init(params)
      >>> for loss in [3.0, 2.0, 2.0, 2.0]:
      ...     updates, state = opt.update(jnp.ones(2), state, params, value=loss)
      >>> float(state[1].scale)
      0.5
    """
    check_in_range("factor", factor, 0.0, 1.0, closed_low=False,
                   hint="Use factor=1 to never reduce.")
    _check_integer("patience", patience, 0)
    check_in_range("rtol", rtol, 0.0, 1.0)
    check_nonnegative("atol", atol)
    _check_integer("cooldown", cooldown, 0)
    _check_integer("accumulation_size", accumulation_size, 1,
                   hint="Use accumulation_size=1 to act on every value.")
    check_in_range("min_scale", min_scale, 0.0, 1.0,
                   hint="The scale starts at 1 and only decreases.")

    def init_fn(params):
        # Like optax: the scale takes the lowest params dtype so that it never
        # promotes the updates; the running statistics take the highest.
        lowest = optax.tree.dtype(params, "lowest")
        highest = optax.tree.dtype(params, "highest")
        return ReduceOnPlateauState(
            scale=jnp.asarray(1.0, dtype=lowest),
            best_value=jnp.asarray(jnp.inf, dtype=highest),
            plateau_count=jnp.asarray(0, jnp.int32),
            cooldown_count=jnp.asarray(0, jnp.int32),
            count=jnp.asarray(0, jnp.int32),
            avg_value=jnp.asarray(0.0, dtype=highest),
        )

    def evaluate(state: ReduceOnPlateauState) -> ReduceOnPlateauState:
        best = state.best_value
        # `inf - rtol * inf` is NaN, so the initial best is left out of the margin.
        margin = rtol * jnp.abs(best) + atol
        threshold = jnp.where(jnp.isfinite(best), best - margin, best)
        improved = state.avg_value < threshold
        best = jnp.where(improved, state.avg_value, best).astype(best.dtype)
        plateau = jnp.where(improved, 0, optax.safe_increment(state.plateau_count))
        in_cooldown = state.cooldown_count > 0
        reduce = jnp.logical_and(~in_cooldown, plateau >= jnp.maximum(patience, 1))
        reduced = jnp.where(reduce, state.scale * factor, state.scale)
        scale = jnp.where(in_cooldown, state.scale, jnp.maximum(reduced, min_scale))
        cooldown_count = jnp.where(
            in_cooldown, state.cooldown_count - 1, jnp.where(reduce, cooldown, 0)
        )
        return ReduceOnPlateauState(
            scale=scale.astype(state.scale.dtype),
            best_value=best,
            plateau_count=jnp.where(in_cooldown | reduce, 0, plateau).astype(jnp.int32),
            cooldown_count=cooldown_count.astype(jnp.int32),
            count=jnp.zeros_like(state.count),
            avg_value=jnp.zeros_like(state.avg_value),
        )

    def update_fn(updates, state, params=None, *, value, **extra_args):
        del params, extra_args
        count = optax.safe_increment(state.count)
        value = jnp.asarray(value).astype(state.avg_value.dtype)
        avg_value = ((state.count * state.avg_value + value) / count).astype(
            state.avg_value.dtype
        )
        accumulated = state._replace(count=count, avg_value=avg_value)
        evaluated = evaluate(accumulated)
        ready = count >= accumulation_size
        new_state = jax.tree.map(
            lambda new, old: jnp.where(ready, new, old), evaluated, accumulated
        )
        updates = jax.tree.map(lambda g: new_state.scale * g, updates)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------- #
# L1 / L2 regularization
# --------------------------------------------------------------------------- #


class ProximalL1State(NamedTuple):
    """State for `proximal_l1`: the step counter that drives schedules."""

    count: jax.Array  # shape=(), dtype=jnp.int32; number of updates so far


def proximal_l1(
    learning_rate: Any,
    l1: Any,
    mask: Any | Callable[[Any], Any] | None = None,
) -> optax.GradientTransformation:
    r"""Proximal step of the L1 penalty `l1 * ||w||_1`: exact soft-thresholding.

    Place it **last** in a chain, after the step that already includes the
    learning rate. With incoming updates :math:`u` and parameters :math:`p`, it
    returns updates :math:`u'` such that

    .. math::
        p + u' = \operatorname{sign}(w) \max(|w| - \tau, 0), \qquad
        w = p + u, \quad \tau = \eta \lambda,

    where :math:`\eta` is `learning_rate` and :math:`\lambda` is `l1`. This is
    proximal gradient descent (ISTA): after `optax.sgd(eta)`, with `eta <= 1 / L`
    for a loss whose gradient is L-Lipschitz, it converges to the lasso solution.
    Any weight whose step would cross or stay within :math:`\tau` of zero lands
    on exactly 0 -- unlike a subgradient `l1 * sign(w)` added to the loss, which
    makes weights oscillate around zero. After
    an adaptive optimizer (adam, ...) it is the usual uniform-threshold
    approximation, not the exact preconditioned prox.

    Naming: optax's `add_*` transforms add a term linear in the params (like
    `add_decayed_weights`), and `scale_by_*` rescale; this one applies a
    nonlinear map to `params + updates`, so it is named after the operation, as
    in `keep_params_nonnegative` or `clip_by_global_norm`: the proximal operator
    of L1.

    Args:
      learning_rate: sweepable, non-negative, or a schedule `step -> value`
        (pass the same one as the optimizer's). The step size :math:`\eta`.
      l1: sweepable, non-negative, or a schedule `step -> value`. The L1
        strength :math:`\lambda`.
      mask: static. A pytree of bools with the structure of (or a prefix of) the
        params, or a callable returning one; `True` leaves are thresholded, the
        others pass through unchanged (as in `optax.masked`).

    Returns:
      An `optax.GradientTransformation`; its `update` requires `params`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxtune as jt
      >>> opt = optax.chain(optax.sgd(0.1), jt.proximal_l1(0.1, l1=1.0))
      >>> params = jnp.array([0.05, -0.5, 2.0])
      >>> updates, _ = opt.update(jnp.zeros(3), opt.init(params), params)
      >>> optax.apply_updates(params, updates)
      Array([ 0. , -0.4,  1.9], dtype=float32)
    """
    _check_scalar_or_schedule("learning_rate", learning_rate)
    _check_scalar_or_schedule("l1", l1)

    def init_fn(params):
        del params
        return ProximalL1State(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "`proximal_l1` needs the current parameters: call "
                "`update(updates, state, params)`."
            )
        step_size = learning_rate(state.count) if callable(learning_rate) else learning_rate
        strength = l1(state.count) if callable(l1) else l1
        threshold = step_size * strength

        def prox(update, param):
            target = param + update
            shrunk = jnp.sign(target) * jnp.maximum(jnp.abs(target) - threshold, 0)
            # `shrunk == 0` gives `update == -param` exactly, so the sum is exactly 0.
            return (shrunk - param).astype(update.dtype)

        updates = jax.tree.map(prox, updates, params)
        return updates, ProximalL1State(count=optax.safe_increment(state.count))

    transform = optax.GradientTransformation(init_fn, update_fn)
    if mask is not None:
        return optax.masked(transform, mask)
    return transform


def _selected_leaves(params: Any, mask: Any, caller: str) -> list[jax.Array]:
    """The leaves of `params` selected by a bool pytree (or prefix) `mask`."""
    if mask is None:
        return jax.tree.leaves(params)
    mask_tree = mask(params) if callable(mask) else mask
    for leaf in jax.tree.leaves(mask_tree):
        if not isinstance(leaf, (bool, np.bool_)):
            raise TypeError(
                f"`mask` of `{caller}` must have bool leaves (True = penalized), got "
                f"{type(leaf).__name__} {leaf!r}; masks are static, so use Python bools."
            )
    try:
        selected = jax.tree.map(
            lambda keep, subtree: subtree if keep else optax.MaskedNode(), mask_tree, params
        )
    except ValueError as error:
        raise ValueError(
            f"`mask` of `{caller}` must have the structure of the params or a prefix of it; "
            f"mask: {jax.tree.structure(mask_tree)}, params: {jax.tree.structure(params)}."
        ) from error
    return jax.tree.leaves(selected)


def l1_penalty(params: Any, weight: Any, mask: Any | Callable[[Any], Any] | None = None):
    r"""The L1 penalty `weight * sum_i |w_i|`, to add to a loss.

    .. math:: \mathrm{weight} \sum_i |w_i|

    over the selected leaves. Its gradient is `weight * sign(w)`, taken as 0 at
    `w = 0`. Being non-smooth at 0, it makes (sub)gradient methods hover around
    zero; for exact zeros use `proximal_l1` instead.

    Args:
      params: a pytree of arrays.
      weight: sweepable, non-negative. The penalty strength.
      mask: static. A pytree of bools with the structure of (or a prefix of)
        `params`, or a callable returning one; only `True` leaves count.

    Returns:
      A scalar array.

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> float(jt.l1_penalty({"w": jnp.array([1.0, -2.0]), "b": jnp.array(5.0)}, 0.5,
      ...                     mask={"w": True, "b": False}))
      1.5
    """
    check_nonnegative("weight", weight)
    leaves = _selected_leaves(params, mask, "l1_penalty")
    # `w * sign(w)` is `|w|` with gradient `sign(w)`: 0 at w = 0, the minimal-norm
    # subgradient (`jnp.abs` would give 1 there and push exact zeros off zero).
    total = sum((jnp.sum(leaf * jnp.sign(leaf)) for leaf in leaves), jnp.zeros(()))
    return weight * total


def l2_penalty(params: Any, weight: Any, mask: Any | Callable[[Any], Any] | None = None):
    r"""The L2 penalty `weight / 2 * sum_i w_i^2`, to add to a loss.

    .. math:: \frac{\mathrm{weight}}{2} \sum_i w_i^2

    over the selected leaves, so its gradient is `weight * w`. Added to the loss
    it is coupled L2 regularization (it goes through the optimizer's
    preconditioner); for decoupled weight decay use
    `optax.add_decayed_weights` or `optax.adamw`, which accept sweepable rates.

    Args:
      params: a pytree of arrays.
      weight: sweepable, non-negative. The penalty strength.
      mask: static. A pytree of bools with the structure of (or a prefix of)
        `params`, or a callable returning one; only `True` leaves count.

    Returns:
      A scalar array.

    Example:
      >>> import jax.numpy as jnp, jaxtune as jt
      >>> float(jt.l2_penalty({"w": jnp.array([1.0, -2.0])}, 0.5))
      1.25
    """
    check_nonnegative("weight", weight)
    leaves = _selected_leaves(params, mask, "l2_penalty")
    total = sum((jnp.sum(jnp.square(leaf)) for leaf in leaves), jnp.zeros(()))
    return 0.5 * weight * total
