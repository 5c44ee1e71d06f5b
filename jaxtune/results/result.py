"""What a sweep returns: curves, final metrics, the best configuration, export, plots.

`SweepResult` holds a population of N members (configurations x seeds) recorded at C
points (the end of each chunk):

* `hparams`: one column of length N per hyperparameter; `trial` and `seed` say which
  configuration and which seed each member is (members of one trial share every
  hyperparameter);
* `steps` [C]: the training step at each record point;
* `train_loss` and every entry of `metrics` [N, C]: the curves (NaN after a member
  stopped or diverged);
* `diverged`, `diverged_step` [N]: which members went non-finite, and at which step;
* `status`, `steps_trained` [N]: how each member ended (``"completed"``, ``"stopped"``
  early by an adaptive strategy, ``"diverged"``, or ``"running"`` in the partial result of
  an interrupted sweep) and how many optimizer steps it trained.

The ranking rules, stated once and used by `final`, `summary`, `top`, `best`,
`best_config` and `plot`:

* A member's *final* value of a metric is its value at the last record point it reached:
  the last one with ``steps <= steps_trained``. A diverged member's final value is NaN
  whatever its curve holds, so it can never win.
* A trial's score is the mean of its members' final values over seeds; its spread is the
  population standard deviation over seeds (``ddof=0``), so one seed gives 0.
* A trial's status is ``"completed"`` when every seed completed, else its worst seed's,
  in the order completed < running < stopped < diverged.
* Trials rank by status first, in that order: only completed trials compete for `best`;
  trials that were stopped early (or are still running) follow, by their score at the
  point they stopped; trials with a diverged seed come last. Within a status, trials rank
  by score: lowest first for mode ``"min"``, highest for ``"max"``; a trial whose score is
  not finite ranks after every finite one, fewest diverged seeds first. Ties keep trial
  order.
* A trial's interval is a 95% interval for its mean over seeds (Student's t by default,
  or a bootstrap; none with one seed or a non-finite value: module `intervals`).
  `best_config` reports it and whether the runner-up's interval overlaps the winner's;
  ``rank="lower"`` ranks completed trials by the interval's pessimistic end instead of
  the mean.

`summary`, `top` and `to_pandas` need pandas and `plot` needs matplotlib (both in
``pip install 'jaxtune[demo]'``); everything else needs NumPy (and SciPy, a dependency, for
the intervals). `save` writes one ``.npz`` file without pickle, atomically, and
`SweepResult.load` reads it back.

This module holds the result (its fields are checked in `columns.validated`), the
ranking (`trial_stats`, `final_values`) and the export to pandas; `plotting` draws it
and `io` saves and loads it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune import _checks
from jaxtune.results import intervals, io, plotting
from jaxtune.results.columns import (
    STATUSES,
    check_mode,
    format_value,
    guess_mode,
    plain,
    require,
    validated,
)

__all__ = ["BestConfig", "SweepResult", "final_values", "trial_stats"]


@dataclasses.dataclass(frozen=True, eq=False)
class BestConfig:
    """The best trial of a sweep: its hyperparameters and its final metric over seeds.

    Its ``repr`` reads like the configuration to copy, e.g.
    ``learning_rate=0.0031, weight_decay=0.0001 -> accuracy 0.962 ± 0.004 (3 seeds)``,
    followed, when `SweepResult.best_config` computed one, by the 95% interval of the
    mean and whether the runner-up's interval overlaps it (module
    `jaxtune.results.intervals`): ``, 95% t-interval [0.952, 0.972]; runner-up trial 7
    overlaps it: within noise``.
    """

    hparams: dict[str, Any]  # hyperparameter name -> plain Python value (int, float, str, ...)
    trial: int  # the trial's index, as in `SweepResult.trial`
    metric: str  # the metric the trials were ranked by
    mode: str  # "min" or "max"
    mean: float  # mean over seeds of the final metric
    std: float  # standard deviation over seeds of the final metric (ddof=0)
    values: np.ndarray  # float [n_seeds]: the final metric of each seed, by seed index
    # The interval of the mean over seeds (module `intervals`), as `best_config` computes it:
    interval: str = ""  # what it is, e.g. "95% t-interval"; "" when none was computed
    low: float = float("nan")  # its bounds; NaN with one seed (no spread to estimate)
    high: float = float("nan")
    runner_up: int | None = None  # the second-ranked completed trial, if any
    overlaps: bool | None = None  # whether its interval meets this one; None: no intervals
    rank: str = "mean"  # the ranking rule that chose this trial: "mean" or "lower"

    @property
    def n_seeds(self) -> int:
        """How many seeds the trial was trained with."""
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={format_value(v)}" for name, v in self.hparams.items())
        seeds = f"{self.n_seeds} seed{'' if self.n_seeds == 1 else 's'}"
        return (
            f"{settings or f'trial {self.trial}'} -> {self.metric} "
            f"{self.mean:.3g} ± {self.std:.2g} ({seeds}){self._interval_text()}"
        )

    def _interval_text(self) -> str:
        """The interval and the runner-up's overlap, as `__repr__` appends them."""
        if not self.interval:
            return ""
        if not np.isfinite(self.low):
            return f"; no {self.interval} (one seed or a non-finite value)"
        text = f", {self.interval} [{self.low:.3g}, {self.high:.3g}]"
        if self.overlaps is not None:
            verdict = "overlaps it: within noise" if self.overlaps else "does not overlap it"
            text += f"; runner-up trial {self.runner_up} {verdict}"
        return text


