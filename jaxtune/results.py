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

`summary`, `top` and `to_pandas` need pandas and `plot` needs matplotlib (both in
``pip install 'jaxtune[demo]'``); everything else needs NumPy only. `save` writes one
``.npz`` file without pickle, atomically, and `SweepResult.load` reads it back.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune._io import write_atomically

__all__ = ["BestConfig", "SweepResult"]

_FORMAT = "jaxtune.SweepResult"
# 2: `status`, `steps_trained`, params by structured key path; 3: model_state;
# 4: `member_params` and `member_model_state` (one tree per member, of any shape)
_FORMAT_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, 4)
_MODES = ("min", "max")
# Member statuses, best first: a trial's status is its worst seed's, and trials rank by
# status before score.
_STATUSES = ("completed", "running", "stopped", "diverged")
# Used only to pick a ranking direction for a metric other than the result's default
# one when no `mode` is given; anything else has to say its `mode`.
_MIN_WORDS = ("loss", "error", "mse", "mae", "rmse", "nll", "perplexity")
_MAX_WORDS = ("acc", "precision", "recall", "f1", "auc", "r2")
_DEMO_HINT = "install it with `pip install 'jaxtune[demo]'`"


@dataclasses.dataclass(frozen=True, eq=False)
class BestConfig:
    """The best trial of a sweep: its hyperparameters and its final metric over seeds.

    Its ``repr`` reads like the configuration to copy, e.g.
    ``learning_rate=0.0031, weight_decay=0.0001 -> accuracy 0.962 ± 0.004 (3 seeds)``.
    """

    hparams: dict[str, Any]  # hyperparameter name -> plain Python value (int, float, str, ...)
    trial: int  # the trial's index, as in `SweepResult.trial`
    metric: str  # the metric the trials were ranked by
    mode: str  # "min" or "max"
    mean: float  # mean over seeds of the final metric
    std: float  # standard deviation over seeds of the final metric (ddof=0)
    values: np.ndarray  # float [n_seeds]: the final metric of each seed, by seed index

    @property
    def n_seeds(self) -> int:
        """How many seeds the trial was trained with."""
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={_format_value(v)}" for name, v in self.hparams.items())
        seeds = f"{self.n_seeds} seed{'' if self.n_seeds == 1 else 's'}"
        return (
            f"{settings or f'trial {self.trial}'} -> {self.metric} "
            f"{self.mean:.3g} ± {self.std:.2g} ({seeds})"
        )


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
    is fine too (every array is checked against the others in `__post_init__`).

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
      timing: wall-clock figures, e.g. ``compile_s``, ``run_s``, ``total_s``,
        ``member_steps_per_s``.
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
    >>> result.best
    learning_rate=0.1 -> train_loss 0.45 ± 0.05 (2 seeds)
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

    # ------------------------------------------------------------------ validation

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        trial = _int_vector("trial", self.trial)
        n = trial.shape[0]
        if n == 0:
            raise ValueError("`trial` is empty: a SweepResult needs at least one member.")
        if np.any(trial < 0):
            raise ValueError(f"`trial` must be non-negative, got trial={_show(trial)}.")
        seed = _int_vector("seed", self.seed, n)
        if np.any(seed < 0):
            raise ValueError(f"`seed` must be non-negative, got seed={_show(seed)}.")
        steps = _int_vector("steps", self.steps)
        c = steps.shape[0]
        if c == 0:
            raise ValueError("`steps` is empty: a SweepResult needs at least one record point.")
        if np.any(np.diff(steps) <= 0):
            raise ValueError(f"`steps` must be strictly increasing, got steps={_show(steps)}.")
        train_loss = _curve_array("train_loss", self.train_loss, n, c)

        if not isinstance(self.metrics, Mapping):
            raise TypeError(
                "`metrics` must be a dict of metric name -> float [N, C] array, got "
                f"{type(self.metrics).__name__}; pass {{}} when there are no eval metrics."
            )
        metrics = {}
        for name, curve in self.metrics.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"`metrics` keys must be non-empty strings, got {name!r}.")
            if name == "train_loss":
                raise ValueError(
                    "`metrics` must not have a 'train_loss' entry: the training loss is the "
                    "`train_loss` field; name the eval metric differently (e.g. 'eval_loss')."
                )
            metrics[name] = _curve_array(f"metrics[{name!r}]", curve, n, c)

        diverged = np.asarray(self.diverged)
        if diverged.ndim != 1 or diverged.dtype.kind != "b":
            raise TypeError(
                "`diverged` must be a 1-D bool array [N], got "
                f"{diverged.dtype} array of shape {diverged.shape}."
            )
        _check_length("diverged", diverged, n)
        diverged_step = _int_vector("diverged_step", self.diverged_step, n)
        bad = np.flatnonzero(diverged & (diverged_step < 0))
        if bad.size:
            raise ValueError(
                f"member {bad[0]} is marked diverged but has diverged_step="
                f"{diverged_step[bad[0]]}; `diverged_step` must be the (non-negative) first "
                "non-finite step of every diverged member."
            )
        bad = np.flatnonzero(~diverged & (diverged_step != -1))
        if bad.size:
            raise ValueError(
                f"member {bad[0]} is not marked diverged but has diverged_step="
                f"{diverged_step[bad[0]]}; `diverged_step` must be -1 for members that "
                "never diverged."
            )

        status = _status_vector(self.status, diverged, n)
        if self.steps_trained is None:
            steps_trained = np.full(n, steps[-1], dtype=steps.dtype)
        else:
            steps_trained = _int_vector("steps_trained", self.steps_trained, n)
            if np.any(steps_trained < 0):
                raise ValueError(
                    "`steps_trained` must be non-negative (optimizer steps each member "
                    f"trained), got steps_trained={_show(steps_trained)}."
                )

        if not isinstance(self.hparams, Mapping):
            raise TypeError(
                "`hparams` must be a dict of hyperparameter name -> column [N], got "
                f"{type(self.hparams).__name__}."
            )
        hparams = {}
        for name, column in self.hparams.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"`hparams` keys must be non-empty strings, got {name!r}.")
            hparams[name] = _hparam_column(name, column, n)
        _check_names(hparams, metrics)

        if not isinstance(self.metric, str) or self.metric not in ("train_loss", *metrics):
            raise ValueError(
                f"`metric` must be 'train_loss' or a key of `metrics` "
                f"{sorted(metrics)}, got metric={self.metric!r}."
            )
        if self.mode not in _MODES:
            raise ValueError(f"`mode` must be 'min' or 'max', got mode={self.mode!r}.")

        step_loss = self.step_loss
        if step_loss is not None:
            step_loss = np.asarray(step_loss)
            if step_loss.ndim != 2 or step_loss.shape[0] != n:
                raise ValueError(
                    f"`step_loss` must have shape [N, steps] with N={n} members (from "
                    f"`trial`), got shape {step_loss.shape}."
                )
            if step_loss.dtype.kind not in "fiu":
                raise TypeError(f"`step_loss` must hold numbers, got dtype {step_loss.dtype}.")

        hparam_history = None
        if self.hparam_history is not None:
            hparam_history = {name: _curve_array(f"hparam_history[{name!r}]", v, n, c)
                              for name, v in self.hparam_history.items()}
        lineage = None
        if self.lineage is not None:
            lineage = np.asarray(self.lineage, np.int64).reshape(-1, 3)
            if lineage.size and (np.any(lineage[:, 1:] < 0) or np.any(lineage[:, 1:] >= n)):
                raise ValueError(f"`lineage` rows are (step, target, source) with members in "
                                 f"0..{n - 1}, got {_show(lineage)}.")

        _check_member_axis("params", self.params, n)
        _check_member_axis("model_state", self.model_state, n)
        member_params = _member_trees("member_params", self.member_params, n)
        member_model_state = _member_trees("member_model_state", self.member_model_state, n)
        if member_params is not None and self.params is not None:
            raise ValueError("pass `params` (every member, stacked) or `member_params` (one "
                             "tree per kept member), not both.")
        for member in member_model_state or {}:
            if member not in (member_params or {}):
                raise ValueError(f"`member_model_state` has member {member}, whose `params` "
                                 "are not kept: keep a member's state beside its parameters "
                                 "in `member_params`.")

        if not isinstance(self.timing, Mapping):
            raise TypeError(
                f"`timing` must be a dict of name -> seconds, got {type(self.timing).__name__}."
            )
        timing = {}
        for name, value in self.timing.items():
            if not isinstance(name, str):
                raise TypeError(f"`timing` keys must be strings, got {name!r}.")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise TypeError(f"`timing[{name!r}]` must be a number, got {value!r}.")
            timing[name] = float(value)

        _check_unique_pairs(trial, seed)
        _check_shared_hparams(hparams, trial)

        put("hparams", hparams)
        put("trial", trial)
        put("seed", seed)
        put("steps", steps)
        put("train_loss", train_loss)
        put("metrics", metrics)
        put("diverged", diverged)
        put("diverged_step", diverged_step)
        put("timing", timing)
        put("step_loss", step_loss)
        put("status", status)
        put("steps_trained", steps_trained)
        put("hparam_history", hparam_history)
        put("lineage", lineage)
        put("member_params", member_params)
        put("member_model_state", member_model_state)

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

    def summary(self, metric: str | None = None, mode: str | None = None):
        """One row per trial, best first: a pandas DataFrame.

        Columns: ``trial``, each hyperparameter, ``<metric>_mean`` and ``<metric>_std``
        (over seeds, ddof=0: 0 with one seed), ``n_seeds``, ``n_diverged``, ``status``
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
        """
        pd = _require("pandas", "SweepResult.summary")
        metric, mode = self._resolve(metric, mode)
        stats = self._trial_stats(metric, mode)
        order = stats.order
        columns: dict[str, Any] = {"trial": stats.trials[order]}
        for name, column in self.hparams.items():
            columns[name] = column[stats.first[order]]
        columns[f"{metric}_mean"] = stats.mean[order]
        columns[f"{metric}_std"] = stats.std[order]
        columns["n_seeds"] = stats.count[order]
        columns["n_diverged"] = stats.n_diverged[order]
        columns["status"] = stats.status[order].astype(object)
        columns["steps_trained"] = stats.steps_trained[order]
        frame = pd.DataFrame(columns)
        frame.index.name = "rank"
        return frame

    def top(self, k: int = 5, metric: str | None = None, mode: str | None = None):
        """The `k` best trials: the first `k` rows of `summary` (fewer if fewer trials)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"`k` must be a positive integer, got {k!r}.")
        if k < 1:
            raise ValueError(f"`k` must be a positive integer, got k={k}.")
        return self.summary(metric, mode).head(int(k))

    @property
    def best(self) -> BestConfig:
        """The best trial under the result's `metric` and `mode` (see `best_config`)."""
        return self.best_config()

    def best_config(self, metric: str | None = None, mode: str | None = None) -> BestConfig:
        """The best trial: its hyperparameters as plain Python values and its seed scores.

        Only trials whose every seed completed its budget compete: a trial stopped early
        is never the best, however good its score when it stopped.

        float32 hyperparameters come back as the shortest decimal that rounds to the
        same float32 (0.0031, not 0.003100000089).

        Args:
          metric: as in `summary`.
          mode: as in `summary`.

        Raises:
          ValueError: if no trial completed on every seed with a finite metric (every
            trial diverged, was stopped early, is still running, or has a non-finite
            metric).
        """
        metric, mode = self._resolve(metric, mode)
        stats = self._trial_stats(metric, mode)
        best = stats.order[0]
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
                name: _plain(column[stats.first[best]]) for name, column in self.hparams.items()
            },
            trial=int(stats.trials[best]),
            metric=metric,
            mode=mode,
            mean=float(stats.mean[best]),
            std=float(stats.std[best]),
            values=stats.final[members],
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
        if isinstance(member, bool) or not isinstance(member, (int, np.integer)):
            raise TypeError(f"`member` must be an int (a row of the result), got {member!r}.")
        if not 0 <= member < self.n_members:
            raise ValueError(f"`member` must be one of the {self.n_members} members "
                             f"(0..{self.n_members - 1}), got member={member}.")
        member = int(member)
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
        if isinstance(member, bool) or not isinstance(member, int | np.integer) or not (
                0 <= member < self.n_members):
            raise ValueError(f"`member` must be a member index 0..{self.n_members - 1}, got "
                             f"member={member!r}.")
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
        _require("matplotlib", "plot_schedule")
        import matplotlib.pyplot as plt

        if not self.hparam_history:
            raise ValueError("this result has no `hparam_history` to plot.")
        name = next(iter(self.hparam_history)) if name is None else name
        if name not in self.hparam_history:
            raise ValueError(f"`name` must be one of {sorted(self.hparam_history)}, got "
                             f"name={name!r}.")
        history = self.hparam_history[name]
        members = np.arange(self.n_members) if members is None else np.asarray(members, int)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        for m in members:
            ax.plot(self.steps, history[m], drawstyle="steps-post", alpha=0.7, linewidth=1)
        for step, target, source in (self.lineage if self.lineage is not None else []):
            if target in members:
                column = int(np.searchsorted(self.steps, step))
                after = min(column + 1, self.steps.size - 1)
                ax.plot([step, step], [history[source, column], history[target, after]],
                        ":", color="grey", linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        positive = history[np.isfinite(history)]
        if positive.size and np.all(positive > 0) and positive.max() / positive.min() > 20:
            ax.set_yscale("log")
        return ax

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
        pd = _require("pandas", "SweepResult.to_pandas")
        n, c = self.train_loss.shape
        members = np.arange(n)
        if not curves:
            columns: dict[str, Any] = {"member": members, "trial": self.trial, "seed": self.seed}
            columns.update(self.hparams)
            columns["final_train_loss"] = self.final("train_loss")
            for name in self.metrics:
                columns[f"final_{name}"] = self.final(name)
            columns["diverged"] = self.diverged
            columns["diverged_step"] = self.diverged_step
            columns["status"] = self.status.astype(object)
            columns["steps_trained"] = self.steps_trained
            return pd.DataFrame(columns)
        columns = {
            "member": np.repeat(members, c),
            "trial": np.repeat(self.trial, c),
            "seed": np.repeat(self.seed, c),
        }
        for name, column in self.hparams.items():
            columns[name] = np.repeat(column, c)
        columns["step"] = np.tile(self.steps, n)
        columns["train_loss"] = self.train_loss.reshape(-1)
        for name, curve in self.metrics.items():
            columns[name] = curve.reshape(-1)
        return pd.DataFrame(columns)

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
        end in a bar where they stopped. Then one panel per numeric hyperparameter that
        varies: the final `metric` of each trial (mean over seeds, error bars = seed std)
        against it, completed trials filled, trials stopped early hollow (their score
        when they stopped). Its x axis is log when the values are positive and span more
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
        _require("matplotlib", "SweepResult.plot")
        from matplotlib import cm, colors
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        metric = self._check_metric(metric)
        numeric = [name for name in self.hparams if self._numeric(name) is not None]
        if hparam is None:
            hparam = "learning_rate" if "learning_rate" in numeric else next(iter(numeric), None)
        elif hparam not in numeric:
            raise ValueError(
                f"`hparam` must name a numeric hyperparameter {numeric}, got hparam={hparam!r}."
            )
        panels = [name for name in numeric if np.unique(self._numeric(name)).size > 1]

        _show_figures_in_notebooks()
        figure = Figure(figsize=(4.8 * (1 + len(panels)) + 1.0, 4.0), layout="constrained")
        axes = figure.subplots(1, 1 + len(panels), squeeze=False)[0]

        ax = axes[0]
        steps = self.steps
        alive = np.flatnonzero(~self.diverged)
        dead = np.flatnonzero(self.diverged)
        marker = "o" if steps.size == 1 else None
        alpha = 0.8 if self.n_members <= 50 else max(0.15, 0.8 * (50 / self.n_members) ** 0.5)
        if alive.size:
            lines = ax.plot(steps, self.train_loss[alive].T, lw=1.1, alpha=alpha, marker=marker)
            if hparam is not None:
                values = self._numeric(hparam)
                norm = _norm(colors, values)
                mappable = cm.ScalarMappable(norm=norm, cmap="viridis")
                for line, member in zip(lines, alive):
                    line.set_color(mappable.to_rgba(values[member]))
                mappable.set_array(values)
                figure.colorbar(mappable, ax=ax, label=hparam)
            else:
                for line in lines:
                    line.set_color("C0")
        handles, labels = [], []
        if dead.size:
            ax.plot(steps, self.train_loss[dead].T, color="0.6", ls="--", lw=0.9, marker=marker)
            # an x at each diverged member's last finite point, where its curve stops
            x, y = _last_finite(steps, self.train_loss[dead])
            ax.plot(x, y, ls="none", marker="x", color="0.45", ms=5)
            handles.append(Line2D([], [], color="0.6", ls="--", marker="x", mec="0.45"))
            labels.append(f"diverged: {dead.size} of {self.n_members}")
        stopped = np.flatnonzero(self.status == "stopped")
        if stopped.size:
            # a bar where each stopped member's curve ends (NaN after it)
            x, y = _last_finite(steps, self.train_loss[stopped])
            ax.plot(x, y, ls="none", marker="|", color="0.25", ms=8, mew=1.2)
            handles.append(Line2D([], [], ls="none", marker="|", color="0.25", ms=8, mew=1.2))
            labels.append(f"stopped early: {stopped.size} of {self.n_members}")
        if handles:
            ax.legend(handles=handles, labels=labels, loc="upper right", fontsize=8)
        finite = self.train_loss[np.isfinite(self.train_loss)]
        if finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{self.n_members} members ({self.n_trials} trials × {self.n_seeds} seeds)")

        try:
            metric, mode = self._resolve(metric, None)
        except ValueError:
            mode = None  # direction unknown: plot the metric, star no best
        stats = self._trial_stats(metric, mode or "min")
        shown = np.isfinite(stats.mean)
        completed = shown & (stats.status == "completed")
        early = shown & ~completed  # stopped early or still running: score when it stopped
        first = stats.order[0]
        best = first if mode is not None and completed[first] else None
        ylabel = f"final {metric}" + (" (mean ± std over seeds)" if self.n_seeds > 1 else "")
        for ax, name in zip(axes[1:], panels):
            x = self._numeric(name)[stats.first]
            ax.errorbar(
                x[completed], stats.mean[completed], yerr=stats.std[completed], fmt="o",
                ms=4, color="C0", ecolor="0.55", elinewidth=1, capsize=2,
            )
            if early.any():
                ax.errorbar(
                    x[early], stats.mean[early], yerr=stats.std[early], fmt="o", ms=4,
                    mfc="none", color="C0", ecolor="0.75", elinewidth=1, capsize=2,
                    label="stopped early",
                )
            if best is not None:
                ax.plot(x[best], stats.mean[best], marker="*", ms=14, color="C3",
                        ls="none", label="best", zorder=3)
            if best is not None or early.any():
                ax.legend(loc="best", fontsize=8)
            if not shown.all():
                missing = int((~shown).sum())
                ax.set_title(
                    f"{missing} trial{'s' if missing > 1 else ''} not shown (diverged or NaN)",
                    fontsize=9, color="0.35",
                )
            _set_hparam_axis(ax, self._numeric(name))
            means = stats.mean[shown]
            if means.size and np.all(means > 0) and means.max() > 100 * means.min():
                ax.set_yscale("log")
            ax.set_xlabel(name)
            ax.set_ylabel(ylabel)
        if path is not None:
            figure.savefig(os.fspath(path), dpi=110)
        return figure

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
        arrays: dict[str, np.ndarray] = {
            "trial": self.trial,
            "seed": self.seed,
            "steps": self.steps,
            "train_loss": self.train_loss,
            "diverged": self.diverged,
            "diverged_step": self.diverged_step,
            "status": self.status,
            "steps_trained": self.steps_trained,
        }
        if self.step_loss is not None:
            arrays["step_loss"] = self.step_loss
        for name, history in (self.hparam_history or {}).items():
            arrays[f"hparam_history:{name}"] = history
        if self.lineage is not None:
            arrays["lineage"] = self.lineage
        hparams_meta = []
        for i, (name, column) in enumerate(self.hparams.items()):
            if column.dtype == object:
                hparams_meta.append({"name": name, "static": True,
                                     "values": _json_column(name, column)})
            else:
                arrays[f"hparam_{i}"] = column
                hparams_meta.append({"name": name, "static": False, "key": f"hparam_{i}"})
        metrics_meta = []
        for i, (name, curve) in enumerate(self.metrics.items()):
            arrays[f"metric_{i}"] = curve
            metrics_meta.append({"name": name, "key": f"metric_{i}"})
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "metric": self.metric,
            "mode": self.mode,
            "timing": self.timing,
            "hparams": hparams_meta,
            "metrics": metrics_meta,
            "params": _store_tree("params", self.params, "param_", arrays),
            "model_state": _store_tree("model_state", self.model_state, "model_state_", arrays),
            "member_params": _store_members("member_params", self.member_params, arrays),
            "member_model_state": _store_members("member_model_state", self.member_model_state,
                                                 arrays),
        }
        arrays["__meta__"] = np.array(json.dumps(meta))
        write_atomically(os.fspath(path), lambda file: np.savez_compressed(file, **arrays))

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
        where = os.fspath(path)
        problem = (
            f"`path` {where!r} is not a readable SweepResult file written by `SweepResult.save`"
        )
        try:
            with open(where, "rb") as file:
                magic = file.read(6)
                file.seek(0)
                if magic == b"\x93NUMPY":
                    raise ValueError("it holds a single array, not an .npz archive")
                if not magic.startswith(b"PK"):
                    raise ValueError("it is not an .npz (zip) archive")
                data = np.load(file, allow_pickle=False)
                with data:
                    arrays = {key: data[key] for key in data.files}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(f"{problem}: {err}") from err
        if "__meta__" not in arrays:
            raise ValueError(f"{problem}: it has no `__meta__` entry.")
        try:
            meta = json.loads(str(arrays["__meta__"][()]))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{problem}: its metadata is not valid JSON ({err}).") from err
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ValueError(f"{problem}: its metadata does not name the format {_FORMAT!r}.")
        version = meta.get("version")
        if version not in _READABLE_VERSIONS:
            raise ValueError(
                f"`path` {where!r} holds SweepResult format version {version!r}, this "
                f"jaxtune reads versions {', '.join(map(str, _READABLE_VERSIONS))}; load "
                "it with the jaxtune that wrote it."
            )

        def array(key: str) -> np.ndarray:
            if key not in arrays:
                raise ValueError(f"{problem}: it is missing the array {key!r}.")
            return arrays[key]

        try:
            hparams = {}
            for entry in meta["hparams"]:
                if entry["static"]:
                    values = entry["values"]
                    column = np.empty(len(values), dtype=object)
                    for i, value in enumerate(values):
                        column[i] = value
                    hparams[entry["name"]] = column
                else:
                    hparams[entry["name"]] = array(entry["key"])
            metrics = {entry["name"]: array(entry["key"]) for entry in meta["metrics"]}
            params = _load_tree("params", meta["params"], array, version, problem)
            model_state = _load_tree("model_state", meta["model_state"] if version >= 3
                                     else None, array, version, problem)
            member_params, member_model_state = (
                _load_members(key, meta[key] if version >= 4 else None, array, version, problem)
                for key in ("member_params", "member_model_state"))
            fields = {
                "hparams": hparams, "metrics": metrics, "params": params,
                "model_state": model_state, "member_params": member_params,
                "member_model_state": member_model_state,
                "metric": meta["metric"], "mode": meta["mode"], "timing": meta["timing"],
                "step_loss": arrays.get("step_loss"),
                "lineage": arrays.get("lineage"),
                "hparam_history": {key.split(":", 1)[1]: arrays[key] for key in arrays
                                   if key.startswith("hparam_history:")} or None,
            }
        except (KeyError, TypeError) as err:
            raise ValueError(f"{problem}: its metadata lacks or mangles {err}.") from err
        for key in ("trial", "seed", "steps", "train_loss", "diverged", "diverged_step"):
            fields[key] = array(key)
        if version >= 2:
            fields["status"] = array("status")
            fields["steps_trained"] = array("steps_trained")
        try:
            return cls(**fields)
        except (ValueError, TypeError) as err:
            raise ValueError(f"`path` {where!r} holds an inconsistent SweepResult: {err}") from err

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
        elif mode not in _MODES:
            raise ValueError(f"`mode` must be 'min' or 'max', got mode={mode!r}.")
        return metric, mode

    def _trial_stats(self, metric: str, mode: str) -> _TrialStats:
        return trial_stats(self.trial, self.final(metric), self.status, self.diverged,
                           self.steps_trained, mode)

    def _numeric(self, name: str) -> np.ndarray | None:
        """The column `name` as float64 if it is numeric (not bool), else None."""
        column = self.hparams[name]
        if column.dtype.kind in "iuf":
            return column.astype(np.float64)
        if column.dtype == object and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in column
        ):
            return column.astype(np.float64)
        return None


