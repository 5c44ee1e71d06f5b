"""Optuna's samplers and pruners over a compiled population: batched ask/tell.

Optuna evaluates one trial per Python call (or per process); `OptunaSearch` asks
the study for a *batch* of trials, trains them as one vmapped population, and
tells each result when its members finish. At every record point each trial
reports the mean of its metric over its seeds (`trial.report(value, step)`) and
is stopped, all seeds together, when `trial.should_prune()` says so; the freed
slots take the next asked trials. With a fixed `concurrent`, the whole study
trains in one compiled program per static group, whatever the sampler proposes.

Space -> Optuna distributions:

  ============  ==========================================================
  jaxtune        Optuna
  ============  ==========================================================
  uniform        FloatDistribution(low, high)
  loguniform     FloatDistribution(low, high, log=True)
  randint        IntDistribution(low, high - 1)   (jaxtune's `high` is excluded)
  choice         CategoricalDistribution(values)  (values Optuna cannot store,
                 e.g. tuples, go in as their repr)
  fixed          not asked
  ============  ==========================================================

Optuna is optional: `pip install 'jaxtune[optuna]'`. This module imports it only
when an `OptunaSearch` is created.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxtune._checks import positive_int
from jaxtune.space import Choice, Fixed, LogUniform, RandInt, Uniform
from jaxtune.strategies.base import CONTINUE, Decision, Report, Strategy, resolve_metric

if TYPE_CHECKING:
    from jaxtune.runner import Search
    from jaxtune.space import Space, Table

#: The user attribute linking an Optuna trial to its jaxtune trial id.
TRIAL_ATTR = "jaxtune_trial"
#: The user attribute of a trial that was running when its process died.
INTERRUPTED_ATTR = "jaxtune_interrupted"

_OPTUNA_TYPES = (type(None), bool, int, float, str)


def import_optuna():
    """Imports Optuna, or says how to install it."""
    try:
        import optuna
    except ImportError as error:
        raise ImportError(
            "jt.OptunaSearch needs Optuna, which is not installed; install it with "
            "`pip install 'jaxtune[optuna]'` (or `pip install optuna`)."
        ) from error
    return optuna


def distributions(space: Space) -> dict[str, Any]:
    """The Optuna distribution of every non-fixed dimension of `space`.

    Example:
      >>> import jaxtune as jt
      >>> from jaxtune.integrations.optuna import distributions
      >>> distributions(jt.Space(n=jt.randint(0, 10), lr=jt.loguniform(1e-4, 1e-1),
      ...                        act=jt.choice(["relu", "tanh"]), width=jt.fixed(64)))["n"]
      IntDistribution(high=9, log=False, low=0, step=1)
    """
    optuna = import_optuna()
    dists = optuna.distributions
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, Fixed):
            continue
        if isinstance(dim, LogUniform):
            out[name] = dists.FloatDistribution(dim.low, dim.high, log=True)
        elif isinstance(dim, Uniform):
            out[name] = dists.FloatDistribution(dim.low, dim.high)
        elif isinstance(dim, RandInt):
            out[name] = dists.IntDistribution(dim.low, dim.high - 1)
        elif isinstance(dim, Choice):
            out[name] = dists.CategoricalDistribution(
                [v if isinstance(v, _OPTUNA_TYPES) else repr(v) for v in dim.values])
        else:
            raise TypeError(f"OptunaSearch: dimension `{name}` is a {type(dim).__name__}, "
                            "which has no Optuna distribution; use uniform, loguniform, "
                            "randint, choice or fixed.")
    return out


class OptunaSearch(Strategy):
    """Model-based search (TPE, CMA-ES, GP ...) with pruning, over a compiled population.

    Keeps `concurrent` trials training (each as `seeds` members); every free slot
    asks the study for a trial (`study.ask` with the space's distributions), and
    each trial is told when its members finish: COMPLETE with the mean over seeds
    of the metric at the last step, PRUNED when the study's pruner stopped it at a
    record point, FAIL when a seed diverged. Any Optuna sampler and pruner work
    (`MedianPruner`, `SuccessiveHalvingPruner`, `HyperbandPruner` unchanged); for
    batches, `TPESampler(constant_liar=True)` is the right default (trials asked
    together do not all land on the same point), and it is the sampler used when
    this strategy creates the study.

    Studies persist with any Optuna storage, e.g. `storage="sqlite:///study.db"`:
    every trial and intermediate value is in the database (so `optuna-dashboard`
    shows the search live). After a crash, running the same call again continues
    the study: trials that were running are marked FAIL (user attribute
    `jaxtune_interrupted`) and asked again, and the finished ones count toward
    `trials`. With `checkpoint_dir`, the sweep resumes from its checkpoint instead,
    with the strategy's state. One process drives a study at a time.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax, optuna
      >>> import jaxtune as jt
      >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
      >>> x = np.linspace(-1, 1, 128, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> search = jt.OptunaSearch(trials=12, concurrent=4, seed=0)
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   jt.Space(learning_rate=jt.loguniform(1e-3, 1.0)), data=(x, y),
      ...                   batch_size=32, steps=40, trials=12, progress=False, strategy=search)
      >>> len(search.study.trials), result.n_trials
      (12, 12)

    Args:
      study: an `optuna.Study` (single objective, its direction matching `mode`);
        default: one created from `storage`, `study_name`, `sampler` and `pruner`
        (`load_if_exists=True`).
      trials: how many finished trials the study should hold (those it already has
        count); default: the sweep's `trials`.
      concurrent: trials training at once (x seeds members); default: 32, at most
        `trials`. One compiled program serves them all.
      metric: the metric told to Optuna (default: the sweep's `metric`).
      mode: "min" or "max" (default: the sweep's).
      storage: an Optuna storage or URL, when `study` is not given (default: in memory).
      study_name: the study's name in `storage`.
      sampler: when `study` is not given (default: `TPESampler(constant_liar=True, seed=seed)`).
      pruner: when `study` is not given (default: Optuna's `MedianPruner`).
      seed: the default sampler's seed.
      max_member_steps: a budget of member-steps (optimizer steps of all members,
        seeds included): no trial is asked once the steps trained plus those the
        running trials still need would exceed it. Makes searches with and without
        pruning comparable at equal cost (pruning then buys more trials).

    Attributes:
      study: the `optuna.Study`, once the sweep has set the strategy up.
      trial_numbers: jaxtune trial id -> Optuna trial number, for every trial asked.
    """

    starts_members = True  # every trial that ends frees its slots for a new one

    def __init__(self, study: Any = None, *, trials: int | None = None, concurrent: int = 32,
                 metric: str | None = None, mode: str | None = None, storage: Any = None,
                 study_name: str | None = None, sampler: Any = None, pruner: Any = None,
                 seed: int | None = None, max_member_steps: int | None = None):
        optuna = import_optuna()
        if study is not None and not isinstance(study, optuna.Study):
            raise TypeError(f"`study` must be an optuna.Study, got {type(study).__name__}; "
                            "create one with optuna.create_study(...), or leave study=None.")
        if study is not None and any(v is not None for v in (storage, study_name, sampler,
                                                              pruner)):
            raise ValueError("pass either `study` or the arguments to create one (`storage`, "
                             "`study_name`, `sampler`, `pruner`), not both.")
        self.trials = None if trials is None else positive_int("trials", trials)
        self.concurrent = positive_int("concurrent", concurrent)
        self.metric = metric
        self.mode = mode
        self.storage = storage
        self.study_name = study_name
        self.sampler = sampler
        self.pruner = pruner
        self.seed = seed
        self.max_member_steps = (None if max_member_steps is None
                                 else positive_int("max_member_steps", max_member_steps))
        self.study = study
        self._given_study = study is not None
        self._reset()

    # -- setup: everything checked before anything compiles ------------------------------

    def setup(self, search: Search) -> None:
        import jax

        if jax.process_count() > 1:
            raise ValueError(
                "OptunaSearch runs in one process: every process would ask the study for "
                "trials of its own. Run the study from one process (it can still use every "
                "local device), or use a strategy that decides from the records alone."
            )
        self._metric, self._mode = resolve_metric(search, self.metric, self.mode, "OptunaSearch")
        self._distributions = distributions(search.space)
        if self.study is None:
            self.study = self._create_study()
        self._check_direction()
        self._check_distributions()
        self._trials_target = self.trials or len(search.configurations)
        self._concurrent = min(self.concurrent, self._trials_target)

    def _create_study(self) -> Any:
        optuna = import_optuna()
        with warnings.catch_warnings():  # `constant_liar` is experimental in some versions
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self.sampler or optuna.samplers.TPESampler(constant_liar=True,
                                                                 seed=self.seed)
        direction = "maximize" if self._mode == "max" else "minimize"
        try:
            return optuna.create_study(storage=self.storage, study_name=self.study_name,
                                       sampler=sampler, pruner=self.pruner,
                                       direction=direction, load_if_exists=True)
        except Exception as error:  # storages raise many kinds of errors
            raise ValueError(
                f"OptunaSearch: could not open the study in `storage`={self.storage!r} "
                f"({type(error).__name__}: {error}); give a URL Optuna can open, e.g. "
                "storage='sqlite:///study.db' (its directory must exist)."
            ) from error

    def _check_direction(self) -> None:
        optuna = import_optuna()
        directions = self.study.directions
        if len(directions) != 1:
            raise ValueError(f"OptunaSearch: the study has {len(directions)} objectives; "
                             "jaxtune tells one value per trial, use a single-objective study.")
        wanted = (optuna.study.StudyDirection.MAXIMIZE if self._mode == "max"
                  else optuna.study.StudyDirection.MINIMIZE)
        if directions[0] != wanted:
            given = directions[0].name.lower()
            raise ValueError(
                f"OptunaSearch: the study's direction is {given!r} but `mode`={self._mode!r} "
                f"for metric {self._metric!r}; create the study with direction="
                f"{'maximize' if self._mode == 'max' else 'minimize'!r}, or pass "
                f"mode={'max' if given == 'maximize' else 'min'!r}."
            )

    def _check_distributions(self) -> None:
        for frozen in self.study.get_trials(deepcopy=False):
            for name, theirs in frozen.distributions.items():
                ours = self._distributions.get(name)
                if ours is not None and ours != theirs:
                    raise ValueError(
                        f"OptunaSearch: the study's trial {frozen.number} drew `{name}` from "
                        f"{theirs}, but the space gives {ours}; use a new `study_name` for "
                        "this space, or the space the study was created with."
                    )

    def members_in_flight(self, search: Search) -> int | None:
        return self._concurrent * search.seeds

    # -- the search ------------------------------------------------------------------------

    def initial(self, search: Search) -> Table:
        self._reset()
        self._recover_interrupted(keep=())
        self._counted = sum(self._counts(frozen) for frozen in self.study.get_trials(
            deepcopy=False))
        remaining = self._trials_target - self._counted
        if remaining <= 0:
            raise ValueError(
                f"OptunaSearch: the study {self.study.study_name!r} already holds "
                f"{self._counted} finished trials, `trials`={self._trials_target}; raise "
                "`trials` to continue it, or use a new `study_name`."
            )
        n = min(self._concurrent, remaining, self._affordable(search))
        if n <= 0:
            raise ValueError(
                f"OptunaSearch: `max_member_steps`={self.max_member_steps} is less than one "
                f"trial ({search.steps} steps x {search.seeds} seeds); raise it.")
        return self._ask(search, n, first=0)

    def _affordable(self, search: Search) -> int:
        """How many more trials fit in `max_member_steps`."""
        if self.max_member_steps is None:
            return self._trials_target
        step = search.step
        live = np.isin(search.status, ("running", "waiting"))
        committed = int(step.sum()) + int((search.steps - step[live]).sum())
        return (self.max_member_steps - committed) // (search.steps * search.seeds)

    def decide(self, search: Search, report: Report) -> Decision:
        optuna = import_optuna()
        state = optuna.trial.TrialState
        curve = search.curve(self._metric)
        status = search.status
        record_steps = search.record_steps
        stop: list[int] = []
        for trial in sorted(self._active):
            members = search.trial_members(trial)
            running = members[np.isin(status[members], ("running", "waiting"))]
            replayed = self._replayed.get(trial)
            if replayed is not None:  # told after the checkpoint this run resumed from
                if replayed != "COMPLETE" or np.all(status[members] != "running"):
                    stop.extend(running.tolist())
                    self._active.discard(trial)
                continue
            if np.any(status[members] == "diverged"):
                stop.extend(running.tolist())
                self._tell(trial, state.FAIL)
                continue
            latest = int(np.min(search.record_index(members)))
            for column in np.flatnonzero(record_steps > self._reported.get(trial, -1)):
                if column > latest:
                    break
                value = float(np.mean(curve[members, column].astype(np.float64)))
                step = int(record_steps[column])
                if not math.isfinite(value):
                    stop.extend(running.tolist())
                    self._tell(trial, state.FAIL)
                    break
                self._optuna_trial(trial).report(value, step)
                self._reported[trial] = step
                if step >= search.steps:
                    self._tell(trial, state.COMPLETE, value)
                    break
                if self._optuna_trial(trial).should_prune():
                    stop.extend(running.tolist())
                    self._tell(trial, state.PRUNED)
                    break
        free = min(self._concurrent - len(self._active), self._trials_target - self._counted,
                   self._affordable(search))
        start = None
        if free > 0:
            first = int(search.member_trial.max()) + 1 if search.n_members else 0
            start = self._ask(search, free, first)
        if not stop and start is None:
            return CONTINUE
        return Decision(stop=tuple(stop), start=start)

    # -- Optuna bookkeeping ------------------------------------------------------------------

    def _reset(self) -> None:
        self._numbers: dict[int, int] = {}  # jaxtune trial -> Optuna trial number
        self._trial_ids: dict[int, int] = {}  # jaxtune trial -> Optuna's storage trial id
        self._active: set[int] = set()  # asked, not yet told
        self._reported: dict[int, int] = {}  # jaxtune trial -> last step reported
        self._replayed: dict[int, str] = {}  # told after the restored checkpoint: its state
        self._counted = 0  # finished or asked trials of the study, toward `trials`
        self._cache: dict[int, Any] = {}  # jaxtune trial -> optuna.Trial

    def _ask(self, search: Search, n: int, first: int) -> Table:
        columns: dict[str, list[Any]] = {name: [] for name in search.space.names}
        for k in range(n):
            trial = self.study.ask(self._distributions)
            trial.set_user_attr(TRIAL_ATTR, first + k)
            self._numbers[first + k] = trial.number
            # Optuna's storage id: a trial object is rebuilt from it after a restore.
            self._trial_ids[first + k] = trial._trial_id
            self._cache[first + k] = trial
            self._active.add(first + k)
            for name, dim in search.space.items():
                if isinstance(dim, Fixed):
                    columns[name].append(dim.value)
                elif isinstance(dim, Choice):
                    value = trial.params[name]
                    columns[name].append(next(
                        v for v in dim.values
                        if (v if isinstance(v, _OPTUNA_TYPES) else repr(v)) == value))
                else:
                    columns[name].append(trial.params[name])
        self._counted += n
        return search.space.table(columns)

    def _optuna_trial(self, trial: int) -> Any:
        if trial not in self._cache:
            optuna = import_optuna()
            self._cache[trial] = optuna.trial.Trial(self.study, self._trial_ids[trial])
        return self._cache[trial]

    def _tell(self, trial: int, state: Any, value: float | None = None) -> None:
        self.study.tell(self._numbers[trial], value, state=state)
        self._active.discard(trial)
        self._cache.pop(trial, None)

    def _counts(self, frozen: Any) -> bool:
        """Whether a trial of the study counts toward `trials`: finished, not interrupted."""
        state = import_optuna().trial.TrialState
        if frozen.state == state.FAIL:
            return not frozen.user_attrs.get(INTERRUPTED_ATTR, False)
        return frozen.state in (state.COMPLETE, state.PRUNED)

    def _recover_interrupted(self, keep: Any) -> None:
        """Marks FAIL the study's running jaxtune trials that this run does not own."""
        optuna = import_optuna()
        keep = set(keep)
        for frozen in self.study.get_trials(deepcopy=False,
                                            states=(optuna.trial.TrialState.RUNNING,)):
            if TRIAL_ATTR in frozen.user_attrs and frozen.number not in keep:
                optuna.trial.Trial(self.study, frozen._trial_id).set_user_attr(
                    INTERRUPTED_ATTR, True)
                self.study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)

    # -- results and checkpoints -------------------------------------------------------------

    @property
    def trial_numbers(self) -> dict[int, int]:
        """jaxtune trial id -> Optuna trial number, for every trial this run asked."""
        return dict(self._numbers)

    def member_numbers(self, result: Any) -> np.ndarray:
        """The Optuna trial number of every member of `result` (int [N])."""
        return np.asarray([self._numbers[int(t)] for t in result.trial], np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "trials": [[t, self._numbers[t], self._trial_ids[t]] for t in sorted(self._numbers)],
            "active": sorted(self._active),
            "reported": [[t, s] for t, s in sorted(self._reported.items())],
            "counted": self._counted,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a checkpoint's state and reconciles it with the study.

        The study may have moved on after the checkpoint (trials told or asked before
        the process died): trials asked after it are marked FAIL (interrupted), and
        trials told after it are not told again.
        """
        self._reset()
        for trial, number, trial_id in state["trials"]:
            self._numbers[int(trial)] = int(number)
            self._trial_ids[int(trial)] = int(trial_id)
        self._active = {int(t) for t in state["active"]}
        self._reported = {int(t): int(s) for t, s in state["reported"]}
        self._counted = int(state["counted"])
        self._recover_interrupted(keep=[self._numbers[t] for t in self._active])
        for trial in self._active:
            frozen = self.study._storage.get_trial(self._trial_ids[trial])
            if frozen.intermediate_values:
                self._reported[trial] = max(self._reported.get(trial, -1),
                                            max(frozen.intermediate_values))
            if frozen.state.is_finished():
                self._replayed[trial] = frozen.state.name

    def __repr__(self) -> str:
        # Stable across processes (it is part of a checkpoint's fingerprint).
        name = self.study.study_name if self._given_study else self.study_name
        return (f"OptunaSearch(study_name={name!r}, trials={self.trials}, "
                f"concurrent={self.concurrent}, metric={self.metric!r}, mode={self.mode!r})")