class _TrialStats(NamedTuple):
    """Per-trial aggregates of one metric, trials in sorted-id order."""

    trials: np.ndarray  # int [T]: the distinct trial ids, increasing
    first: np.ndarray  # int [T]: a member of each trial (its first), for its hyperparameters
    inverse: np.ndarray  # int [N]: each member's position in `trials`
    final: np.ndarray  # float64 [N]: each member's final metric (NaN if diverged)
    mean: np.ndarray  # float64 [T]: mean over seeds
    std: np.ndarray  # float64 [T]: standard deviation over seeds, ddof=0
    count: np.ndarray  # int [T]: members (seeds) per trial
    n_diverged: np.ndarray  # int [T]: diverged members per trial
    status: np.ndarray  # str [T]: "completed" if every seed completed, else the worst seed's
    steps_trained: np.ndarray  # float64 [T]: mean over seeds of `steps_trained`
    order: np.ndarray  # int [T]: positions in `trials`, best first


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
    """Curves, final metrics and hyperparameters of every member of a sweep.

    Built by `jaxtune.sweep` and the strategies; building one by hand from NumPy arrays
    is fine too (every array is checked against the others when it is built).

    Attributes:
      hparams: hyperparameter name -> column of length N. Numeric columns are numeric
        arrays (e.g. float32, int32); static columns are 1-D object arrays of Python
        values (e.g. ``"adam"``, ``128``).
      trial: int [N], the configuration index of each member; members with the same
        trial share every hyperparameter.
      seed: int [N], the seed index of each member, 0..S-1. Each (trial, seed) pair
        occurs once.
      steps: int [C], the training step count at each record point, increasing.
      train_loss: float [N, C], mean training loss over each chunk; NaN from the chunk
        where a member diverged on.
      metrics: eval metric name -> float [N, C] at the same record points (e.g.
        ``"eval_loss"``, ``"accuracy"``); may be empty.
      diverged: bool [N], whether each member went non-finite.
      diverged_step: int [N], the first step whose loss or parameters were non-finite;
        -1 for members that never diverged.
      metric: the default metric for ranking: ``"train_loss"`` or a key of `metrics`.
      mode: ``"min"`` or ``"max"``: whether lower or higher `metric` is better.
      params: the final parameters, a pytree whose every leaf has leading axis N, or None.
      model_state: the final model state (e.g. BatchNorm statistics) when `loss_fn` takes
        `model_state`, a pytree whose every leaf has leading axis N, or None. Sweeps keep
        it as they keep `params`: with ``keep_params=True``, once every member finished,
        when every static group's state has the same structure and shapes.
      member_params: member -> its final parameters (no member axis), for the members
        kept when `params` cannot hold them: static groups of different shapes (a swept
        layer width), ``keep_params="best"`` or ``keep_params=k`` (only the best
        configurations' members), or an interrupted sweep (the members finished so
        far); None when `params` holds every member or nothing was kept. Read one
        member with `params_of` whatever the field, the best with `best_params`.
      member_model_state: member -> its final model state, beside `member_params`.
      timing: wall-clock figures: ``compile_s``, ``compile_wait_s``, ``run_s``,
        ``total_s``, ``compiles``, ``member_steps_per_s``, ``record_s``,
        ``record_points``; and ``chunk_form``, a string (see `jaxtune.sweep`).
      step_loss: float [N, steps], the per-step training loss when recorded, else None.
      status: str [N], how each member ended: ``"completed"`` (trained its whole
        budget), ``"stopped"`` (stopped early by a strategy; its curves are NaN after the
        record point where it stopped), ``"diverged"`` (exactly the members marked in
        `diverged`), or ``"running"`` (only in the partial result of an interrupted
        sweep). Default None: ``"diverged"`` where `diverged`, else ``"completed"``.
      steps_trained: int [N], the optimizer steps each member trained (the budget it
        used); its final metrics are read at the last record point with
        ``steps <= steps_trained``. Default None: ``steps[-1]`` for every member,
        diverged ones included (in a plain sweep a diverged member keeps its slot to the
        end, frozen).

    Example:

    >>> import numpy as np
    >>> import jaxtune as jt
    >>> result = jt.SweepResult(
    ...     hparams={"learning_rate": np.array([0.1, 0.1, 0.01, 0.01], np.float32)},
    ...     trial=np.array([0, 0, 1, 1]), seed=np.array([0, 1, 0, 1]),
    ...     steps=np.array([100, 200]),
    ...     train_loss=np.array([[0.9, 0.5], [0.8, 0.4], [1.0, 0.8], [1.1, 0.9]]),
    ...     metrics={}, diverged=np.zeros(4, bool), diverged_step=np.full(4, -1))
    >>> result.best  # doctest: +NORMALIZE_WHITESPACE
    learning_rate=0.1 -> train_loss 0.45 ± 0.05 (2 seeds), 95% t-interval [-0.185, 1.09];
    runner-up trial 1 overlaps it: within noise
    >>> result.final().tolist()
    [0.5, 0.4, 0.8, 0.9]
    """

    hparams: dict[str, np.ndarray]
    trial: np.ndarray
    seed: np.ndarray
    steps: np.ndarray
    train_loss: np.ndarray
    metrics: dict[str, np.ndarray]
    diverged: np.ndarray
    diverged_step: np.ndarray
    metric: str = "train_loss"
    mode: str = "min"
    params: Any = None
    timing: dict[str, float] = dataclasses.field(default_factory=dict)
    step_loss: np.ndarray | None = None
    status: np.ndarray | None = None
    steps_trained: np.ndarray | None = None
    hparam_history: dict[str, np.ndarray] | None = None
    lineage: np.ndarray | None = None
    model_state: Any = None
    member_params: dict[int, Any] | None = None
    member_model_state: dict[int, Any] | None = None

    def __post_init__(self) -> None:
        # `validated` is the one check of a result, whether a sweep, a user or `load`
        # built it; its normalised fields replace the given ones.
        given = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        for name, value in validated(given).items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ sizes

    @property
    def n_members(self) -> int:
        """N: how many members (trials x seeds) were trained."""
        return int(self.trial.shape[0])

    @property
    def n_trials(self) -> int:
        """How many distinct configurations (trials) were trained."""
        return int(np.unique(self.trial).size)

    @property
    def n_seeds(self) -> int:
        """How many distinct seed indices were used."""
        return int(np.unique(self.seed).size)

    # ------------------------------------------------------------------ metrics

    def curve(self, metric: str | None = None) -> np.ndarray:
        """The recorded curve [N, C] of `metric` (default: the result's `metric`)."""
        metric = self._check_metric(metric)
        return self.train_loss if metric == "train_loss" else self.metrics[metric]

    def final(self, metric: str | None = None) -> np.ndarray:
        """The final value [N] of `metric` per member; NaN for diverged members.

        A member's final value is its value at the last record point it reached, the last
        with ``steps <= steps_trained`` (the last record point for a member that trained
        its whole budget); NaN if it reached none.

        Args:
          metric: ``"train_loss"`` or a key of `metrics`; default: the result's `metric`.

        Returns:
          A float array [N], a copy.
        """
        return final_values(self.curve(metric), self.steps, self.steps_trained, self.diverged)

    def mean_over_seeds(self, metric: str | None = None) -> np.ndarray:
        """The curve of `metric` averaged over seeds: float64 [n_trials, C].

        Rows follow the sorted trial ids. A trial's row is NaN from the first record
        point where any of its seeds is NaN (e.g. diverged).
        """
        curve = self.curve(metric).astype(np.float64)
        trials, inverse = np.unique(self.trial, return_inverse=True)
        sums = np.zeros((trials.size, curve.shape[1]))
        np.add.at(sums, inverse, curve)
        return sums / np.bincount(inverse, minlength=trials.size)[:, None]

    def summary(self, metric: str | None = None, mode: str | None = None, *,
                interval: str | None = None, confidence: float = 0.95, rank: str = "mean"):
        """One row per trial, best first: a pandas DataFrame.

        Columns: ``trial``, each hyperparameter, ``<metric>_mean`` and ``<metric>_std``
        (over seeds, ddof=0: 0 with one seed), with `interval` ``<metric>_low`` and
        ``<metric>_high`` (the interval of the mean over seeds; NaN for one seed), then
        ``n_seeds``, ``n_diverged``, ``status``
        (``"completed"`` when every seed completed, else the worst seed's status) and
        ``steps_trained`` (mean over seeds). The index, named ``rank``, counts from 0 (the
        best). Completed trials rank first; trials stopped early follow, by their score
        when they stopped; trials with a diverged seed (NaN mean) come last (see the
        module docstring).

        Args:
          metric: ``"train_loss"`` or a key of `metrics`; default: the result's `metric`.
          mode: ``"min"`` or ``"max"``; default: the result's `mode` for its own metric,
            ``"min"`` for ``"train_loss"``, else inferred from the metric's name
            (``*loss*``/``*error*`` -> min, ``*acc*``/``*f1*``/... -> max).
          interval: None (no interval columns), ``"t"`` (Student's t over seeds) or
            ``"bootstrap"`` (percentile bootstrap); see `jaxtune.results.intervals`.
          confidence: the interval's coverage, in (0, 1).
          rank: ``"mean"`` ranks by the mean over seeds; ``"lower"`` by the pessimistic
            end of the interval (the lower bound for ``mode="max"``, the upper bound
            for ``"min"``; a t-interval unless `interval` says otherwise), one-seed
            trials after those with an interval.
        """
        pd = require("pandas", "SweepResult.summary")
        metric, mode = self._resolve(metric, mode)
        stats = self._trial_stats(metric, mode)
        order, bounds = intervals.rank_trials(stats, mode, rank, interval, confidence)
        columns: dict[str, Any] = {"trial": stats.trials[order]}
        for name, column in self.hparams.items():
            columns[name] = column[stats.first[order]]
        columns[f"{metric}_mean"] = stats.mean[order]
        columns[f"{metric}_std"] = stats.std[order]
        if bounds is not None:
            columns[f"{metric}_low"], columns[f"{metric}_high"] = bounds.low[order], bounds.high[
                order]
        columns["n_seeds"] = stats.count[order]
        columns["n_diverged"] = stats.n_diverged[order]
        columns["status"] = stats.status[order].astype(object)
        columns["steps_trained"] = stats.steps_trained[order]
        frame = pd.DataFrame(columns)
        frame.index.name = "rank"
        return frame

    def top(self, k: int = 5, metric: str | None = None, mode: str | None = None, *,
            interval: str | None = None, confidence: float = 0.95, rank: str = "mean"):
        """The `k` best trials: the first `k` rows of `summary` (fewer if fewer trials).

        `interval`, `confidence` and `rank` are `summary`'s.
        """
        k = _checks.positive_int("k", k)
        return self.summary(metric, mode, interval=interval, confidence=confidence,
                            rank=rank).head(k)

    @property
    def best(self) -> BestConfig:
        """The best trial under the result's `metric` and `mode` (see `best_config`)."""
        return self.best_config()

    def best_config(self, metric: str | None = None, mode: str | None = None, *,
                    rank: str = "mean", interval: str | None = "t",
                    confidence: float = 0.95) -> BestConfig:
        """The best trial: its hyperparameters as plain Python values and its seed scores.

        Only trials whose every seed completed its budget compete: a trial stopped early
        is never the best, however good its score when it stopped.

        float32 hyperparameters come back as the shortest decimal that rounds to the
        same float32 (0.0031, not 0.003100000089).

        The interval of its mean over seeds comes with it (``low``, ``high``; NaN with
        one seed), and whether the runner-up's interval overlaps it (``overlaps``:
        then the winner is within noise of the runner-up, and more seeds would tell).

        Args:
          metric: as in `summary`.
          mode: as in `summary`.
          rank: as in `summary`: ``"mean"`` or ``"lower"`` (the best pessimistic bound).
          interval: ``"t"`` (default), ``"bootstrap"``, or None for no interval.
          confidence: as in `summary`.

        Raises:
          ValueError: if no trial completed on every seed with a finite metric (every
            trial diverged, was stopped early, is still running, or has a non-finite
            metric).
        """
        metric, mode = self._resolve(metric, mode)
        stats = self._trial_stats(metric, mode)
        order, bounds = intervals.rank_trials(stats, mode, rank, interval, confidence)
        best = order[0]
        if stats.status[best] != "completed" and not np.all(stats.status == "diverged"):
            counts = ", ".join(
                f"{int(np.sum(self.status == name))} {name}"
                for name in ("stopped", "diverged", "running")
                if np.any(self.status == name)
            )
            raise ValueError(
                "No best configuration: no trial reached the full budget on every seed "
                f"({counts}, of {self.n_members} members). Rank the trials anyway with "
                "`summary()` or `top()`, which list trials stopped early by their score "
                "when they stopped; resume an interrupted sweep to finish it."
            )
        if stats.status[best] != "completed" or not np.isfinite(stats.mean[best]):
            raise ValueError(
                f"No best configuration: every trial diverged or has a non-finite final "
                f"`{metric}` on some seed ({int(self.diverged.sum())} of {self.n_members} "
                "members diverged). Narrow the search space (e.g. lower learning rates) "
                "or check the loss for NaNs."
            )
        members = np.flatnonzero(stats.inverse == best)
        members = members[np.argsort(self.seed[members], kind="stable")]
        return BestConfig(
            hparams={
                name: plain(column[stats.first[best]]) for name, column in self.hparams.items()
            },
            trial=int(stats.trials[best]),
            metric=metric,
            mode=mode,
            mean=float(stats.mean[best]),
            std=float(stats.std[best]),
            values=stats.final[members],
            rank=rank,
            **_interval_fields(stats, order, bounds),
        )

    # ------------------------------------------------------------------ kept parameters

    @property
    def best_member(self) -> int:
        """The best trial's (`best`) member with the best final metric; ties: the lowest seed."""
        best = self.best
        members = np.flatnonzero(self.trial == best.trial)
        members = members[np.argsort(self.seed[members], kind="stable")]
        values = best.values if self.mode == "min" else -best.values
        return int(members[np.argmin(values)])

    @property
    def best_params(self) -> Any:
        """The final parameters of `best_member`, whatever its static group."""
        return self.params_of(self.best_member)

    def params_of(self, member: int) -> Any:
        """One member's final parameters (no member axis), from `params` or `member_params`.

        Raises:
          ValueError: if `member` is out of range, or its parameters were not kept
            (the message says which members' were, and how to keep them).
        """
        return self._kept("params", member)

    def model_state_of(self, member: int) -> Any:
        """One member's final model state (no member axis); None for a model without state."""
        return self._kept("model_state", member)

    def _kept(self, name: str, member: int) -> Any:
        member = _checks.index("member", member, self.n_members, "members")
        if self.params is not None:
            stacked = getattr(self, name)
            return None if stacked is None else jax.tree_util.tree_map(lambda a: a[member],
                                                                       stacked)
        kept = self.member_params or {}
        if member in kept:
            return kept[member] if name == "params" else (self.member_model_state or {}).get(
                member)
        if not kept:
            raise ValueError(
                f"member {member}'s final `{name}` were not kept: this result holds no "
                "parameters (the sweep ran with keep_params=False, or was interrupted before "
                "any member finished); run it with keep_params=True, or keep_params='best'.")
        shown = ", ".join(map(str, sorted(kept)[:20])) + (", ..." if len(kept) > 20 else "")
        raise ValueError(
            f"member {member}'s final `{name}` were not kept; this result keeps those of "
            f"members {shown} (keep_params='best' or keep_params=k keeps only the best "
            "configurations' members; an interrupted sweep only the finished ones). Sweep "
            "with a larger k, or keep_params=True, to keep it.")

    # ------------------------------------------------------------------ export

    def hparam_schedule(self, member: int | None = None) -> dict[str, np.ndarray]:
        """A member's dynamic hyperparameters over steps (e.g. under PBT): "step" and each name.

        Args:
          member: the member (default: the best member of the best configuration).

        Returns:
          {"step": int [K], name: [K] ...} at the K record points the member reached.
        """
        if not self.hparam_history:
            raise ValueError("this result has no `hparam_history`; sweeps record one for every "
                             "dynamic hyperparameter (a result built by hand can pass it).")
        if member is None:
            members = np.flatnonzero(self.trial == self.best.trial)
            member = int(members[np.argmax(self.mode_sign * self.final()[members])]) \
                if members.size > 1 else int(members[0])
        member = _checks.index("member", member, self.n_members, "members")
        reached = self.steps <= self.steps_trained[member]
        out = {"step": self.steps[reached]}
        out.update({name: h[member, reached] for name, h in self.hparam_history.items()})
        return out

    @property
    def mode_sign(self) -> int:
        """+1 when higher `metric` is better, -1 when lower is."""
        return 1 if self.mode == "max" else -1

    def plot_schedule(self, name: str | None = None, members: Any = None, ax: Any = None):
        """Hyperparameter `name` over steps for `members` (default: all), copies marked.

        Each copy of the lineage (step, target, source) is drawn as a dotted jump from
        the source's value to the target's new one.
        """
        return plotting.plot_schedule(self, name, members, ax)

    def to_pandas(self, curves: bool = False):
        """The result as a tidy pandas DataFrame.

        Args:
          curves: False (default): one row per member with ``member``, ``trial``,
            ``seed``, each hyperparameter, ``final_train_loss``, ``final_<metric>`` for
            each eval metric (NaN for diverged members, as `final`), ``diverged``,
            ``diverged_step``, ``status`` and ``steps_trained``. True: long format, one row
            per (member, record point) with ``member``, ``trial``, ``seed``, each hyperparameter, ``step``,
            ``train_loss`` and each eval metric, as recorded.
        """
        return _to_pandas(self, curves)

    def plot(
        self,
        metric: str | None = None,
        *,
        hparam: str | None = None,
        path: str | os.PathLike | None = None,
    ):
        """Training curves and final metric against each hyperparameter.

        Left panel: the training loss of every member against step (log y when every
        finite value is positive), coloured by `hparam` (log colour scale when it is
        positive, symmetric-log when it includes 0 and its other values span two decades
        or more), with a colorbar; diverged members dashed grey; members stopped early
        end in a bar where they stopped. Then one panel per hyperparameter that varies
        (one that is not numeric, an optimizer family or a choice of strings, with a tick
        per value in order of first appearance): the final `metric` of each trial (mean
        over seeds; error bars: its 95% t-interval over seeds, as the y label says, none
        with one seed) against it,
        completed trials filled, trials stopped early hollow (their score when they
        stopped). Its x axis is log when the values are positive and span more
        than a decade, symmetric-log (linear within the smallest nonzero magnitude) when
        they include 0 or negatives and the nonzero magnitudes span two decades or more
        (e.g. a choice of 0, 1e-4, 1e-3, 1e-2), else linear; with at most 8 distinct
        values, ticks sit at exactly those values. The best trial is starred, and trials
        without a finite mean are left out, as the panel's title says.

        Args:
          metric: the metric of the right panels; default: the result's `metric`.
          hparam: the numeric hyperparameter that colours the curves; default
            ``"learning_rate"`` if there is one, else the first numeric one; with none,
            one colour.
          path: where to save the figure (PNG unless the suffix says otherwise).

        Returns:
          A `matplotlib.figure.Figure` (made without pyplot, so no window opens).
        """
        return plotting.plot(self, metric, hparam, path)

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike) -> None:
        """Writes the result to one ``.npz`` file at exactly `path` (no pickle), atomically.

        Arrays are stored as they are; static (object) hyperparameter columns, the
        metric, mode and timing go into a JSON metadata entry, so static values must be
        JSON values that come back unchanged (str, int, float, bool, None, and lists or
        str-keyed dicts of them). Each `params` and `model_state` leaf is stored with its
        key path (see `load` for the tree that comes back).

        The file is written to a temporary file in the same directory, flushed to disk,
        then renamed onto `path` in one step: a reader (or a crash, or a full disk) sees
        the previous file at `path` or the new one, never a partial one, and a failed
        save leaves no temporary file behind.

        Raises:
          TypeError: if a static hyperparameter value or a `params` or `model_state` leaf
            cannot be stored without pickle.
          OSError: if the file cannot be written; `path` then holds what it held before.
        """
        io.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SweepResult:
        """Reads a result written by `save` (with ``allow_pickle=False``).

        `params` and `model_state`, if saved, come back as trees of plain containers
        holding NumPy arrays, rebuilt from each leaf's key path: dicts stay dicts (str or
        int keys), lists and tuples become lists, and NamedTuples, dataclasses and other
        nodes with named fields become dicts keyed by field name (e.g. optax's
        ``ScaleByAdamState(count, mu, nu)`` -> ``{"count": ..., "mu": ..., "nu": ...}``);
        dict keys of other types come back as their ``str``. Saving a loaded result and
        loading it again gives the same tree. Files written by jaxtune's format
        version 1 give `params` as a flat dict {keystr path: array}, e.g.
        ``{"['dense']['w']": array}``, and derive `status` and `steps_trained` from
        `diverged` and `steps`; files of versions 1 and 2 have no `model_state` (None).

        Raises:
          ValueError: if the file is not a SweepResult file, is corrupted, or its
            arrays do not fit together.
        """
        return io.load(cls, path)

    # ------------------------------------------------------------------ repr

    def __repr__(self) -> str:
        n_diverged = int(self.diverged.sum())
        try:
            best = repr(self.best)
        except ValueError:
            status = self._trial_stats(self.metric, self.mode).status
            if np.any(status == "completed") or np.all(status == "diverged"):
                best = "none, every trial diverged"
            else:
                best = "none, no trial reached the full budget"
        others = "".join(
            f", {count} {name}"
            for name in ("stopped", "running")
            if (count := int(np.sum(self.status == name)))
        )
        return (
            f"SweepResult({self.n_members} members ({self.n_trials} trials × "
            f"{self.n_seeds} seeds), {self.steps.size} record points to step "
            f"{int(self.steps[-1])}, metric={self.metric!r} ({self.mode}), "
            f"{n_diverged} diverged{others}; best: {best})"
        )

    # ------------------------------------------------------------------ internals

    def _check_metric(self, metric: str | None) -> str:
        if metric is None:
            return self.metric
        if metric != "train_loss" and metric not in self.metrics:
            raise ValueError(
                f"`metric` must be 'train_loss' or an eval metric of this result "
                f"{sorted(self.metrics)}, got metric={metric!r}."
            )
        return metric

    def _resolve(self, metric: str | None, mode: str | None) -> tuple[str, str]:
        metric = self._check_metric(metric)
        if mode is None:
            if metric == self.metric:
                mode = self.mode
            elif metric == "train_loss":
                mode = "min"
            else:
                mode = guess_mode(metric)
        else:
            check_mode(mode)
        return metric, mode

    def _trial_stats(self, metric: str, mode: str) -> _TrialStats:
        return trial_stats(self.trial, self.final(metric), self.status, self.diverged,
                           self.steps_trained, mode)


