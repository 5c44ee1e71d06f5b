"""Your own loop: a population of optimizer states, updated from stacked gradients.

For research code that keeps its own training loop (its data pipeline, logging,
model-state handling) and wants many hyperparameter configurations at once. Every
tree here is *stacked*: each leaf has a leading member axis [M]. `hparams` maps
each name to an array [M]; `make_optimizer(**hparams)` receives, by keyword, the
names its signature takes (all of them with `**kwargs`), as traced arrays, so new
values never recompile. The functions are jitted; `make_optimizer` and `loss_fn`
are static (pass the same function objects to avoid recompiling).

An ordinary optax loop becomes a population loop with a handful of changed lines:

  >>> import jax, jax.numpy as jnp, numpy as np, optax
  >>> import jaxtune as jt
  >>> x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]; y = 3 * x
  >>> def loss_fn(w, batch):
  ...     return jnp.mean((batch[0] @ w - batch[1]) ** 2)
  >>> def make_optimizer(learning_rate):
  ...     return optax.adam(learning_rate)
  >>> hparams = {"learning_rate": np.array([1e-3, 1e-2, 1e-1], np.float32)}  # was: 1e-2
  >>> params, opt_state = jt.init_population(make_optimizer, jnp.zeros((1, 1)), hparams)
  >>> grad_fn = jax.vmap(jax.grad(loss_fn), in_axes=(0, None))  # was: jax.grad(loss_fn)
  >>> for step in range(100):
  ...     grads = grad_fn(params, (x, y))
  ...     updates, opt_state = jt.update_population(make_optimizer, grads, opt_state, params,
  ...                                               hparams)
  ...     params = optax.apply_updates(params, updates)
  >>> params.shape
  (3, 1, 1)
  >>> bool(abs(params[2, 0, 0] - 3) < abs(params[0, 0, 0] - 3))
  True

`step_population` does one whole step (gradients, update, apply) given a batch;
`get_member` and `set_member` read and write one member of any stacked tree.

Model state (BatchNorm statistics, EMA copies, counters) follows `jt.sweep`'s
convention: `init_population(..., model_state=state)` stacks one model's state for
every member (and returns it third), and a `loss_fn` with a parameter named
`model_state` returns `(loss, (new_model_state, metrics))`; `step_population(...,
model_state=state)` then returns `(params, opt_state, model_state, losses)`. The
state never reaches the optimizer (weight decay never touches it). With Flax NNX:
`graphdef, params, state = nnx.split(model, nnx.Param, nnx.BatchStat)`, then
`nnx.merge(graphdef, params, model_state, copy=True)` inside `loss_fn`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtune.engine import read_signature as _signature
from jaxtune.engine import route as _select


def _members(hparams: Mapping[str, Any]) -> int:
    shapes = {k: np.shape(v) for k, v in hparams.items()}
    if not shapes or any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) > 1:
        raise ValueError(
            "`hparams` must map each hyperparameter name to a 1-D array of one common length "
            f"(the number of members), got shapes {shapes or 'none'}."
        )
    return next(iter(shapes.values()))[0]


def _optimizer(make_optimizer: Callable, hparams: Mapping[str, Any]):
    return make_optimizer(**_select(hparams, _signature(make_optimizer, "make_optimizer", 0),
                                    True))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _init(make_optimizer, params, hparams, stacked, model_state):
    members = _members(hparams)
    if not stacked:
        params, model_state = jax.tree_util.tree_map(
            lambda a: jnp.broadcast_to(a, (members, *jnp.shape(a))), (params, model_state))
    opt_state = jax.vmap(lambda p, h: _optimizer(make_optimizer, h).init(p))(params, hparams)
    return params, opt_state, model_state


def init_population(make_optimizer: Callable[..., optax.GradientTransformation], params: Any,
                    hparams: Mapping[str, Any], *, stacked: bool = False,
                    model_state: Any = None) -> tuple[Any, ...]:
    """Stacked parameters and every member's optimizer state (and model state).

    Args:
      make_optimizer: static; `make_optimizer(**hparams) -> optax.GradientTransformation`.
      params: one model's parameters, copied to every member; or, with
        `stacked=True`, parameters with a leading member axis already.
      hparams: sweepable; name -> array [M], one value per member.
      stacked: static; whether `params` (and `model_state`) already have the member axis.
      model_state: one model's state beside its parameters (BatchNorm statistics ...),
        copied to every member like `params`; never seen by the optimizer.

    Returns:
      `(params, opt_state)`, each leaf with a leading axis [M]; `(params, opt_state,
      model_state)` when `model_state` is given.
    """
    hparams = {k: jnp.asarray(v) for k, v in hparams.items()}
    _members(hparams)
    params, opt_state, stacked_state = _init(make_optimizer, params, hparams, bool(stacked),
                                             model_state)
    return (params, opt_state) if model_state is None else (params, opt_state, stacked_state)


@functools.partial(jax.jit, static_argnums=(0,))
def _update(make_optimizer, grads, opt_state, params, hparams, extra_args):
    def one(g, s, p, h, extra):
        optimizer = _optimizer(make_optimizer, h)
        if extra and isinstance(optimizer, optax.GradientTransformationExtraArgs):
            return optimizer.update(g, s, p, **extra)
        return optimizer.update(g, s, p)

    return jax.vmap(one)(grads, opt_state, params, hparams, extra_args)


def update_population(make_optimizer: Callable[..., optax.GradientTransformation], grads: Any,
                      opt_state: Any, params: Any, hparams: Mapping[str, Any],
                      **extra_args: Any) -> tuple[Any, Any]:
    """One optimizer update of every member: stacked gradients in, stacked updates out.

    Equals `make_optimizer(**hparams_i).update(grads_i, opt_state_i, params_i)` for
    every member i, in one vmapped, jitted call.

    Args:
      make_optimizer: static; the factory `init_population` was given.
      grads, opt_state, params: stacked trees [M, ...].
      hparams: sweepable; name -> array [M].
      **extra_args: stacked extra arguments for optimizers that take them (e.g.
        `value=losses` [M] for `optax.contrib.reduce_on_plateau`).

    Returns:
      `(updates, opt_state)`: apply them with `optax.apply_updates(params, updates)`.
    """
    hparams = {k: jnp.asarray(v) for k, v in hparams.items()}
    _members(hparams)
    return _update(make_optimizer, grads, opt_state, params, hparams, extra_args)


_MSG_STATE_RETURN = (
    "`loss_fn` takes `model_state`, so it must return `(loss, (new_model_state, metrics))` "
    "(metrics a dict of scalars or None), as in `jt.sweep`; got {got}."
)


def _loss_and_state(loss_fn, params, batch, model_state):
    """`(loss, new_model_state)` from one call of `loss_fn`; model_state None: not taken."""
    if model_state is None:
        return loss_fn(params, batch), None
    # A fresh copy of the tree, made in this trace: Flax NNX refuses to update a
    # variable created under another trace (the vmap's, not the gradient's).
    out = loss_fn(params, batch, model_state=jax.tree_util.tree_map(lambda x: x, model_state))
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], tuple)
            and len(out[1]) == 2):
        raise ValueError(_MSG_STATE_RETURN.format(
            got=f"a {type(out).__name__}" if not isinstance(out, tuple)
            else f"a tuple whose aux is {type(out[1]).__name__ if len(out) == 2 else out}"))
    loss, (new_state, _) = out
    if jax.tree_util.tree_structure(new_state) != jax.tree_util.tree_structure(model_state):
        raise ValueError(
            "`loss_fn` returned a new model state of another structure than the one it was "
            f"given: {jax.tree_util.tree_structure(new_state)} vs "
            f"{jax.tree_util.tree_structure(model_state)}; return the updated tree itself.")
    return loss, new_state


def _check_model_state(loss_fn, model_state):
    """Raises ValueError unless `model_state` is given exactly when `loss_fn` takes it."""
    takes_state = "model_state" in _signature(loss_fn, "loss_fn", 2).names
    if takes_state and model_state is None:
        raise ValueError(
            "`loss_fn` takes `model_state`; pass the stacked state: `step_population(..., "
            "model_state=model_state)`, with `model_state` from `init_population(..., "
            "model_state=one_models_state)`.")
    if model_state is not None and not takes_state:
        raise ValueError(
            "`model_state` was given but `loss_fn` takes no `model_state` parameter; add "
            "one (`loss_fn(params, batch, *, model_state)` returning `(loss, "
            "(new_model_state, metrics))`) or leave `model_state` out.")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _step(loss_fn, make_optimizer, params, opt_state, hparams, batch, model_state):
    _check_model_state(loss_fn, model_state)  # while tracing: once per program, not per step

    def one(p, s, h, m):
        (loss, m), grads = jax.value_and_grad(
            lambda p: _loss_and_state(loss_fn, p, batch, m), has_aux=True)(p)
        optimizer = _optimizer(make_optimizer, h)
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
            updates, s = optimizer.update(grads, s, p, value=loss)
        else:
            updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, m, loss

    return jax.vmap(one)(params, opt_state, hparams, model_state)


def step_population(loss_fn: Callable, make_optimizer: Callable[..., optax.GradientTransformation],
                    params: Any, opt_state: Any, hparams: Mapping[str, Any],
                    batch: Any, *, model_state: Any = None) -> tuple[Any, ...]:
    """One whole training step of every member on the same `batch`.

    Args:
      loss_fn: static; `loss_fn(params, batch) -> scalar loss`; with a `model_state`
        parameter, `loss_fn(params, batch, model_state=...) -> (loss, (new_model_state,
        metrics))`, as in `jt.sweep`.
      make_optimizer: static; as for `init_population`.
      params, opt_state: stacked trees [M, ...].
      hparams: sweepable; name -> array [M].
      batch: one batch, shared by every member.
      model_state: the stacked model state [M, ...] (from `init_population(...,
        model_state=...)`), required exactly when `loss_fn` takes `model_state`.

    Returns:
      `(params, opt_state, losses)`, with `losses` float [M] (before the update); with
      `model_state`, `(params, opt_state, model_state, losses)`, the state as `loss_fn`
      returned it. The optimizer receives the loss as `value=` when it takes extra
      arguments; `loss_fn`'s metrics are not returned.
    """
    hparams = {k: jnp.asarray(v) for k, v in hparams.items()}
    _members(hparams)
    params, opt_state, model_state, losses = _step(loss_fn, make_optimizer, params, opt_state,
                                                   hparams, batch, model_state)
    if model_state is None:  # `_step` checked that `loss_fn` takes none
        return params, opt_state, losses
    return params, opt_state, model_state, losses


def get_member(tree: Any, index: int) -> Any:
    """Member `index` of a stacked tree (its leaves without the member axis).

    Args:
      tree: a stacked tree [M, ...]: parameters, an optimizer or model state.
      index: the member, in [0, M).

    Returns:
      The tree of member `index`, each leaf without its leading axis.
    """
    return jax.tree_util.tree_map(lambda a: a[index], tree)


def set_member(tree: Any, index: int, member: Any) -> Any:
    """A copy of the stacked `tree` whose member `index` is `member` (unstacked).

    Args:
      tree: a stacked tree [M, ...] (JAX arrays); it is not modified.
      index: the member to replace, in [0, M).
      member: one member's tree, of `tree`'s structure without the member axis
        (e.g. from `get_member`).

    Returns:
      The stacked tree with member `index` replaced.
    """
    return jax.tree_util.tree_map(lambda a, b: a.at[index].set(b), tree, member)
