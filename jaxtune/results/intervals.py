"""Confidence intervals over seeds, and the rankings and overlap checks built on them.

A configuration trained with 2 to 5 seeds has a mean that is itself noisy: the winner of a
sweep is often within noise of the runner-up. This module gives each configuration (trial)
an interval for its mean over seeds, used by `SweepResult.best_config`, `summary`, `top`
and `plot`:

* ``"t"`` (the default): Student's t interval, ``mean ± t_{(1+c)/2, n-1} * s / sqrt(n)``
  with ``s`` the sample standard deviation (``ddof=1``) of the n seeds' final values; exact
  for normally distributed seed scores, and equal to `scipy.stats.t.interval`.
* ``"bootstrap"``: the percentile bootstrap of the mean (`scipy.stats.bootstrap`, resampling
  the seeds). It assumes nothing about the distribution but is too narrow with few seeds
  (with 2 seeds it is at most the range of the two values): prefer ``"t"`` below ~10 seeds.

A trial has no interval (NaN bounds) when it has one seed (no spread to estimate) or a
non-finite final value on some seed (diverged: its mean is NaN too).

Ranking (``rank=``): ``"mean"`` ranks by the mean over seeds, as before; ``"lower"`` ranks
by the pessimistic end of the interval, the *lower* bound for ``mode="max"`` and the
*upper* bound for ``mode="min"`` (the worst the configuration plausibly is), which prefers
a configuration that is reliably good over one that is good on average and noisy. Trials
without an interval rank after every trial with one (one seed says nothing about the
spread: its interval is unbounded), among themselves by mean; the status and non-finite
rules of the module `result` come first either way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxtune import _checks
from jaxtune.results.columns import STATUSES

__all__ = ["METHODS", "RANKS", "Intervals", "bootstrap_interval", "overlap", "ranked_order",
           "t_interval", "trial_intervals"]

METHODS = ("t", "bootstrap")
RANKS = ("mean", "lower")
RESAMPLES = 9999  # scipy.stats.bootstrap's default


class Intervals(NamedTuple):
    """One interval per trial, in the order of `SweepResult`'s per-trial statistics."""

    low: np.ndarray  # float64 [T]: lower bounds; NaN where a trial has no interval
    high: np.ndarray  # float64 [T]: upper bounds; NaN where a trial has no interval
    label: str  # what they are, e.g. "95% t-interval"

    @property
    def defined(self) -> np.ndarray:
        """bool [T]: which trials have an interval (more than one seed, all finite)."""
        return np.isfinite(self.low) & np.isfinite(self.high)


def check_confidence(confidence: Any) -> float:
    """`confidence` as a float strictly between 0 and 1; errors name the argument."""
    value = _checks.real("confidence", confidence)
    if not 0.0 < value < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1), e.g. 0.95, got confidence={value!r}.")
    return value


def label(method: str, confidence: float) -> str:
    """How an interval is named in tables, reprs and plots, e.g. ``"95% t-interval"``."""
    return f"{100 * confidence:.3g}% {method}-interval"


def t_interval(values: Any, confidence: float = 0.95) -> tuple[float, float]:
    """Student's t interval for the mean of `values` (one per seed).

    Returns (NaN, NaN) for fewer than two values or any non-finite one.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    low, high = _t_bounds(values, np.zeros(values.size, np.int64), 1,
                          check_confidence(confidence))
    return float(low[0]), float(high[0])


def bootstrap_interval(values: Any, confidence: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of `values` (`scipy.stats.bootstrap`).

    Returns (NaN, NaN) for fewer than two values or any non-finite one; equal values give
    the point interval at their value. `seed` makes the resampling reproducible.
    """
    from scipy import stats

    confidence = check_confidence(confidence)
    resamples = _checks.positive_int("resamples", resamples)
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size < 2 or not np.all(np.isfinite(values)):
        return np.nan, np.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    found = stats.bootstrap((values,), np.mean, confidence_level=confidence, method="percentile",
                            n_resamples=resamples, random_state=np.random.default_rng(seed))
    return float(found.confidence_interval.low), float(found.confidence_interval.high)