# ---------------------------------------------------------------------- helpers


def _to_pandas(result: SweepResult, curves: bool):
    """`SweepResult.to_pandas`: one row per member, or per (member, record point)."""
    pd = require("pandas", "SweepResult.to_pandas")
    n, c = result.train_loss.shape
    members = np.arange(n)
    if not curves:
        columns: dict[str, Any] = {"member": members, "trial": result.trial, "seed": result.seed}
        columns.update(result.hparams)
        columns["final_train_loss"] = result.final("train_loss")
        for name in result.metrics:
            columns[f"final_{name}"] = result.final(name)
        columns["diverged"] = result.diverged
        columns["diverged_step"] = result.diverged_step
        columns["status"] = result.status.astype(object)
        columns["steps_trained"] = result.steps_trained
        return pd.DataFrame(columns)
    columns = {
        "member": np.repeat(members, c),
        "trial": np.repeat(result.trial, c),
        "seed": np.repeat(result.seed, c),
    }
    for name, column in result.hparams.items():
        columns[name] = np.repeat(column, c)
    columns["step"] = np.tile(result.steps, n)
    columns["train_loss"] = result.train_loss.reshape(-1)
    for name, curve in result.metrics.items():
        columns[name] = curve.reshape(-1)
    return pd.DataFrame(columns)


