"""Hypergradients through training: d(validation metric after T steps) / d(hyperparameters).

A hyperparameter h of a training run (a learning rate, a weight decay, a momentum, a
penalty in the loss) shapes every step; the validation metric after T steps is a
differentiable function of it when the steps are. Two ways to differentiate it
(Franceschi et al., "Forward and Reverse Gradient-Based Hyperparameter Optimization",
ICML 2017):

  * `mode="forward"`: one `jax.jvp` tangent per hyperparameter is pushed through the
    unrolled steps (a `lax.scan`; the tangents ride in its carry beside the state).
    Memory is independent of T (about one more state per hyperparameter); time grows
    with the number of hyperparameters (one tangent each, vmapped). The fit for a
    population tuning a handful of hyperparameters.
  * `mode="reverse"`: `jax.grad` through the last `window` steps (all T when `window`
    is None). One backward pass for any number of hyperparameters, but the residuals
    of every step in the window are held: memory grows with `window`. With a window
    shorter than T, the influence of h on the state the window starts from is
    ignored (truncated back-propagation: cheaper, biased).

Hyperparameters are differentiated in their own scale: `scale="log"` returns
d metric / d log h = h * d metric / d h (the step a log-uniform learning rate or weight
decay takes), `"linear"` the plain derivative (a momentum, a uniform dimension).
`scales_of(space)` reads the scales off a `jt.Space`.

Three entry points: `chunk_hypergradient` differentiates any scanned chunk for one
member (the core both others use); `hypergradient` is the own-loop form, over stacked
parameters and optimizer states from `jt.init_population`; `Trainer.
train_with_hypergradients` is the engine's, which the `jt.HyperGradient` strategy uses
through the sweep's runner.

This module depends on JAX, optax and the space only (the engine imports it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtune._routing import read_signature, route
from jaxtune.space import Choice, Fixed, LogUniform, RandInt, Space, Uniform

MODES = ("forward", "reverse")
SCALES = ("log", "linear")


def check_mode(mode: Any, window: Any) -> None:
    """Raises ValueError unless `mode` is one of MODES and `window` None or a positive int."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be 'forward' or 'reverse', got mode={mode!r}.")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int | np.integer)
                               or window < 1):
        raise ValueError(f"`window` must be None (every step) or a positive int, got {window!r}.")
    if window is not None and mode == "forward":
        raise ValueError("`window` truncates reverse mode only; forward mode carries its tangents "
                         "through every step at no extra memory. Pass mode='reverse' or drop "
                         "`window`.")


def chunk_hypergradient(step: Callable, carry: Any, xs: Any, evaluate: Callable,
                        hparams: Mapping[str, jax.Array], *, mode: str = "forward",
                        window: int | None = None) -> tuple[jax.Array, dict, Any, Any]:
    """One member's chunk of training, and its metric's derivative in `hparams`.

    Args:
      step: `step(carry, x, hparams) -> (carry, out)`, one training step (a `lax.scan`
        body given the differentiated hyperparameters).
      carry: the state the chunk starts from.
      xs: the scanned inputs, each leaf [T, ...].
      evaluate: `evaluate(carry, hparams) -> scalar`, the metric of the chunk's end state.
      hparams: the differentiated hyperparameters, name -> float scalar (linear scale).
      mode, window: see the module docstring.

    Returns:
      `(value, grads, end, outs)`: the metric at the end, name -> d value / d h, the
      end state and the stacked step outputs [T, ...].
    """
    check_mode(mode, window)
    hparams = dict(hparams)

    def run(start, inputs, h):
        end, outs = jax.lax.scan(lambda c, x: step(c, x, h), start, inputs)
        return evaluate(end, h), (end, outs)

    if mode == "forward":
        names = list(hparams)
        basis = {name: jnp.eye(len(names), dtype=jnp.result_type(hparams[name]))[:, i]
                 for i, name in enumerate(names)}

        def push(tangent):
            return jax.jvp(functools.partial(run, carry, xs), (hparams,), (tangent,),
                           has_aux=True)

        value, tangents, (end, outs) = jax.vmap(push, out_axes=(None, 0, None))(basis)
        return value, {name: tangents[i] for i, name in enumerate(names)}, end, outs
    steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    skipped = 0 if window is None else max(steps - window, 0)
    head_outs = None
    if skipped:  # the steps before the window run outside the gradient
        frozen = jax.lax.stop_gradient(hparams)
        carry, head_outs = jax.lax.scan(lambda c, x: step(c, x, frozen), carry,
                                        jax.tree_util.tree_map(lambda a: a[:skipped], xs))
        xs = jax.tree_util.tree_map(lambda a: a[skipped:], xs)
    (value, (end, outs)), grads = jax.value_and_grad(
        lambda h: run(jax.lax.stop_gradient(carry), xs, h), has_aux=True)(hparams)
    if head_outs is not None:
        outs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), head_outs, outs)
    return value, grads, end, outs