# ---------------------------------------------------------------------- helpers


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
    for i, name in enumerate(_STATUSES):
        member_rank[status == name] = i
    rank = np.zeros(size, np.int64)
    np.maximum.at(rank, inverse, member_rank)
    trial_status = np.asarray(_STATUSES)[rank]
    steps = np.bincount(inverse, weights=steps_trained, minlength=size) / count
    finite = np.isfinite(mean)
    score = np.where(finite, mean if mode == "min" else -mean, 0.0)
    order = np.lexsort((trials, n_diverged, score, ~finite, rank))
    return _TrialStats(trials, first, inverse, final, mean, std, count, n_diverged,
                       trial_status, steps, order)


def _show_figures_in_notebooks() -> None:
    """Lets IPython display a pyplot-free `Figure` returned by a cell, as a PNG.

    pyplot registers this display hook only when it is imported; `plot` does not
    use pyplot (no global figure state), so it registers the hook itself.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    def png(figure: Figure) -> bytes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    shell.display_formatter.formatters["image/png"].for_type(Figure, png)


def guess_mode(metric: str) -> str:
    """"min" or "max" for a metric, judged by its name; ValueError when unclear.

    Names containing loss, error, mse, mae, rmse, nll or perplexity are minimised;
    acc, precision, recall, f1, auc or r2 maximised.
    """
    lower = metric.lower()
    if any(word in lower for word in _MIN_WORDS):
        return "min"
    if any(word in lower for word in _MAX_WORDS):
        return "max"
    raise ValueError(
        f"Cannot tell whether lower or higher `{metric}` is better: pass "
        "mode='min' or mode='max'."
    )


def _require(module: str, caller: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"`{caller}` needs {module}: {_DEMO_HINT}.") from err


def _show(array: np.ndarray) -> str:
    return np.array2string(np.asarray(array), threshold=8)


def _check_length(name: str, array: np.ndarray, n: int) -> None:
    if array.shape[0] != n:
        raise ValueError(
            f"`{name}` has {array.shape[0]} entries but `trial` has {n}: every per-member "
            f"array needs N={n} entries, one per member."
        )


def _int_vector(name: str, value: Any, n: int | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array, got shape {array.shape}.")
    if array.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must hold integers, got dtype {array.dtype}.")
    if n is not None:
        _check_length(name, array, n)
    return array


def _status_vector(value: Any, diverged: np.ndarray, n: int) -> np.ndarray:
    """`status` as a str array [N], derived from `diverged` when None, else checked."""
    if value is None:
        return np.where(diverged, "diverged", "completed")
    allowed = ", ".join(repr(s) for s in _STATUSES)
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`status` must be a 1-D array [N], got shape {array.shape}.")
    if array.dtype.kind not in "UO" or not all(isinstance(v, str) for v in array):
        raise TypeError(
            f"`status` must hold strings, one of {allowed} per member, got dtype "
            f"{array.dtype}."
        )
    _check_length("status", array, n)
    array = array.astype(str)
    bad = np.flatnonzero(~np.isin(array, _STATUSES))
    if bad.size:
        raise ValueError(
            f"member {bad[0]} has status={str(array[bad[0]])!r}; `status` must be one of "
            f"{allowed}."
        )
    bad = np.flatnonzero(diverged != (array == "diverged"))
    if bad.size:
        member = bad[0]
        raise ValueError(
            f"member {member} has status={str(array[member])!r} but diverged="
            f"{bool(diverged[member])}; `status` is 'diverged' exactly for the members "
            "marked in `diverged` (pass status=None to derive it from `diverged`)."
        )
    return array


def _curve_array(name: str, value: Any, n: int, c: int) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != (n, c):
        raise ValueError(
            f"`{name}` must have shape [N, C] = ({n}, {c}) (N members from `trial`, C record "
            f"points from `steps`), got shape {array.shape}."
        )
    if array.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must hold numbers, got dtype {array.dtype}.")
    return array


def _hparam_column(name: str, value: Any, n: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "U":
        array = array.astype(object)
    elif array.dtype.kind == "O":
        if any(isinstance(v, np.generic) for v in array.flat):
            plain = np.empty(array.shape, dtype=object)
            for index, v in np.ndenumerate(array):
                plain[index] = v.item() if isinstance(v, np.generic) else v
            array = plain
    elif array.dtype.kind not in "biuf":
        raise TypeError(
            f"hyperparameter `{name}` must be a numeric array or an object array of Python "
            f"values, got dtype {array.dtype}."
        )
    if array.ndim != 1:
        raise ValueError(
            f"hyperparameter `{name}` must be a 1-D column [N], got shape {array.shape}."
        )
    if array.shape[0] != n:
        raise ValueError(
            f"hyperparameter `{name}` has {array.shape[0]} entries but `trial` has {n}: every "
            f"column needs N={n} entries, one per member."
        )
    return array


def _check_names(hparams: dict[str, np.ndarray], metrics: dict[str, np.ndarray]) -> None:
    """Hyperparameter names must not collide with the columns `to_pandas`/`summary` make."""
    taken = {"member", "trial", "seed", "step", "train_loss", "diverged", "diverged_step",
             "n_seeds", "n_diverged", "status", "steps_trained"}
    for name in ("train_loss", *metrics):
        taken.update((name, f"final_{name}", f"{name}_mean", f"{name}_std"))
    for name in hparams:
        if name in taken:
            raise ValueError(
                f"hyperparameter name `{name}` collides with a column of `to_pandas` or "
                "`summary` (or an eval metric); rename the hyperparameter."
            )


def _check_unique_pairs(trial: np.ndarray, seed: np.ndarray) -> None:
    order = np.lexsort((seed, trial))
    same = (np.diff(trial[order]) == 0) & (np.diff(seed[order]) == 0)
    if same.any():
        i = np.flatnonzero(same)[0]
        a, b = sorted((int(order[i]), int(order[i + 1])))
        raise ValueError(
            f"members {a} and {b} are both trial={trial[a]}, seed={seed[a]}; each (trial, "
            "seed) pair must occur once."
        )


def _check_shared_hparams(hparams: dict[str, np.ndarray], trial: np.ndarray) -> None:
    _, first, inverse = np.unique(trial, return_index=True, return_inverse=True)
    reference = first[inverse]
    for name, column in hparams.items():
        other = column[reference]
        if column.dtype == object:
            same = np.array([a is b or _equal(a, b) for a, b in zip(column, other)], dtype=bool)
        elif column.dtype.kind == "f":
            same = (column == other) | (np.isnan(column) & np.isnan(other))
        else:
            same = column == other
        if not same.all():
            member = int(np.flatnonzero(~same)[0])
            base = int(reference[member])
            first_value, other_value = _plain(column[base]), _plain(column[member])
            raise ValueError(
                f"members {base} and {member} share trial={trial[member]} but differ in "
                f"hyperparameter `{name}` ({first_value!r} vs {other_value!r}); members "
                "of one trial must share every hyperparameter."
            )


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """A hyperparameter value as a plain Python value for `BestConfig`."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return float(str(value))  # shortest decimal that rounds to the same float32
    if isinstance(value, np.generic):
        return value.item()
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if isinstance(value, str) else str(value)