def _interval_fields(stats: _TrialStats, order: np.ndarray,
                     bounds: intervals.Intervals | None) -> dict[str, Any]:
    """`BestConfig`'s interval fields for the trial `order[0]`: its bounds, the runner-up
    (the next completed trial with a finite mean) and whether their intervals overlap."""
    if bounds is None:
        return {}
    best = order[0]
    second = order[1] if order.size > 1 else None
    if second is not None and not (stats.status[second] == "completed"
                                   and np.isfinite(stats.mean[second])):
        second = None
    return {"interval": bounds.label, "low": float(bounds.low[best]),
            "high": float(bounds.high[best]),
            "runner_up": None if second is None else int(stats.trials[second]),
            "overlaps": None if second is None else intervals.overlap(bounds, best, second)}


def final_values(curve: np.ndarray, steps: np.ndarray, steps_trained: np.ndarray,
                 diverged: np.ndarray) -> np.ndarray:
    """Each member's value of `curve` [N, C] at the last record point it reached.

    The last one with ``steps <= steps_trained``; NaN for diverged members and members
    that reached none. The module docstring's rule, shared with the runner (which
    ranks finished trials for ``keep_params=k`` while the sweep runs).
    """
    reached = np.searchsorted(steps, steps_trained, side="right") - 1
    out = curve[np.arange(curve.shape[0]), np.maximum(reached, 0)]
    out = out.astype(np.promote_types(out.dtype, np.float32), copy=True)
    out[diverged | (reached < 0)] = np.nan
    return out