def trial_intervals(final: np.ndarray, inverse: np.ndarray, size: int, method: str = "t",
                    confidence: float = 0.95, resamples: int = RESAMPLES) -> Intervals:
    """An interval per trial from its members' `final` values.

    Args:
      final: float [N], each member's final metric (NaN for a diverged member).
      inverse: int [N], each member's trial position 0..size-1.
      size: T, the number of trials.
      method: ``"t"`` or ``"bootstrap"``.
      confidence: the coverage, in (0, 1).
      resamples: bootstrap resamples per trial (``"bootstrap"`` only).
    """
    method = _checks.one_of("interval", method, METHODS)
    confidence = check_confidence(confidence)
    final = np.asarray(final, np.float64)
    if method == "t":
        low, high = _t_bounds(final, inverse, size, confidence)
    else:
        low, high = np.full(size, np.nan), np.full(size, np.nan)
        for position in range(size):
            low[position], high[position] = bootstrap_interval(
                final[inverse == position], confidence, resamples, seed=position)
    return Intervals(low, high, label(method, confidence))


def _t_bounds(final: np.ndarray, inverse: np.ndarray, size: int,
              confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-group t intervals of `final` [N] grouped by `inverse` [N] into `size` groups."""
    from scipy import stats

    count = np.bincount(inverse, minlength=size)
    finite = np.isfinite(final)
    valid = (count >= 2) & (np.bincount(inverse, weights=~finite, minlength=size) == 0)
    values = np.where(finite, final, 0.0)
    n = np.maximum(count, 2).astype(np.float64)
    mean = np.bincount(inverse, weights=values, minlength=size) / np.maximum(count, 1)
    squares = np.bincount(inverse, weights=(values - mean[inverse]) ** 2, minlength=size)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * np.sqrt(squares / (n - 1) / n)
    return np.where(valid, mean - half, np.nan), np.where(valid, mean + half, np.nan)


def ranked_order(stats: Any, intervals: Intervals, mode: str) -> np.ndarray:
    """Trial positions best first under ``rank="lower"`` (see the module docstring).

    `stats` is a `SweepResult` per-trial statistics tuple (`trials`, `mean`, `n_diverged`,
    `status`); its ``order`` is the ``rank="mean"`` one. The pessimistic bound (upper for
    ``"min"``, lower for ``"max"``) replaces the mean as the score; the mean breaks ties.
    """
    status_rank = np.array([STATUSES.index(name) for name in stats.status], np.int64)
    finite = np.isfinite(stats.mean)
    sign = 1.0 if mode == "min" else -1.0
    bound = intervals.high if mode == "min" else intervals.low
    defined = intervals.defined & finite
    by_bound = np.where(defined, sign * bound, 0.0)
    by_mean = np.where(finite, sign * stats.mean, 0.0)
    return np.lexsort((stats.trials, stats.n_diverged, by_mean, by_bound, ~defined, ~finite,
                       status_rank))


def overlap(intervals: Intervals, first: int, second: int) -> bool | None:
    """Whether the intervals of trial positions `first` and `second` share a point.

    None when either has no interval (one seed, or a non-finite value).
    """
    if not (intervals.defined[first] and intervals.defined[second]):
        return None
    return bool(max(intervals.low[first], intervals.low[second])
                <= min(intervals.high[first], intervals.high[second]))


def rank_trials(stats: Any, mode: str, rank: str = "mean", interval: str | None = None,
                confidence: float = 0.95) -> tuple[np.ndarray, Intervals | None]:
    """The trials' order, best first, under `rank`, and their intervals if asked for.

    `stats` is a `SweepResult` per-trial statistics tuple (``final``, ``inverse``,
    ``trials``, ``order``, ...). ``rank="lower"`` needs intervals: `interval` None then
    means ``"t"``. Returns (positions best first, `Intervals` or None when `interval` is
    None and ``rank="mean"``).
    """
    rank = _checks.one_of("rank", rank, RANKS)
    if interval is None and rank == "lower":
        interval = "t"
    if interval is None:
        check_confidence(confidence)
        return stats.order, None
    bounds = trial_intervals(stats.final, stats.inverse, stats.trials.size, interval, confidence)
    return (stats.order if rank == "mean" else ranked_order(stats, bounds, mode)), bounds