# Scales for hyperparameter axes and colours: log once positive values span more than a
# decade; symmetric-log (linear near 0) for values with 0 or negatives only from two
# decades on, as its linear region around 0 takes room of its own.
_LOG_SPAN = 10.0
_SYMLOG_SPAN = 100.0
_CATEGORICAL_MAX = 8  # at most this many distinct values: a tick at each one


def _scale(values: np.ndarray) -> tuple[str, float | None]:
    """("log" | "symlog" | "linear", the symlog linthresh) for a numeric column."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "linear", None
    magnitudes = np.abs(values[values != 0])
    if magnitudes.size == 0:
        return "linear", None
    low, high = float(magnitudes.min()), float(magnitudes.max())
    if np.all(values > 0):
        return ("log", None) if high > _LOG_SPAN * low else ("linear", None)
    if high >= _SYMLOG_SPAN * low:
        return "symlog", low
    return "linear", None


def _set_hparam_axis(ax: Any, values: np.ndarray) -> None:
    """The x axis of a metric-vs-hyperparameter panel: scale, and ticks at few values."""
    scale, linthresh = _scale(values)
    if scale == "symlog":
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
    else:
        ax.set_xscale(scale)
    distinct = np.unique(values[np.isfinite(values)])
    if 1 < distinct.size <= _CATEGORICAL_MAX:
        from matplotlib.ticker import NullLocator

        ax.set_xticks(distinct, [_format_value(float(v)) for v in distinct])
        ax.xaxis.set_minor_locator(NullLocator())


def _norm(colors: Any, values: np.ndarray):
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scale, linthresh = _scale(values)
    if low > 0:
        if low == high:
            low, high = low / 2, high * 2
        return colors.LogNorm(vmin=low, vmax=high)
    if scale == "symlog":
        return colors.SymLogNorm(linthresh=linthresh, linscale=0.5, vmin=low, vmax=high, base=10)
    if low == high:
        low, high = low - 1, high + 1
    return colors.Normalize(vmin=low, vmax=high)


def _last_finite(steps: np.ndarray, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step and value of each curve's last finite point (curves with none skipped)."""
    seen = np.isfinite(curves)
    last = seen.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)
    rows = np.flatnonzero(seen.any(axis=1))
    return steps[last[rows]], curves[rows, last[rows]]


