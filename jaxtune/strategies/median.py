"""The median stopping rule: the worked example of a `Strategy`."""

from __future__ import annotations

import numpy as np

from jaxtune._checks import nonnegative_int, positive_int
from jaxtune.strategies.base import (
    CONTINUE,
    Decision,
    Report,
    Search,
    Strategy,
    resolve_metric,
)


class MedianStopping(Strategy):
    """Stops a configuration that is worse than the median of the others at the same step.

    At every record point t (a step count), a running configuration whose metric at t
    (the mean over its seeds) is worse than the median, at t, of every other
    configuration that reached t is stopped, all its seeds together. A configuration
    that diverged counts as the worst. No decision is taken before `min_steps`, nor
    while fewer than `min_trials` other configurations have reached t.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> x = np.linspace(-1, 1, 128, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   jt.Space(learning_rate=jt.loguniform(1e-4, 1.0)), data=(x, y),
      ...                   batch_size=32, steps=40, eval_every=10, trials=8, progress=False,
      ...                   strategy=jt.MedianStopping(min_steps=10, min_trials=3))
      >>> int((result.status == "stopped").sum()) > 0
      True

    Args:
      min_steps: no configuration is stopped before this step (a grace period).
      min_trials: how many other configurations must have reached a step before
        the rule applies there.
      metric: the metric to compare (default: the sweep's `metric`).
      mode: "min" or "max" (default: the sweep's, or judged from the metric's name).

    References:
      Golovin et al., "Google Vizier: A Service for Black-Box Optimization", KDD 2017.
    """

    def __init__(self, *, min_steps: int = 0, min_trials: int = 3, metric: str | None = None,
                 mode: str | None = None):
        self.min_steps = nonnegative_int("min_steps", min_steps)
        self.min_trials = positive_int("min_trials", min_trials)
        self.metric = metric
        self.mode = mode

    def setup(self, search: Search) -> None:
        self._metric, self._mode = resolve_metric(search, self.metric, self.mode, "MedianStopping")

    def decide(self, search: Search, report: Report) -> Decision:
        curve = search.scores(self._metric, self._mode)  # lower is better
        status, record_steps = search.status, search.record_steps
        curve = np.where(np.isnan(curve) & (status == "diverged")[:, None], np.inf, curve)
        stop: list[int] = []
        for column in np.unique(search.record_index(report.reached)):
            if record_steps[column] < self.min_steps:
                continue
            scores, trials = search.trial_scores(curve[:, column])
            for trial in np.unique(search.member_trial[report.reached]):
                members = search.trial_members(trial)
                if not np.all(status[members] == "running"):
                    continue
                own = scores[trials == trial]
                others = scores[(trials != trial) & ~np.isnan(scores)]
                if own.size == 0 or np.isnan(own[0]) or others.size < self.min_trials:
                    continue
                if own[0] > np.median(others):
                    stop.extend(members.tolist())
        return Decision(stop=tuple(stop)) if stop else CONTINUE

    def __repr__(self) -> str:
        return (f"MedianStopping(min_steps={self.min_steps}, min_trials={self.min_trials}, "
                f"metric={self.metric!r}, mode={self.mode!r})")