def member_chunk(one_step: Callable, evaluate: Callable, rollback: Callable, member: Any,
                 positions: Any, *, names: Sequence[str], scale: Mapping[str, str], mode: str,
                 window: int | None) -> tuple[Any, jax.Array, Any, dict[str, jax.Array]]:
    """One member of an engine population through a chunk, with its hypergradients.

    The engine's step functions come as arguments (the engine imports this module):
    `one_step(member, position) -> (member, (loss, metrics))` is `engine.step.
    member_step` bound to the trainer, `evaluate(member)` the metric of
    `evaluate_member`, `rollback` `engine.step.rollback`. `member` is one
    `PopulationState` row; its `hparams[names]` are differentiated.

    Returns:
      `(member, losses, metrics, grads)`: as `rollback` returns them, and name -> float32
      derivative in its own scale, NaN for a member that diverged.
    """
    def body(state, position, h):
        return one_step(state._replace(hparams={**state.hparams, **h}), position)

    _, grads, end, (losses, metrics) = chunk_hypergradient(
        body, member, positions, lambda state, h: evaluate(state),
        {k: member.hparams[k] for k in names}, mode=mode, window=window)
    end, losses, metrics = rollback(member, end._replace(hparams=member.hparams), losses, metrics)
    grads = in_scale(grads, member.hparams, scale)
    return end, losses, metrics, {k: jnp.where(end.alive, g.astype(jnp.float32), jnp.nan)
                                  for k, g in grads.items()}


def check_request(hparams: Mapping[str, Any], names: Sequence[str], metric: str,
                  eval_names: Sequence[str], no_eval_data: bool, mode: str,
                  window: int | None) -> None:
    """Refuses what `Trainer.train_with_hypergradients` cannot differentiate, naming it."""
    check_mode(mode, window)
    if no_eval_data:
        raise ValueError("train_with_hypergradients differentiates an eval metric; pass "
                         "`eval_data` to `Trainer(...)`.")
    for name in names:
        if name not in hparams or not jnp.issubdtype(jnp.result_type(hparams[name]),
                                                     jnp.floating):
            raise ValueError(f"`names` holds {name!r}, which is not a float hyperparameter of "
                             f"this population ({', '.join(map(repr, hparams))}).")
    if metric not in eval_names:
        raise ValueError(f"`metric`={metric!r} is not an eval metric; `evaluate` returns "
                         f"{', '.join(map(repr, eval_names))}.")


def in_scale(grads: Mapping[str, jax.Array], hparams: Mapping[str, jax.Array],
             scale: Mapping[str, str]) -> dict[str, jax.Array]:
    """Linear-scale derivatives turned into each name's own scale (log: times the value)."""
    return {name: g * hparams[name] if scale.get(name, "linear") == "log" else g
            for name, g in grads.items()}