def _json_column(name: str, column: np.ndarray) -> list:
    values = list(column)
    try:
        text = json.dumps(values, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"Cannot save static hyperparameter `{name}`: {err}. `save` stores static values "
            "as JSON, so they must be str, int, float (finite), bool, None, or lists / "
            "str-keyed dicts of these."
        ) from err
    if not _same_json(json.loads(text), values):
        raise TypeError(
            f"Cannot save static hyperparameter `{name}`: its values {values!r} would not "
            "come back unchanged from JSON (tuples become lists, dict keys become str); "
            "use lists and str keys."
        )
    return values


def _same_json(loaded: Any, original: Any) -> bool:
    if type(loaded) is not type(original):
        return False
    if isinstance(original, list):
        return len(loaded) == len(original) and all(map(_same_json, loaded, original))
    if isinstance(original, dict):
        return loaded.keys() == original.keys() and all(
            _same_json(loaded[k], original[k]) for k in original
        )
    return loaded == original


def _check_member_axis(name: str, tree: Any, n: int) -> None:
    """Every leaf of `tree` (`params` or `model_state`) needs the leading member axis N."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape = np.shape(leaf)
        if shape[:1] != (n,):
            raise ValueError(
                f"`{name}` leaf {jax.tree_util.keystr(path) or '(root)'} has shape {shape}; "
                f"every leaf needs the leading member axis N={n}."
            )


def _store_tree(name: str, tree: Any, prefix: str, arrays: dict[str, np.ndarray]) -> list | None:
    """Puts each leaf of `tree` into `arrays` as `<prefix><i>`; the leaves' metadata, or None."""
    if tree is None:
        return None
    entries = []
    for i, (key_path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(tree)[0]):
        leaf = np.asarray(leaf)
        if leaf.dtype.kind == "O":
            raise TypeError(
                f"Cannot save `{name}` leaf {jax.tree_util.keystr(key_path)}: it is an object "
                "array, which needs pickle; make every leaf a numeric array."
            )
        arrays[f"{prefix}{i}"] = leaf
        entries.append({"path": _path_entries(key_path), "key": f"{prefix}{i}",
                        "dtype": str(leaf.dtype)})
    return entries


