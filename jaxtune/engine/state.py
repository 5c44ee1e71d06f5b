"""A population's state and the tree helpers every part of the engine uses.

A population is a pytree whose every leaf has a leading *member* axis [M]. Each
member is one configuration (a row of dynamic hyperparameters) trained from one
seed, and carries its own step count: members of one population may be at
different steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class PopulationState(NamedTuple):
    """Every member's training state; each leaf has a leading member axis [M]."""

    params: Any  # model parameters, each leaf [M, ...]
    opt_state: Any  # optimizer state built from the member's hyperparameters
    hparams: dict[str, jax.Array]  # dynamic hyperparameters, each [M] float32/int32
    seed: jax.Array  # int32 [M]: seed index; picks the init, minibatch order and keys
    step: jax.Array  # int32 [M]: training steps run so far (frozen members count too)
    alive: jax.Array  # bool [M]: False once the member diverged (frozen since)
    diverged_step: jax.Array  # int32 [M]: first step with a non-finite loss, -1 if none
    model_state: Any = None  # model state beside the parameters (BatchNorm statistics ...),
    #   each leaf [M, ...]; None when `loss_fn` takes no `model_state`


def tree_all_finite(tree: Any) -> jax.Array:
    """Whether every inexact leaf of `tree` is finite, a bool scalar."""
    return members_all_finite(jax.tree_util.tree_map(lambda leaf: leaf[None], tree), 1)[0]


def members_all_finite(tree: Any, members: int) -> jax.Array:
    """For each of the `members` of `tree` (leaves [members, ...]), whether all its
    inexact values are finite, bool [members].

    One reduction over the leaves concatenated (per dtype), not one per leaf: XLA:CPU
    compiles a kernel per reduction, and a reduction per leaf made about a sixth of the
    digits MLP's training program to compile (`non_finite_counts` names the leaf, when
    one is needed).
    """
    by_dtype: dict[Any, list[jax.Array]] = {}
    for leaf in map(jnp.asarray, jax.tree_util.tree_leaves(tree)):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            by_dtype.setdefault(leaf.dtype, []).append(leaf.reshape(members, -1))
    return functools.reduce(
        jnp.logical_and,
        [jnp.all(jnp.isfinite(jnp.concatenate(rows, axis=1)), axis=1) for rows in by_dtype.values()],
        jnp.ones(members, bool))


def non_finite_counts(tree: Any) -> Any:
    """For each inexact leaf [M, ...] of `tree`, its NaN and inf count per member, int32 [M]."""
    return jax.tree_util.tree_map(
        lambda x: jnp.sum(~jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1, dtype=jnp.int32)
        if jnp.issubdtype(x.dtype, jnp.inexact) else None, tree)


def tree_where(condition: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `condition`, else `old`, leaf by leaf."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)


def path_name(path: Any, name: str) -> str:
    """A key path shown from its root `name`, e.g. `params['w']`."""
    return f"{name}{jax.tree_util.keystr(path)}"


def is_array(leaf: Any) -> bool:
    """Whether `leaf` is an array (JAX, NumPy, or an abstract one)."""
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | jax.ShapeDtypeStruct)


def is_inexact(leaf: Any) -> bool:
    """Whether `leaf` is a floating or complex array: what the optimizer trains."""
    return is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def partition(tree: Any, keep: Callable[[Any], bool]) -> tuple[Any, Any]:
    """`(kept, rest)`: two trees of `tree`'s structure, None where the other has the leaf."""
    kept = jax.tree_util.tree_map(lambda x: x if keep(x) else None, tree)
    rest = jax.tree_util.tree_map(lambda x: None if keep(x) else x, tree)
    return kept, rest


def combine(*trees: Any) -> Any:
    """Undoes `partition`: each leaf from the first tree that holds it."""
    def first(*leaves):
        return next((x for x in leaves if x is not None), None)
    return jax.tree_util.tree_map(first, *trees, is_leaf=lambda x: x is None)
