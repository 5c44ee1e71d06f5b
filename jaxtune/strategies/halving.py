"""Successive halving and Hyperband: stop the worst configurations at rungs.

Rungs are step counts `min_steps * eta**k` below the budget; each must be a record
point. When a configuration (all its seeds) reaches a rung, it is ranked against
every configuration of its bracket that reached that rung so far; it continues if
it is in the best `max(1, floor(n / eta))` of those `n`, else all its seeds stop.
When the whole bracket reaches a rung together this is synchronous successive
halving exactly; when members arrive at different times (bounded
`members_in_flight`, configurations started later) it is ASHA's asynchronous rule
(a promotion is never taken back). A diverged member counts as the worst, and a
configuration counts at a rung once every seed has either recorded there or
diverged after the previous rung.

Hyperband runs its brackets concurrently, as one population: bracket `s` starts
halving at the rung `min_steps * eta**(s_max - s)`; bracket 0 trains to the full
budget.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxtune._checks import positive_int
from jaxtune.strategies.base import (
    CONTINUE,
    Decision,
    Report,
    Search,
    Strategy,
    resolve_metric,
)

if TYPE_CHECKING:
    from jaxtune.space import Table


def _eta(eta: Any) -> float:
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real):
        raise TypeError(f"`eta` must be a number greater than 1, got {type(eta).__name__} "
                        f"{eta!r}.")
    if not (math.isfinite(eta) and eta > 1):
        raise ValueError(f"`eta` must be greater than 1 (the factor by which each rung thins "
                         f"the configurations), got eta={eta!r}; the usual choice is eta=3.")
    return float(eta)


# Rungs one ladder may have: `decide` ranks every rung at every record point, ~45 us a
# rung at 1024 members (4.5 ms a record point at 100 rungs); eta=2 from min_steps=1 puts
# 20 rungs below a million steps, so only an eta very close to 1 comes near.
MAX_RUNGS = 100


def rung_steps(min_steps: int, eta: float, steps: int) -> list[int]:
    """The rungs `round(min_steps * eta**k)` that lie below `steps`, increasing.

    Raises ValueError when more than `MAX_RUNGS` values of k fall below `steps`.
    """
    if min_steps >= steps:
        return []
    count = math.ceil(math.log(steps / min_steps) / math.log(eta))  # k with min_steps*eta**k < steps
    if count > MAX_RUNGS:
        smallest = (steps / min_steps) ** (1 / MAX_RUNGS)
        raise ValueError(
            f"`eta`={eta!r} with min_steps={min_steps} puts {count:.3g} rungs min_steps * eta**k "
            f"below steps={steps}; at most {MAX_RUNGS} are allowed (each rung stops only the "
            f"configurations outside the best 1/eta, and every rung is ranked at every record "
            f"point). Use eta >= {smallest:.3g}; the usual choice is eta=3.")
    rungs: list[int] = []
    for k in range(count + 2):  # one past, in case the log rounded down
        value = min_steps * eta**k  # stops at the first k past `steps`: no overflow
        if value >= steps or round(value) >= steps:
            break
        if not rungs or round(value) > rungs[-1]:
            rungs.append(round(value))
    return rungs


class SuccessiveHalving(Strategy):
    """Successive halving (ASHA-style): at each rung, only the best 1/`eta` continue.

    Rungs fall at steps `min_steps`, `min_steps * eta`, `min_steps * eta**2`, ... below
    the budget, and each must be a record point (a multiple of `eval_every`). With `n`
    configurations reaching a rung, the best `max(1, floor(n / eta))` continue and the
    others stop, every seed of a configuration together (ranked by the mean over
    seeds; a diverged member is the worst). Survivors are repacked into fewer slots.
    With `max_trials`, every configuration stopped frees room for a new one from the
    sweep's sampler (ASHA's growth), until `max_trials` configurations have started.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> x = np.linspace(-1, 1, 128, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   jt.Space(learning_rate=jt.loguniform(1e-4, 1.0)), data=(x, y),
      ...                   batch_size=32, steps=90, eval_every=10, trials=9, progress=False,
      ...                   strategy=jt.SuccessiveHalving(eta=3, min_steps=10))
      >>> sorted(result.steps_trained.tolist())
      [10, 10, 10, 10, 10, 10, 30, 30, 90]

    Args:
      eta: the thinning factor, greater than 1 (usually 3); at most `MAX_RUNGS` (100)
        rungs may fall below the budget.
      min_steps: the first rung: steps every configuration trains before any stops.
      max_trials: start new configurations from the sampler in freed slots until this
        many have started (default: no new configurations).
      metric: the metric ranking configurations (default: the sweep's `metric`).
      mode: "min" or "max" (default: the sweep's, or judged from the metric's name).

    References:
      Jamieson & Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter
      Optimization", AISTATS 2016. Li et al., "A System for Massively Parallel
      Hyperparameter Tuning" (ASHA), MLSys 2020.
    """

    _name = "SuccessiveHalving"

    def __init__(self, *, eta: float = 3, min_steps: int, max_trials: int | None = None,
                 metric: str | None = None, mode: str | None = None):
        self.eta = _eta(eta)
        self.min_steps = positive_int("min_steps", min_steps)
        self.max_trials = None if max_trials is None else positive_int("max_trials", max_trials)
        self.metric = metric
        self.mode = mode

    # -- brackets: one for successive halving, several for Hyperband --------------------

    def _ladders(self, steps: int) -> list[list[int]]:
        """The rungs of every bracket."""
        return [rung_steps(self.min_steps, self.eta, steps)]

    def _bracket_sizes(self, trials: int, steps: int) -> list[int]:
        return [trials]

    # -- the protocol -------------------------------------------------------------------

    def setup(self, search: Search) -> None:
        self._metric, self._mode = resolve_metric(search, self.metric, self.mode, self._name)
        if self.min_steps >= search.steps:
            raise ValueError(
                f"{self._name}: `min_steps` must be less than the budget `steps`={search.steps}, "
                f"got min_steps={self.min_steps}; every configuration would train fully. "
                f"Use e.g. min_steps={max(1, search.steps // 9)}.")
        self._ladders_ = self._ladders(search.steps)
        record = set(search.record_steps.tolist())
        rungs = sorted({r for ladder in self._ladders_ for r in ladder})
        off = [r for r in rungs if r not in record]
        if off:
            divisor = math.gcd(*rungs, search.steps)
            raise ValueError(
                f"{self._name}: rungs at steps {off} are not record points (eval_every="
                f"{search.eval_every} records at {_show_steps(search.record_steps)}); rungs are "
                f"min_steps * eta**k = {rungs}. Pass eval_every={divisor} (it divides every "
                f"rung) to `sweep`, or choose `min_steps` and `eta` whose rungs are multiples "
                f"of eval_every.")
        self._columns = {r: int(np.searchsorted(search.record_steps, r)) for r in rungs}
        sizes = self._bracket_sizes(len(search.configurations), search.steps)
        self._bracket_of_trial = np.repeat(np.arange(len(sizes)), sizes).tolist()
        self._decided: set[tuple[int, int]] = set()  # (trial, rung) already judged

    def decide(self, search: Search, report: Report) -> Decision:
        curve = search.scores(self._metric, self._mode)  # lower is better
        status = search.status
        diverged = status == "diverged"
        latest = search.record_index(np.arange(search.n_members))
        trials, inverse = np.unique(search.member_trial, return_inverse=True)
        bracket = np.asarray(self._bracket_of_trial)[trials]
        stop: list[int] = []
        stopped_brackets: list[int] = []
        for b, ladder in enumerate(self._ladders_):
            previous = -1
            for rung in ladder:
                column = self._columns[rung]
                passed = latest >= column
                arrived = passed | (diverged & (latest >= previous))
                value = np.where(passed & ~np.isnan(curve[:, column]), curve[:, column], np.inf)
                previous = column
                all_arrived = np.ones(trials.size, bool)
                np.logical_and.at(all_arrived, inverse, arrived)
                score = np.zeros(trials.size)
                np.add.at(score, inverse, value.astype(np.float64))
                cohort = all_arrived & (bracket == b)
                new = [i for i in np.flatnonzero(cohort)
                       if (int(trials[i]), rung) not in self._decided]
                if not new:
                    continue
                ranked = np.flatnonzero(cohort)
                ranked = ranked[np.lexsort((trials[ranked], score[ranked]))]
                kept = set(ranked[:max(1, int(ranked.size // self.eta))].tolist())
                for i in new:
                    self._decided.add((int(trials[i]), rung))
                    if i in kept:
                        continue
                    members = np.flatnonzero(inverse == i)
                    live = members[np.isin(status[members], ("running", "waiting"))]
                    if live.size:
                        stop.extend(live.tolist())
                        stopped_brackets.append(b)
        start = self._new_configurations(search, trials.size, stopped_brackets)
        if not stop and start is None:
            return CONTINUE
        return Decision(stop=tuple(stop), start=start)

    @property
    def starts_members(self) -> bool:
        """ASHA's growth (`max_trials`) starts configurations during the search."""
        return self.max_trials is not None

    def _new_configurations(self, search: Search, started: int, brackets: list[int]
                            ) -> Table | None:
        """ASHA's growth: a new configuration for each one stopped, up to `max_trials`."""
        if self.max_trials is None:
            return None
        count = min(len(brackets), self.max_trials - started)
        if count <= 0:
            return None
        self._bracket_of_trial.extend(brackets[:count])
        return search.ask(count)

    def state_dict(self) -> dict[str, Any]:
        return {"bracket_of_trial": list(map(int, self._bracket_of_trial)),
                "decided": sorted([int(t), int(r)] for t, r in self._decided)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._bracket_of_trial = [int(b) for b in state["bracket_of_trial"]]
        self._decided = {(int(t), int(r)) for t, r in state["decided"]}

    def rungs(self, steps: int) -> list[list[int]]:
        """The rungs of every bracket for a budget of `steps` (one bracket here)."""
        return self._ladders(positive_int("steps", steps))

    def __repr__(self) -> str:
        return (f"{self._name}(eta={self.eta:g}, min_steps={self.min_steps}, "
                f"max_trials={self.max_trials}, metric={self.metric!r}, mode={self.mode!r})")


class Hyperband(SuccessiveHalving):
    """Hyperband: successive-halving brackets of different aggressiveness, run concurrently.

    With `s_max = floor(log_eta(steps / min_steps))`, bracket `s` (s = s_max ... 0)
    halves from the rung `min_steps * eta**(s_max - s)` on; bracket 0 trains to the
    full budget without stopping. The sweep's configurations are shared among the
    brackets in Hyperband's proportions, `n_s ∝ ceil((s_max + 1) / (s + 1) * eta**s)`
    (largest remainders, each bracket at least one while there are enough): with
    `sum(n_s)` configurations, each bracket starts exactly the paper's `n_s`. All
    brackets train at once in one population; each ranks only its own configurations.

    Args:
      eta: the thinning factor, greater than 1 (usually 3).
      min_steps: the first rung of the most aggressive bracket.
      max_trials: as in `SuccessiveHalving`: a stopped configuration's slot trains a
        new one, in the same bracket, until this many have started.
      metric: the metric ranking configurations (default: the sweep's `metric`).
      mode: "min" or "max" (default: the sweep's, or judged from the metric's name).

    References:
      Li et al., "Hyperband: A Novel Bandit-Based Approach to Hyperparameter
      Optimization", JMLR 2018.
    """

    _name = "Hyperband"

    def _ladders(self, steps: int) -> list[list[int]]:
        full = rung_steps(self.min_steps, self.eta, steps)
        s_max = len(full)
        return [full[s_max - s:] for s in range(s_max, -1, -1)]

    def _bracket_sizes(self, trials: int, steps: int) -> list[int]:
        s_max = len(rung_steps(self.min_steps, self.eta, steps))
        # Li et al., Algorithm 1: bracket s starts n = ceil((s_max + 1) / (s + 1) * eta**s).
        weights = np.array([math.ceil((s_max + 1) / (s + 1) * self.eta**s)
                            for s in range(s_max, -1, -1)], dtype=float)
        brackets = weights.size
        if trials < brackets:
            return [1] * trials + [0] * (brackets - trials)
        share = weights / weights.sum() * trials  # `weights` for trials = sum(weights)
        sizes = np.floor(share).astype(int)
        order = np.argsort(-(share - sizes), kind="stable")
        sizes[order[:trials - sizes.sum()]] += 1
        for empty in np.flatnonzero(sizes == 0):  # one each, taken from the largest
            sizes[np.argmax(sizes)] -= 1
            sizes[empty] = 1
        return sizes.tolist()

    def brackets(self, trials: int, steps: int) -> list[tuple[list[int], int]]:
        """(rungs, configurations) of every bracket, most aggressive first."""
        steps = positive_int("steps", steps)
        return list(zip(self._ladders(steps),
                        self._bracket_sizes(positive_int("trials", trials), steps)))


def _show_steps(steps: np.ndarray) -> str:
    shown = ", ".join(map(str, steps[:5].tolist()))
    return shown + (", ..." if steps.size > 5 else "")
