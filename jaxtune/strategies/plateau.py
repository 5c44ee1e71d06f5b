"""Decay a hyperparameter when a member's validation metric stops improving."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxtune._checks import check_in_range, check_nonnegative, nonnegative_int
from jaxtune.strategies.base import (
    CONTINUE,
    Decision,
    Report,
    Search,
    Strategy,
    resolve_metric,
)


class PlateauDecay(Strategy):
    """Multiplies a hyperparameter by `factor` when a member's metric stops improving.

    Keras' `ReduceLROnPlateau` for every member of a sweep, judged on a recorded
    metric (a validation loss, an accuracy) at record points. `jt.reduce_on_plateau`
    does the same inside the optimizer, on the minibatch loss at every step; this
    strategy watches what the sweep evaluates, and leaves the optimizer as it is:
    the new value is the member's hyperparameter from then on (`make_optimizer`
    is built from it at every step), recorded in `result.hparam_history`.

    The rule, per member, at each of its record points: a value better than the
    best so far by more than `rtol * |best| + atol` becomes the best and resets
    the count; otherwise the count grows, and when it reaches `patience` the
    hyperparameter is multiplied by `factor` (never below `min_value`), the count
    resets and the next `cooldown` record points are ignored. A member that
    diverged is out of the population and is not decided.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> x = np.linspace(-1, 1, 128, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   jt.Space(learning_rate=jt.choice([0.5, 1.9])), data=(x, y),
      ...                   batch_size=32, steps=60, eval_every=5, eval_data=(x, y),
      ...                   progress=False, strategy=jt.PlateauDecay(factor=0.5, patience=1))
      >>> history = result.hparam_history["learning_rate"]  # [members, record points]
      >>> bool((history[:, -1] < history[:, 0]).all())  # decayed once the loss stalled
      True

    Args:
      hparam: the dynamic hyperparameter to decay (default "learning_rate").
      factor: in (0, 1]; multiplies the hyperparameter at each reduction.
      patience: record points without improvement before a reduction (0 acts as 1).
      rtol, atol: the improvement required, relative to `|best|` and absolute.
      cooldown: record points ignored after a reduction.
      min_value: the hyperparameter never goes below it.
      metric: the metric watched (default: the sweep's `metric`).
      mode: "min" or "max" (default: the sweep's, or judged from the metric's name).
    """

    def __init__(self, hparam: str = "learning_rate", *, factor: float = 0.1,
                 patience: int = 2, rtol: float = 1e-4, atol: float = 0.0, cooldown: int = 0,
                 min_value: float = 0.0, metric: str | None = None, mode: str | None = None):
        if not isinstance(hparam, str):
            raise TypeError(f"`hparam` must be a hyperparameter name, got {hparam!r}.")
        check_in_range("factor", factor, 0.0, 1.0, closed_low=False)
        check_in_range("rtol", rtol, 0.0, 1.0)
        check_nonnegative("atol", atol)
        check_nonnegative("min_value", min_value)
        self.hparam = hparam
        self.factor, self.rtol, self.atol = float(factor), float(rtol), float(atol)
        self.min_value = float(min_value)
        self.patience = nonnegative_int("patience", patience)
        self.cooldown = nonnegative_int("cooldown", cooldown)
        self.metric, self.mode = metric, mode
        self._best: dict[int, float] = {}  # member -> best value so far (minimized)
        self._count: dict[int, int] = {}  # member -> record points without improvement
        self._cooling: dict[int, int] = {}  # member -> record points still ignored

    def setup(self, search: Search) -> None:
        self._metric, self._mode = resolve_metric(search, self.metric, self.mode, "PlateauDecay")
        if self.hparam not in search.space.dynamic_names:
            raise ValueError(
                f"PlateauDecay: `hparam`={self.hparam!r} is not a dynamic hyperparameter of the "
                f"space (dynamic: {', '.join(map(repr, search.space.dynamic_names)) or 'none'}); "
                "decay a swept, non-static dimension, e.g. `jt.loguniform(...)` or "
                "`jt.fixed(...)`.")

    def decide(self, search: Search, report: Report) -> Decision:
        curve = search.scores(self._metric, self._mode)  # lower is better
        running = report.reached[search.status[report.reached] == "running"]
        values = curve[running, search.record_index(running)]
        current = search.hparams[self.hparam]
        new: dict[int, dict[str, Any]] = {}
        for member, value in zip(running.tolist(), values.tolist()):
            if self._cooling.get(member, 0) > 0:
                self._cooling[member] -= 1
                continue
            best = self._best.get(member, math.inf)
            if math.isfinite(value) and (
                    not math.isfinite(best)
                    or value < best - self.rtol * abs(best) - self.atol):
                self._best[member], self._count[member] = value, 0
                continue
            self._count[member] = self._count.get(member, 0) + 1
            if self._count[member] >= max(self.patience, 1):
                lowered = max(float(current[member]) * self.factor, self.min_value)
                new[member] = {self.hparam: np.float32(lowered).item()}
                self._count[member], self._cooling[member] = 0, self.cooldown
        return Decision(hparams=new) if new else CONTINUE

    def state_dict(self) -> dict[str, Any]:
        return {name: {str(m): v for m, v in getattr(self, f"_{name}").items()}
                for name in ("best", "count", "cooling")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, kind in (("best", float), ("count", int), ("cooling", int)):
            setattr(self, f"_{name}", {int(m): kind(v) for m, v in state[name].items()})

    def __repr__(self) -> str:
        return (f"PlateauDecay({self.hparam!r}, factor={self.factor:g}, "
                f"patience={self.patience}, rtol={self.rtol:g}, atol={self.atol:g}, "
                f"cooldown={self.cooldown}, min_value={self.min_value:g}, "
                f"metric={self.metric!r}, mode={self.mode!r})")