def scales_of(space: Space, names: Sequence[str] | None = None) -> dict[str, str]:
    """Each continuous dynamic dimension's scale: "log" for `loguniform`, else "linear".

    Args:
      space: the sweep's `jt.Space`.
      names: the dimensions wanted (default: every `uniform` and `loguniform` one).

    Raises:
      ValueError: a name is not in `space`, or names a dimension that has no gradient
        (a `randint`, a `choice`, a `fixed` or a static one).
    """
    if names is None:
        names = [n for n in space.dynamic_names if isinstance(space[n], Uniform | LogUniform)]
    out = {}
    for name in names:
        if name not in space:
            raise ValueError(f"hypergradient: {name!r} is not a dimension of the space "
                             f"({', '.join(map(repr, space.names))}).")
        dimension = space[name]
        if not isinstance(dimension, Uniform | LogUniform):
            kind = ("a static" if name in space.static_names else "an integer"
                    if isinstance(dimension, RandInt) else "a discrete"
                    if isinstance(dimension, Choice | Fixed) else f"a {type(dimension).__name__}")
            raise ValueError(
                f"hypergradient: {name!r} is {kind} dimension ({dimension!r}); only "
                "`jt.uniform` and `jt.loguniform` dimensions have a gradient. Drop it from "
                "`names`, or make it continuous.")
        out[name] = "log" if isinstance(dimension, LogUniform) else "linear"
    return out


class Hypergradients(NamedTuple):
    """What `hypergradient` returns: the trained chunk and its metric's derivatives.

    `params` and `opt_state` are the stacked trees after the chunk: continue training
    from them.
    """

    value: jax.Array  # float [M], the validation metric of every member after the chunk
    grads: dict[str, jax.Array]  # name -> float [M], d value / d hyperparameter, own scale
    params: Any  # the stacked parameters after the chunk
    opt_state: Any  # the stacked optimizer states after the chunk
    losses: jax.Array  # float [M, T], every member's training loss at every step


def _own_step(loss_fn: Callable, make_optimizer: Callable, others: Mapping[str, jax.Array]):
    """The scan body of one member of `hypergradient`: loss, gradient, optimizer update."""
    loss_signature = read_signature(loss_fn, "loss_fn", 2)
    optimizer_signature = read_signature(make_optimizer, "make_optimizer", 0)

    def step(carry, batch, h):
        params, opt_state = carry
        values = {**others, **h}  # routed as the engine routes them (`jaxtune._routing`)
        loss, grads = jax.value_and_grad(
            lambda p: loss_fn(p, batch, **route(values, loss_signature, False)))(params)
        optimizer = make_optimizer(**route(values, optimizer_signature, True))
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
            updates, opt_state = optimizer.update(grads, opt_state, params, value=loss)
        else:
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


@functools.partial(jax.jit, static_argnames=("loss_fn", "make_optimizer", "eval_fn", "names",
                                              "scale", "mode", "window"))
def _population(loss_fn, make_optimizer, eval_fn, params, opt_state, hparams, batches,
                eval_data, *, names, scale, mode, window):
    def one(p, s, h):
        others = {k: v for k, v in h.items() if k not in names}
        value, grads, (p, s), losses = chunk_hypergradient(
            _own_step(loss_fn, make_optimizer, others), (p, s), batches,
            lambda carry, _: eval_fn(carry[0], eval_data), {k: h[k] for k in names},
            mode=mode, window=window)
        return value, in_scale(grads, h, dict(scale)), p, s, losses

    return jax.vmap(one)(params, opt_state, hparams)


