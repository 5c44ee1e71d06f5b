"""Population-based training: the worst members take the best members' state, then explore.

Every `ready` steps (a multiple of `eval_every`), the running members of a static
group are ranked by the metric at that record point (a diverged member is out of
the population). Each of the worst `fraction` copies a member drawn at random from
the best `fraction`: its parameters, optimizer state, model state and step, on the
device (exploit); the copier keeps its own seed, so its own minibatch order, as in
the paper. Then each of its dynamic hyperparameters is resampled from the
space with probability `resample_probability`, or else perturbed by a factor drawn
from `perturb` in the dimension's own scale (explore), always staying in the space:

  * `loguniform(low, high)`: value × factor (a shift of log(factor) in log space),
    clipped into [low, high];
  * `uniform(low, high)`: value × factor, clipped into [low, high];
  * `randint(low, high)`: round(value × factor), moved by at least one in the
    factor's direction, clipped into [low, high - 1];
  * numeric `choice`: the next larger (factor > 1) or smaller (factor < 1) option;
  * a `Family` (`jt.optimizer_choice`): kept (names have no order to move along), but
    resampled like any dimension with `resample_probability`; a member that copies one
    of another family takes its whole state, every family's part included;
  * `fixed` and static dimensions never change.

The runner records every copy as (step, target, source) and every member's
hyperparameters at every record point, so a result shows each member's
hyperparameter schedule and its lineage. Decisions draw from
`numpy.random.default_rng((seed, step))`, so a resumed run decides exactly as the
uninterrupted one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxtune._checks import check_in_range, nonnegative_int, positive_int
from jaxtune.space import Choice, Family, Fixed, LogUniform, RandInt, Space, Uniform
from jaxtune.strategies.base import (
    CONTINUE,
    Decision,
    Report,
    Search,
    Strategy,
    resolve_metric,
)


def _probability(name: str, value: Any, low_open: bool, high: float) -> float:
    """`value` as a float in [0, high] ((0, high] with `low_open`); raises naming `name`."""
    check_in_range(name, value, 0, high, closed_low=not low_open)
    return float(value)


class PBT(Strategy):
    """Population-based training: exploit (copy the best) and explore (perturb) every `ready` steps.

    The whole population trains at once (`members_in_flight` is every member), each
    member on its own: with `seeds` > 1 every member is ranked on its own too.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> x = np.linspace(-1, 1, 128, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   jt.Space(learning_rate=jt.loguniform(1e-4, 1.0)), data=(x, y),
      ...                   batch_size=32, steps=60, eval_every=10, trials=8, progress=False,
      ...                   strategy=jt.PBT(ready=20, fraction=0.25))
      >>> result.lineage.shape  # (step, target, source): 2 copies at steps 20 and 40
      (4, 3)

    Args:
      ready: steps between exploit/explore rounds; a multiple of the sweep's
        `eval_every`.
      fraction: the bottom fraction copies from the top fraction, in (0, 0.5].
      perturb: the factors an explored value is multiplied by, one drawn at random.
      resample_probability: the probability of drawing a hyperparameter afresh from
        the space instead of perturbing it, in [0, 1].
      seed: seeds the choices of sources, factors and resamples.
      metric: the metric ranking members (default: the sweep's `metric`).
      mode: "min" or "max" (default: the sweep's, or judged from the metric's name).

    References:
      Jaderberg et al., "Population Based Training of Neural Networks", 2017.
    """

    def __init__(self, *, ready: int, fraction: float = 0.25,
                 perturb: Sequence[float] = (0.8, 1.2), resample_probability: float = 0.25,
                 seed: int = 0, metric: str | None = None, mode: str | None = None):
        self.ready = positive_int("ready", ready)
        self.fraction = _probability("fraction", fraction, True, 0.5)
        if isinstance(perturb, str | bytes) or not isinstance(perturb, Sequence) or not perturb:
            raise TypeError(f"`perturb` must be a non-empty sequence of positive factors, e.g. "
                            f"(0.8, 1.2); got {perturb!r}.")
        for i, factor in enumerate(perturb):
            if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not (
                    math.isfinite(factor) and factor > 0):
                raise ValueError(f"`perturb[{i}]` must be a positive factor, got {factor!r}; "
                                 "e.g. perturb=(0.8, 1.2).")
        self.perturb = tuple(float(f) for f in perturb)
        self.resample_probability = _probability("resample_probability", resample_probability,
                                                 False, 1)
        self.seed = nonnegative_int("seed", seed)
        self.metric = metric
        self.mode = mode

    def setup(self, search: Search) -> None:
        self._metric, self._mode = resolve_metric(search, self.metric, self.mode, "PBT")
        if self.ready % search.eval_every or self.ready >= search.steps:
            example = search.eval_every * max(1, (search.steps // search.eval_every) // 5)
            raise ValueError(
                f"PBT: `ready` must be a multiple of the sweep's eval_every={search.eval_every} "
                f"(exploits happen at record points) and less than steps={search.steps}, got "
                f"ready={self.ready}; e.g. ready={example}.")
        population = len(search.configurations) * search.seeds
        if population < 2:
            raise ValueError(f"PBT needs a population of at least 2 members, got {population} "
                             "(trials x seeds); pass more `trials`.")
        static = search.configurations.columns
        keys = [tuple(repr(static[name][row]) for name in search.space.static_names)
                for row in range(len(search.configurations))]
        index: dict[tuple, int] = {}
        self._trial_group = np.array([index.setdefault(k, len(index)) for k in keys])

    def members_in_flight(self, search: Search) -> int | None:
        return len(search.configurations) * search.seeds

    def decide(self, search: Search, report: Report) -> Decision:
        step = search.step
        status = search.status
        ready = report.reached[(step[report.reached] % self.ready == 0)
                               & (step[report.reached] < search.steps)
                               & (status[report.reached] == "running")]
        if ready.size == 0:
            return CONTINUE
        curve = search.scores(self._metric, self._mode)  # lower is better
        hparams = search.hparams
        copy: dict[int, int] = {}
        new: dict[int, dict[str, Any]] = {}
        groups = self._trial_group[search.member_trial[ready]]
        for at in np.unique(step[ready]):
            for group in np.unique(groups):
                members = ready[(step[ready] == at) & (groups == group)]
                if members.size < 2:
                    continue
                values = curve[members, search.record_index(members)]
                values = np.where(np.isnan(values), np.inf, values)
                ranked = members[np.lexsort((members, values))]
                count = max(1, int(self.fraction * members.size))
                top, bottom = ranked[:count], ranked[-count:]
                rng = np.random.default_rng((self.seed, int(at), int(group)))
                for target in bottom.tolist():
                    source = int(top[rng.integers(top.size)])
                    copy[target] = source
                    values_of_source = {name: column[source] for name, column in hparams.items()}
                    new[target] = self.explore(search.space, values_of_source, rng)
        return Decision(copy=copy, hparams=new) if copy else CONTINUE

    def explore(self, space: Space, hparams: Mapping[str, Any], rng: np.random.Generator
                ) -> dict[str, Any]:
        """New values of the dynamic hyperparameters `hparams`, near them and in `space`."""
        out: dict[str, Any] = {}
        for name in space.dynamic_names:
            dimension, value = space[name], hparams[name]
            if isinstance(dimension, Fixed):
                out[name] = value
            elif rng.random() < self.resample_probability:
                out[name] = dimension.sample(rng, 1)[0].item()
            else:
                out[name] = _perturb(dimension, value, self.perturb[rng.integers(len(self.perturb))])
        return out

    def __repr__(self) -> str:
        return (f"PBT(ready={self.ready}, fraction={self.fraction:g}, perturb={self.perturb}, "
                f"resample_probability={self.resample_probability:g}, seed={self.seed}, "
                f"metric={self.metric!r}, mode={self.mode!r})")


def _perturb(dimension: Any, value: Any, factor: float) -> Any:
    """`value` moved by `factor` in `dimension`'s own scale, kept in the dimension."""
    if isinstance(dimension, Family):  # names have no order to move along: keep the family
        return value
    if isinstance(dimension, LogUniform | Uniform):
        low, high = np.float32(dimension.low), np.float32(dimension.high)
        return float(np.clip(np.float32(float(value) * factor), low, high))
    if isinstance(dimension, RandInt):
        moved = round(int(value) * factor)
        if moved == int(value) and factor != 1.0:
            moved += 1 if factor > 1.0 else -1
        return int(min(max(moved, dimension.low), dimension.high - 1))
    if isinstance(dimension, Choice):
        options = sorted(dimension.values)
        stored = np.asarray(options, dimension.dtype)
        here = int(np.argmin(np.abs(stored.astype(np.float64) - float(value))))
        shift = 0 if factor == 1.0 else (1 if factor > 1.0 else -1)
        return options[min(max(here + shift, 0), len(options) - 1)]
    raise TypeError(f"PBT cannot perturb a dimension of type {type(dimension).__name__}; "
                    "override `PBT.explore` to handle it.")