def _member_trees(name: str, trees: Any, n: int) -> dict[int, Any] | None:
    """`member_params` or `member_model_state` checked: {member: tree}, by member; None if
    empty or every tree is None (a model without state)."""
    if trees is None:
        return None
    if not isinstance(trees, Mapping):
        raise TypeError(f"`{name}` must be a dict member -> tree (one member's final "
                        f"parameters, no member axis), got {type(trees).__name__}.")
    out = {}
    for member in sorted(trees, key=lambda m: (not isinstance(m, (int, np.integer)), str(m))):
        if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not (
                0 <= member < n):
            raise ValueError(f"`{name}` has key {member!r}; keys are members 0..{n - 1}.")
        out[int(member)] = trees[member]
    return out if any(tree is not None for tree in out.values()) else None


def _store_members(name: str, trees: dict[int, Any] | None, arrays: dict[str, np.ndarray]
                   ) -> list | None:
    """`_store_tree` for each member's tree: [{"member": m, "leaves": entries}, ...]."""
    if trees is None:
        return None
    return [{"member": member, "leaves": _store_tree(f"{name}[{member}]", tree,
                                                     f"{name}_{member}_", arrays)}
            for member, tree in trees.items()]


def _load_members(name: str, entries: list | None, array: Any, version: int, problem: str
                  ) -> dict[int, Any] | None:
    """The {member: tree} that `_store_members` saved as `entries`."""
    if entries is None:
        return None
    return {entry["member"]: _load_tree(name, entry["leaves"], array, version, problem)
            for entry in entries}