def hypergradient(loss_fn: Callable, make_optimizer: Callable[..., optax.GradientTransformation],
                  params: Any, opt_state: Any, hparams: Mapping[str, Any], batches: Any,
                  eval_fn: Callable, eval_data: Any, *, names: Sequence[str] | None = None,
                  scale: Mapping[str, str] | None = None, mode: str = "forward",
                  window: int | None = None) -> Hypergradients:
    """Trains every member T steps and returns d(validation metric) / d(hyperparameters).

    The own-loop form (`jt.init_population`'s stacked trees): each member runs T steps
    of `make_optimizer(**hparams_i)` on `loss_fn`, one per batch of `batches`, then
    `eval_fn` scores it; the derivative of that score with respect to each of `names`,
    at every member's own values, comes back with the trained state.

      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> from jaxtune.hypergradient import hypergradient
      >>> x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]; y = 3 * x
      >>> loss_fn = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> make_optimizer = lambda learning_rate: optax.sgd(learning_rate)
      >>> hparams = {"learning_rate": np.array([0.01, 0.1], np.float32)}
      >>> params, opt_state = jt.init_population(make_optimizer, jnp.zeros((1, 1)), hparams)
      >>> batches = (np.stack([x] * 20), np.stack([y] * 20))  # 20 steps, full batch
      >>> out = hypergradient(loss_fn, make_optimizer, params, opt_state, hparams, batches,
      ...                     loss_fn, (x, y), scale={"learning_rate": "log"})
      >>> bool(out.grads["learning_rate"][0] < 0)  # a larger rate would do better
      True

    Args:
      loss_fn: static; `loss_fn(params, batch, **hparams) -> scalar loss`, given the
        hyperparameters its signature names (the others it need not take).
      make_optimizer: static; `make_optimizer(**hparams) -> optax.GradientTransformation`,
        given the names its signature takes (all of them with `**kwargs`).
      params, opt_state: stacked trees [M, ...] (from `jt.init_population`).
      hparams: name -> float array [M].
      batches: one batch per step, each leaf [T, ...]; every member sees the same.
      eval_fn: static; `eval_fn(params, eval_data) -> scalar`, the differentiable
        validation metric (a loss, not an accuracy, whose gradient is zero).
      eval_data: the validation data, passed whole.
      names: static; the hyperparameters differentiated (default: every one in `hparams`).
      scale: static; name -> "log" or "linear" (default "linear"): the scale each
        derivative is taken in (`scales_of(space)` reads it off a `jt.Space`).
      mode, window: static; "forward" (tangents, memory independent of T) or
        "reverse" (through the last `window` steps, all by default).

    Returns:
      A `Hypergradients`: `value` [M], `grads` name -> [M], the trained `params` and
      `opt_state`, and `losses` [M, T].
    """
    check_mode(mode, window)
    hparams = {k: jnp.asarray(v) for k, v in hparams.items()}
    names = tuple(hparams if names is None else names)
    scale = dict(scale or {})
    _check_names(hparams, names, scale)
    value, grads, params, opt_state, losses = _population(
        loss_fn, make_optimizer, eval_fn, params, opt_state, hparams, batches, eval_data,
        names=names, scale=tuple(sorted(scale.items())), mode=mode, window=window)
    return Hypergradients(value, grads, params, opt_state, losses)


def _check_names(hparams: Mapping[str, jax.Array], names: Sequence[str],
                 scale: Mapping[str, str]) -> None:
    """Refuses names outside `hparams`, integer ones and scales other than log / linear."""
    shapes = {k: np.shape(v) for k, v in hparams.items()}
    if not shapes or any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) > 1:
        raise ValueError("`hparams` must map each name to a 1-D array of one common length (the "
                         f"number of members), got shapes {shapes or 'none'}.")
    for name in names:
        if name not in hparams:
            raise ValueError(f"`names` holds {name!r}, which is not in `hparams` "
                             f"({', '.join(map(repr, hparams))}).")
        if not jnp.issubdtype(hparams[name].dtype, jnp.floating):
            raise ValueError(f"hyperparameter {name!r} is {hparams[name].dtype}, which has no "
                             "gradient; pass it as floats or leave it out of `names`.")
    for name, kind in scale.items():
        if kind not in SCALES or name not in names:
            raise ValueError(f"`scale[{name!r}]` must be 'log' or 'linear' for a name in "
                             f"`names` {tuple(names)}, got {kind!r}.")