def trial_stats(trial: np.ndarray, final: np.ndarray, status: np.ndarray,
                diverged: np.ndarray, steps_trained: np.ndarray, mode: str) -> _TrialStats:
    """Per-trial aggregates of the members' `final` values and the trials' ranking.

    The module docstring's ranking rules, for `SweepResult` and for the runner.
    """
    final = np.asarray(final, np.float64)
    trials, first, inverse = np.unique(trial, return_index=True, return_inverse=True)
    size = trials.size
    count = np.bincount(inverse, minlength=size)
    mean = np.bincount(inverse, weights=final, minlength=size) / count
    with np.errstate(invalid="ignore"):
        deviation = (final - mean[inverse]) ** 2
    std = np.sqrt(np.bincount(inverse, weights=deviation, minlength=size) / count)
    n_diverged = np.bincount(inverse, weights=diverged, minlength=size).astype(np.int64)
    # A trial's status is its worst seed's; trials rank by status, then by score.
    member_rank = np.zeros(trial.size, np.int64)
    for i, name in enumerate(STATUSES):
        member_rank[status == name] = i
    rank = np.zeros(size, np.int64)
    np.maximum.at(rank, inverse, member_rank)
    trial_status = np.asarray(STATUSES)[rank]
    steps = np.bincount(inverse, weights=steps_trained, minlength=size) / count
    finite = np.isfinite(mean)
    score = np.where(finite, mean if mode == "min" else -mean, 0.0)
    order = np.lexsort((trials, n_diverged, score, ~finite, rank))
    return _TrialStats(trials, first, inverse, final, mean, std, count, n_diverged,
                       trial_status, steps, order)