def _load_tree(name: str, entries: list | None, array: Any, version: int, problem: str) -> Any:
    """The tree `_store_tree` saved as `entries` (a flat {keystr: leaf} dict in version 1)."""
    if entries is None:
        return None
    leaves = [(entry["path"], _restore_dtype(array(entry["key"]), entry["dtype"], name, problem))
              for entry in entries]
    if version == 1:
        return dict(leaves)
    stored = sum(array(key).nbytes for key in {entry["key"] for entry in entries})
    return _tree_from_paths(leaves, name, problem, _EMPTY_LIST_POSITIONS + stored)


def _restore_dtype(array: np.ndarray, dtype_name: str, name: str, problem: str) -> np.ndarray:
    """Views leaves NumPy stores as raw bytes (bfloat16, float8, ...) as their dtype."""
    if str(array.dtype) == dtype_name:
        return array
    import ml_dtypes

    dtype = getattr(ml_dtypes, dtype_name, None)
    if dtype is None or np.dtype(dtype).itemsize != array.dtype.itemsize:
        raise ValueError(f"{problem}: a `{name}` leaf has dtype {array.dtype}, not {dtype_name}.")
    return array.view(dtype)


def _path_entries(key_path: tuple) -> list[dict[str, Any]]:
    """A `jax.tree_util` key path as JSON: {"key": k} (dict key), {"index": i} (sequence
    position) or {"attr": name} (named field), one per level."""
    entries: list[dict[str, Any]] = []
    for entry in key_path:
        if isinstance(entry, jax.tree_util.DictKey):
            key = entry.key
            if isinstance(key, np.integer):
                key = int(key)
            entries.append({"key": key if isinstance(key, (str, int)) else str(key)})
        elif isinstance(entry, jax.tree_util.SequenceKey):
            entries.append({"index": int(entry.idx)})
        elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
            entries.append({"index": int(entry.key)})
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            entries.append({"attr": entry.name})
        else:  # a custom node's own key type
            entries.append({"key": str(entry)})
    return entries


