"""Hypergradient descent on the hyperparameters themselves, at record points.

With this strategy the runner trains every chunk with `Trainer.
train_with_hypergradients`: beside the usual records it gets, for every member,
the derivative of an eval metric at the chunk's end with respect to each continuous
dynamic hyperparameter, taken through the chunk's own steps (`jaxtune.hypergradient`).
At each of its record points every member then takes one gradient step on its
hyperparameters, in their own scale (log for `loguniform`, linear for `uniform`),
clipped into the space:

    log(lr) <- clip(log(lr) - step_size * d metric / d log(lr), log(low), log(high))

(each step optionally bounded by `max_step`).

A hypergradient is greedy: it sees the chunk of `eval_every` steps it was computed
over, not the rest of the run (short-horizon bias; Wu et al., ICLR 2018), so a chunk
long enough for the hyperparameter's effect to show gives a better direction.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxtune._checks import positive_int
from jaxtune.hypergradient import check_mode, scales_of
from jaxtune.strategies.base import CONTINUE, Decision, Report, Search, Strategy, resolve_metric


class HyperGradient(Strategy):
    """Each member descends its own hyperparameters' hypergradient every `every` steps.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> from jaxtune.strategies.hypergradient import HyperGradient
      >>> x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   jt.Space(learning_rate=jt.loguniform(1e-3, 0.5)), data=(x, y),
      ...                   batch_size=64, steps=60, eval_every=10, trials=2, progress=False,
      ...                   eval_data=(x, y), strategy=HyperGradient(lr=0.1, every=10))
      >>> rates = result.hparam_history["learning_rate"]  # [members, record points]
      >>> bool((rates[:, -1] > rates[:, 0]).all())  # both rates grew: a larger one fits faster
      True

    Args:
      lr: the step size on the hyperparameters (in their own scale), positive.
      every: steps between updates; a multiple of the sweep's `eval_every`. Each update
        uses the hypergradient of the chunk that ends at that record point.
      names: the hyperparameters tuned (default: every `uniform` and `loguniform`
        dimension of the space; discrete, integer and static ones have no gradient).
      metric: the eval metric differentiated (default: the sweep's). It must be one of
        `eval_fn`'s and differentiable: a loss, not an accuracy (whose gradient is 0).
      mode: "min" or "max" (default: the sweep's, or judged from the metric's name).
      method: "forward" (default) or "reverse" differentiation (`jaxtune.hypergradient`).
      window: reverse mode only: differentiate through the chunk's last `window` steps.
      max_step: the most one update may move a hyperparameter in its own scale (0.5: a
        factor of at most e^0.5 on a log scale), or None (unbounded). Hypergradients
        are large and erratic where training is unstable (a learning rate near
        divergence): bounding the step keeps one update from jumping across the space.
    """

    def __init__(self, *, lr: float, every: int, names: Sequence[str] | None = None,
                 metric: str | None = None, mode: str | None = None, method: str = "forward",
                 window: int | None = None, max_step: float | None = None):
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (
                math.isfinite(lr) and lr > 0):
            raise ValueError(f"`lr` must be a positive step size, got {lr!r}; e.g. lr=0.1.")
        self.lr = float(lr)
        self.every = positive_int("every", every)
        if isinstance(names, str):
            raise TypeError(f"`names` must be a sequence of names, got the string {names!r}; "
                            f"write names=[{names!r}].")
        self.names = None if names is None else tuple(names)
        self.metric = metric
        self.mode = mode
        check_mode(method, window)
        self.method = method
        self.window = window
        if max_step is not None and (isinstance(max_step, bool) or not isinstance(
                max_step, numbers.Real) or not (math.isfinite(max_step) and max_step > 0)):
            raise ValueError(f"`max_step` must be None or a positive number, got {max_step!r}.")
        self.max_step = None if max_step is None else float(max_step)

    def setup(self, search: Search) -> None:
        self._scale = scales_of(search.space, self.names)
        if not self._scale:
            raise ValueError("HyperGradient: the space has no `uniform` or `loguniform` dimension "
                             "to differentiate; add one, or use another strategy.")
        self._metric, self._mode = resolve_metric(search, self.metric, self.mode, "HyperGradient")
        if self._metric == "train_loss":  # an aux metric is refused by the trainer
            raise ValueError(
                "HyperGradient: `metric`='train_loss' is not an eval metric; it differentiates "
                "what `eval_fn` returns on `eval_data` (pass `eval_data`, and e.g. "
                "metric='eval_loss').")
        if self.every % search.eval_every or self.every > search.steps:
            raise ValueError(
                f"HyperGradient: `every` must be a multiple of the sweep's eval_every="
                f"{search.eval_every} (updates happen at record points) and at most steps="
                f"{search.steps}, got every={self.every}.")
        self.hypergradients = {"names": tuple(self._scale), "metric": self._metric,
                               "scale": self._scale, "mode": self.method, "window": self.window}

    def decide(self, search: Search, report: Report) -> Decision:
        step, status = search.step, search.status
        due = report.reached[(step[report.reached] % self.every == 0)
                             & (step[report.reached] < search.steps)
                             & (status[report.reached] == "running")]
        if due.size == 0:
            return CONTINUE
        sign = 1.0 if self._mode == "min" else -1.0
        hparams = search.hparams
        new: dict[int, dict[str, Any]] = {}
        for member in due.tolist():
            grads = {name: float(report.hypergradients[name][member]) for name in self._scale}
            if not all(math.isfinite(g) for g in grads.values()):
                _warn_not_finite(member, grads)
                continue
            new[member] = {name: self._moved(search, name, float(hparams[name][member]),
                                             sign * grads[name]) for name in self._scale}
        return Decision(hparams=new) if new else CONTINUE

    def _moved(self, search: Search, name: str, value: float, grad: float) -> float:
        """`value` after one step down `grad` in its dimension's scale, clipped to its bounds."""
        dimension = search.space[name]
        step = self.lr * grad
        if self.max_step is not None:
            step = min(max(step, -self.max_step), self.max_step)
        low, high = float(np.float32(dimension.low)), float(np.float32(dimension.high))
        if self._scale[name] == "log":
            return float(np.clip(math.exp(math.log(value) - step), low, high))
        return float(np.clip(value - step, low, high))

    def __repr__(self) -> str:
        return (f"HyperGradient(lr={self.lr:g}, every={self.every}, names={self.names!r}, "
                f"metric={self.metric!r}, mode={self.mode!r}, method={self.method!r}, "
                f"window={self.window!r}, max_step={self.max_step!r})")


def _warn_not_finite(member: int, grads: dict[str, float]) -> None:
    """Warns that a running member's hypergradient is not finite, and the usual causes."""
    warnings.warn(
        f"HyperGradient: member {member}'s hypergradients are not finite ({grads}); its "
        "hyperparameters stay as they are. Usual causes: `optax.adam`/`adamw` with the default "
        "eps_root=0, whose square root has an infinite derivative where a gradient is exactly "
        "0 (pass eps_root=1e-12), or a metric or loss not differentiable there.",
        RuntimeWarning, stacklevel=3)
