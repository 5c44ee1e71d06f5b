"""One member's work, traced: an optimizer step, the divergence rollback, an evaluation.

The optimizer is built *inside* the traced step, `make_optimizer(**hparams)`, so
every hyperparameter is an array and new values never recompile. The optimizer's
`update` receives the minibatch loss as `value=` when it accepts extra arguments
(`optax.GradientTransformationExtraArgs`), which is what `reduce_on_plateau` needs.

A member whose loss or parameters become non-finite during a chunk of training is
rolled back to its state at the start of the chunk, frozen there and flagged with
the step it diverged at; nothing spreads to the other members.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxtune.engine.contract import Contract, Returns
from jaxtune.engine.state import (
    PopulationState,
    combine,
    is_inexact,
    partition,
    tree_all_finite,
    tree_where,
)


def member_step(contract: Contract, returns: Returns, batch_of: Callable, keys: jax.Array,
                member: PopulationState, position: jax.Array):
    """One optimizer step of one member; returns the member, its loss and aux metrics.

    `batch_of(member, position)` is the member's batch at this step (its source's
    `batch`). Only the inexact arrays of the parameters reach the gradient and the
    optimizer; integer arrays and the model state are carried beside them.
    """
    batch = batch_of(member, position)
    step_key = jax.random.fold_in(jax.random.fold_in(keys[2], member.seed), member.step)
    trainable, frozen = partition(member.params, is_inexact)

    def loss_of(trainable):
        params = combine(trainable, frozen, returns.static_params)
        loss, model_state, metrics = contract.loss_parts(
            returns, params, member.model_state, batch, member.hparams, step_key)
        return loss, (model_state, metrics)

    grad_fn = jax.value_and_grad(loss_of, has_aux=True)
    (loss, (model_state, metrics)), grads = grad_fn(trainable)
    optimizer = contract.optimizer(member.hparams)
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        updates, opt_state = optimizer.update(grads, member.opt_state, trainable, value=loss)
    else:
        updates, opt_state = optimizer.update(grads, member.opt_state, trainable)
    member = member._replace(
        params=combine(optax.apply_updates(trainable, updates), frozen),
        opt_state=opt_state,
        model_state=model_state,
        step=member.step + 1,
    )
    return member, (loss.astype(jnp.float32), metrics)


def rollback(member: PopulationState, end: PopulationState, losses: jax.Array,
             metrics: Mapping[str, jax.Array]):
    """Keeps a chunk's `end` state, or rolls a member that diverged back to `member`.

    Divergence is judged once per chunk, not per step (a per-step guard costs a
    pass over the parameters and optimizer state every step, ~8% of a small
    model's throughput): the steps run unguarded, then a member whose loss went
    non-finite during the chunk, or whose parameters are non-finite at its end,
    is rolled back to its state at the start of the chunk and frozen there. A
    member is independent of the others, so a NaN never reaches them.

    Returns:
      `(member, losses, metrics)`, the losses and metrics NaN from the step the
      member diverged at (and everywhere for a member frozen before the chunk).
    """
    steps = losses.shape[0]
    bad = ~jnp.isfinite(losses)
    first_bad = jnp.argmax(bad)  # 0 when none is bad
    failed = bad.any() | ~tree_all_finite((end.params, end.model_state))
    alive = member.alive & ~failed
    diverged_at = member.step + jnp.where(bad.any(), first_bad, steps - 1)
    counted = member.alive & (~bad.any() | (jnp.arange(steps) < first_bad))
    member = member._replace(
        params=tree_where(alive, end.params, member.params),
        opt_state=tree_where(alive, end.opt_state, member.opt_state),
        model_state=tree_where(alive, end.model_state, member.model_state),
        step=end.step,
        alive=alive,
        diverged_step=jnp.where(member.alive & failed, diverged_at, member.diverged_step),
    )
    masked = {k: jnp.where(counted, v, jnp.nan) for k, v in metrics.items()}
    return member, jnp.where(counted, losses, jnp.nan), masked


def evaluate_member(contract: Contract, returns: Returns, eval_data: Any, keys: jax.Array,
                    member: PopulationState) -> dict[str, jax.Array]:
    """One member's eval metrics, float32 scalars (NaN once it diverged)."""
    params = combine(member.params, returns.static_params)
    if contract.eval_fn is None:
        loss, _, _ = contract.loss_parts(returns, params, member.model_state, eval_data,
                                         member.hparams, keys[2])
        out = {"eval_loss": loss}
    else:
        out = contract.evaluate(params, member.model_state, eval_data, member.hparams,
                                member.step)
        if not isinstance(out, Mapping):
            out = {returns.eval_names[0]: out}
    return {k: jnp.where(member.alive, jnp.asarray(out[k], jnp.float32), jnp.nan)
            for k in returns.eval_names}


def init_member(contract: Contract, keys: jax.Array, seed_params: Any, init_params: Any,
                hparams: Mapping[str, jax.Array], seed: jax.Array):
    """One member's `(params, model_state, opt_state)` at step 0."""
    params, model_state = contract.init_member(hparams, seed, keys, seed_params, init_params)
    trainable = partition(params, is_inexact)[0]
    return params, model_state, contract.optimizer(hparams).init(trainable)