# A list position that no key path reaches holds None (an empty subtree, e.g. optax's
# EmptyState), so the key paths alone could ask for lists of any length: a crafted file of
# 1 kB asked for 8 GB of list (position 10**9), or 2**62 (a MemoryError). The lists of one
# tree may hold this many positions, plus one per byte of its distinct stored leaves.
_EMPTY_LIST_POSITIONS = 2**16


def _tree_from_paths(leaves: list[tuple[Any, np.ndarray]], name: str, problem: str,
                     positions: int) -> Any:
    """Rebuilds nested dicts and lists from (key path entries, leaf) pairs.

    Its lists may hold at most `positions` positions in all.
    """
    for path, _ in leaves:
        if not isinstance(path, list) or not all(_path_entry_ok(e) for e in path):
            raise ValueError(f"{problem}: a `{name}` key path is mangled: {path!r}.")
    highest: dict[str, int] = {}  # each list, by the key path to it: its highest position
    for path, _ in leaves:
        for depth, entry in enumerate(path):
            if "index" in entry:
                where = json.dumps(path[:depth])
                highest[where] = max(highest.get(where, 0), entry["index"])
    if sum(highest.values()) + len(highest) > positions:
        furthest = max((path for path, _ in leaves),
                       key=lambda path: max(entry.get("index", -1) for entry in path))
        index = max(entry.get("index", -1) for entry in furthest)
        raise ValueError(
            f"{problem}: its `{name}` key path {furthest!r} puts a leaf at list position "
            f"{index}, more than the file's arrays fill: its lists would hold "
            f"{sum(highest.values()) + len(highest)} positions, its leaves allow {positions}.")
    return _tree_node(leaves, name, problem)


def _path_entry_ok(entry: Any) -> bool:
    if not isinstance(entry, dict) or len(entry) != 1:
        return False
    (kind, value), = entry.items()
    if kind == "index":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return (kind == "attr" and isinstance(value, str)) or (
        kind == "key" and isinstance(value, (str, int))
    )


def _tree_node(leaves: list[tuple[list, np.ndarray]], name: str, problem: str) -> Any:
    if len(leaves) == 1 and not leaves[0][0]:
        return leaves[0][1]
    kinds = {"list" if path and "index" in path[0] else "dict" for path, _ in leaves}
    if any(not path for path, _ in leaves) or len(kinds) != 1:
        raise ValueError(f"{problem}: its `{name}` key paths do not form a tree.")
    children: dict[Any, list] = {}
    for path, leaf in leaves:
        (_, key), = path[0].items()
        children.setdefault(key, []).append((path[1:], leaf))
    if kinds == {"dict"}:
        return {key: _tree_node(child, name, problem) for key, child in children.items()}
    # Positions with no leaves (e.g. an optax EmptyState) hold None, an empty subtree.
    node: list[Any] = [None] * (max(children) + 1)
    for index, child in children.items():
        node[index] = _tree_node(child, name, problem)
    return node
