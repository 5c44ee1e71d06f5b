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
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxtune._checks import check_nonnegative, one_of, positive_int
from jaxtune.space import Choice, Fixed, LogUniform, RandInt, Uniform
from jaxtune.strategies.base import (
    CONTINUE,
    Decision,
    Report,
    Strategy,
    best_of,
    resolve_metric,
)

if TYPE_CHECKING:
    from jaxtune.space import Space, Table
    from jaxtune.strategies.base import Search

#: The user attribute linking an Optuna trial to its jaxtune trial id.
TRIAL_ATTR = "jaxtune_trial"
#: The user attribute of a trial that was running when its process died.
INTERRUPTED_ATTR = "jaxtune_interrupted"
#: The study's user attribute naming the process driving it: host, pid, last heartbeat.
DRIVER_ATTR = "jaxtune_driver"

# What a storage says when another connection holds the lock it needs (SQLite, MySQL,
# PostgreSQL); anything else from a storage is an error at once.
_LOCKED = ("database is locked", "database table is locked", "lock wait timeout",
           "could not obtain lock", "deadlock")

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


_MSG_LOCKED = (
    "OptunaSearch: the study's storage {storage} is locked ({locked}) while {what}: another "
    "connection holds a write transaction on it (a second process writing to this study, a "
    "`sqlite3` shell, a tool editing the file). Retried for {seconds:.3g} s "
    "(`storage_timeout`); close the other writer, or raise `storage_timeout`."
)
_MSG_STORAGE = (
    "OptunaSearch: the study's storage {storage} failed while {what}: {cause} (Optuna "
    "reports every storage failure as 'invalid data in the commit'; this is the storage's "
    "own error). Check that the storage is reachable, writable and not full."
)
_MSG_DRIVEN = (
    "OptunaSearch: the study {study!r} is being driven by process {pid} on {host} (its last "
    "record point {age:.0f} s ago): one process drives a study at a time, and this one would "
    "fail that process's running trials. Wait for it to finish or stop it, or use another "
    "`study_name`; a process silent for `driver_timeout`={timeout:g} s is taken for dead "
    "(driver_timeout=0 takes the study over now)."
)


def _locked(error: BaseException | None) -> str | None:
    """What a storage error says about a lock, when it is one (searched along its causes)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error).lower()
        for phrase in _LOCKED:
            if phrase in text:
                return phrase
        error = error.__cause__ or error.__context__
    return None


def _cause(error: BaseException) -> str:
    """The first line of the innermost cause of `error`, with its type."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class OptunaSearch(Strategy):
    """Model-based search (TPE, CMA-ES, GP ...) with pruning, over a compiled population.

    Keeps `concurrent` trials training (each as `seeds` members); every free slot
    asks the study for a trial (`study.ask` with the space's distributions), and
    each trial is told when its members finish: COMPLETE with the mean over seeds
    of the metric at the last record point (or its best over the record points,
    `value="best"`), PRUNED when the study's pruner stopped it at a record point,
    FAIL when a seed diverged. The sampler learns only from trials told: trials
    asked together are drawn knowing the same results, so by default about
    sqrt(`trials`) trials train at once, and the study is told results about
    sqrt(`trials`) times (16 trials: 4 rounds of 4). Any Optuna sampler and pruner work
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
    with the strategy's state.

    One process drives a study at a time: the study records which one (user
    attribute `jaxtune_driver`: host, pid, time of its last record point), and a
    second process on a study another live process drives is refused before it
    touches the other's trials. A process that died (its pid gone on this host, or
    silent for `driver_timeout` seconds) is taken over. A storage that another
    connection has locked (SQLite: a second writer) is retried with backoff for
    `storage_timeout` seconds, then named in the error.

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
      concurrent: trials training at once (x seeds members); default:
        ceil(sqrt(`trials`)), at most 32 (16 -> 4, 64 -> 8, 1024 -> 32), so the
        sampler is told results that many times; `concurrent=trials` asks every
        trial at once (with TPE, random search). One compiled program serves them
        all.
      value: what a COMPLETE trial is told: "last", the metric (mean over seeds)
        at the last record point, or "best", its best over the trial's record
        points (Optuna examples returning the best accuracy of any epoch). The
        intermediate values reported to the pruner are the record points' own.
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
      storage_timeout: seconds to keep retrying a storage call that finds the
        storage locked, waiting 0.02 s, then twice as long each time (at most 1 s);
        default 60.
      driver_timeout: seconds after its last record point that the process
        driving the study is taken for dead by another process; default 900 (0:
        take the study over now).

    Attributes:
      study: the `optuna.Study`, once the sweep has set the strategy up.
      trial_numbers: jaxtune trial id -> Optuna trial number, for every trial asked.
    """

    starts_members = True  # every trial that ends frees its slots for a new one

    def __init__(self, study: Any = None, *, trials: int | None = None,
                 concurrent: int | None = None, value: str = "last",
                 metric: str | None = None, mode: str | None = None, storage: Any = None,
                 study_name: str | None = None, sampler: Any = None, pruner: Any = None,
                 seed: int | None = None, max_member_steps: int | None = None,
                 storage_timeout: float = 60.0, driver_timeout: float = 900.0):
        optuna = import_optuna()
        if study is not None and not isinstance(study, optuna.Study):
            raise TypeError(f"`study` must be an optuna.Study, got {type(study).__name__}; "
                            "create one with optuna.create_study(...), or leave study=None.")
        if study is not None and any(v is not None for v in (storage, study_name, sampler,
                                                              pruner)):
            raise ValueError("pass either `study` or the arguments to create one (`storage`, "
                             "`study_name`, `sampler`, `pruner`), not both.")
        self.trials = None if trials is None else positive_int("trials", trials)
        self.concurrent = None if concurrent is None else positive_int("concurrent", concurrent)
        self.value = one_of("value", value, ("last", "best"))
        self.metric = metric
        self.mode = mode
        self.storage = storage
        self.study_name = study_name
        self.sampler = sampler
        self.pruner = pruner
        self.seed = seed
        self.max_member_steps = (None if max_member_steps is None
                                 else positive_int("max_member_steps", max_member_steps))
        check_nonnegative("storage_timeout", storage_timeout)
        check_nonnegative("driver_timeout", driver_timeout)
        self.storage_timeout = float(storage_timeout)
        self.driver_timeout = float(driver_timeout)
        self._driver = {"host": socket.gethostname(), "pid": os.getpid(),
                        "token": uuid.uuid4().hex}
        self._last_beat = -math.inf
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
        self._claim()
        self._trials_target = self.trials or len(search.configurations)
        # Rounds of ~sqrt(trials) trials asked together: the sampler is told results as
        # often as a round is wide (asking all 16 of 16 trials at once made TPE random).
        # `bench/vs_optuna.py --skip throughput --quality-trials 16 32 64 --steps 100`,
        # best accuracy over 3 repeats, random / TPE at concurrent=32 / TPE at this default:
        # 16 trials .9703/.9694/.9703, 32 .9740/.9731/.9768, 64 .9749/.9768/.9777.
        default = min(32, math.ceil(math.sqrt(self._trials_target)))
        self._concurrent = min(self.concurrent or default, self._trials_target)

    def _create_study(self) -> Any:
        optuna = import_optuna()
        with warnings.catch_warnings():  # `constant_liar` is experimental in some versions
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self.sampler or optuna.samplers.TPESampler(constant_liar=True,
                                                                 seed=self.seed)
        direction = "maximize" if self._mode == "max" else "minimize"
        try:
            return self._retry_while_locked(
                optuna.create_study, storage=self.storage, study_name=self.study_name,
                sampler=sampler, pruner=self.pruner, direction=direction, load_if_exists=True)
        except Exception as error:  # storages raise many kinds of errors
            if _locked(error):
                raise self._storage_error("opening the study", error) from error
            raise ValueError(
                f"OptunaSearch: could not open the study in `storage`={self.storage!r} "
                f"({type(error).__name__}: {error}); give a URL Optuna can open, e.g. "
                "storage='sqlite:///study.db' (its directory must exist)."
            ) from error

    def _check_direction(self) -> None:
        optuna = import_optuna()
        directions = self._storage_call("reading the study", lambda: self.study.directions)
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
        for frozen in self._trials():
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
        self._counted = sum(self._counts(frozen) for frozen in self._trials())
        remaining = self._trials_target - self._counted
        if remaining <= 0:
            self._release()
            raise ValueError(
                f"OptunaSearch: the study {self.study.study_name!r} already holds "
                f"{self._counted} finished trials, `trials`={self._trials_target}; raise "
                "`trials` to continue it, or use a new `study_name`."
            )
        n = min(self._concurrent, remaining, self._affordable(search))
        if n <= 0:
            self._release()
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
        self._heartbeat()
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
                self._storage_call(f"reporting trial {self._numbers[trial]}'s value at step "
                                   f"{step}", self._optuna_trial(trial).report, value, step)
                self._reported[trial] = step
                self._best[trial] = best_of((self._best.get(trial, value), value), self._mode)
                if step >= search.steps:
                    self._tell(trial, state.COMPLETE,
                               self._best[trial] if self.value == "best" else value)
                    break
                if self._storage_call(f"asking the pruner about trial {self._numbers[trial]}",
                                      self._optuna_trial(trial).should_prune):
                    stop.extend(running.tolist())
                    self._tell(trial, state.PRUNED)
                    break
        free = min(self._concurrent - len(self._active), self._trials_target - self._counted,
                   self._affordable(search))
        start = None
        if free > 0:
            first = int(search.member_trial.max()) + 1 if search.n_members else 0
            start = self._ask(search, free, first)
        if not self._active and start is None:
            self._release()  # the study is done, as far as this process goes
        if not stop and start is None:
            return CONTINUE
        return Decision(stop=tuple(stop), start=start)

    # -- Optuna bookkeeping ------------------------------------------------------------------

    def _reset(self) -> None:
        self._numbers: dict[int, int] = {}  # jaxtune trial -> Optuna trial number
        self._trial_ids: dict[int, int] = {}  # jaxtune trial -> Optuna's storage trial id
        self._active: set[int] = set()  # asked, not yet told
        self._reported: dict[int, int] = {}  # jaxtune trial -> last step reported
        self._best: dict[int, float] = {}  # jaxtune trial -> best value reported
        self._replayed: dict[int, str] = {}  # told after the restored checkpoint: its state
        self._counted = 0  # finished or asked trials of the study, toward `trials`
        self._cache: dict[int, Any] = {}  # jaxtune trial -> optuna.Trial

    def _ask(self, search: Search, n: int, first: int) -> Table:
        columns: dict[str, list[Any]] = {name: [] for name in search.space.names}
        for k in range(n):
            # Asked, then each parameter drawn, as `study.ask(distributions)` does, so a
            # retry after a lock repeats one write, not the trial's creation.
            trial = self._storage_call("asking for a trial", self.study.ask)
            for name, distribution in self._distributions.items():
                self._storage_call(f"drawing `{name}` of trial {trial.number}", trial._suggest,
                                   name, distribution)
            self._storage_call(f"labelling trial {trial.number}", trial.set_user_attr,
                               TRIAL_ATTR, first + k)
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
            self._cache[trial] = self._storage_call(
                f"reading trial {self._numbers[trial]}", optuna.trial.Trial, self.study,
                self._trial_ids[trial])
        return self._cache[trial]

    def _tell(self, trial: int, state: Any, value: float | None = None) -> None:
        number = self._numbers[trial]
        self._storage_call(f"telling trial {number} {state.name}", self.study.tell, number,
                           value, state=state)
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
        for frozen in self._trials(states=(optuna.trial.TrialState.RUNNING,)):
            if TRIAL_ATTR in frozen.user_attrs and frozen.number not in keep:
                what = f"marking interrupted trial {frozen.number} FAIL"
                self._storage_call(what, self.study._storage.set_trial_user_attr,
                                   frozen._trial_id, INTERRUPTED_ATTR, True)
                self._storage_call(what, self.study.tell, frozen.number,
                                   state=optuna.trial.TrialState.FAIL)

    # -- the storage: retried while locked, one driving process -----------------------------

    def _trials(self, states: Any = None) -> list[Any]:
        return self._storage_call("reading the study's trials", self.study.get_trials,
                                  deepcopy=False, states=states)

    def _retry_while_locked(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, called again with backoff while the storage is locked."""
        deadline = time.monotonic() + self.storage_timeout
        wait = 0.02
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as error:
                if not _locked(error) or time.monotonic() + wait > deadline:
                    raise
                time.sleep(wait)
                wait = min(2 * wait, 1.0)

    def _storage_call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """A call on the study's storage: retried while locked; its failure named."""
        try:
            return self._retry_while_locked(fn, *args, **kwargs)
        except Exception as error:
            if _locked(error) or isinstance(error,
                                            import_optuna().exceptions.StorageInternalError):
                raise self._storage_error(what, error) from error
            raise

    def _storage_error(self, what: str, error: BaseException) -> RuntimeError:
        storage = self.storage if self.study is None else self.study._storage
        storage = getattr(storage, "_backend", storage)  # Optuna's cache around an RDB
        url = getattr(storage, "url", storage)
        name = repr(url) if isinstance(url, str) else type(url).__name__
        locked = _locked(error)
        if locked:
            return RuntimeError(_MSG_LOCKED.format(storage=name, locked=locked, what=what,
                                                   seconds=self.storage_timeout))
        return RuntimeError(_MSG_STORAGE.format(storage=name, what=what, cause=_cause(error)))

    def _claim(self) -> None:
        """Makes this process the study's driver, unless another live process is."""
        driver = self._storage_call("reading the study", lambda: self.study.user_attrs).get(
            DRIVER_ATTR)
        if driver and driver.get("token") != self._driver["token"] and self._alive(driver):
            raise ValueError(_MSG_DRIVEN.format(
                study=self.study.study_name, pid=driver["pid"], host=driver["host"],
                age=time.time() - driver["time"], timeout=self.driver_timeout))
        self._beat()

    def _alive(self, driver: Mapping[str, Any]) -> bool:
        """Whether the process that `driver` names may still be driving the study."""
        if time.time() - driver["time"] >= self.driver_timeout:
            return False
        if driver["host"] != self._driver["host"]:
            return True  # its pid cannot be looked up from here
        return driver["pid"] != os.getpid() and _pid_alive(driver["pid"])

    def _beat(self) -> None:
        self._storage_call("recording the process driving the study", self.study.set_user_attr,
                           DRIVER_ATTR, {**self._driver, "time": time.time()})
        self._last_beat = time.monotonic()

    def _heartbeat(self) -> None:
        """At a record point: still the driver? Then say so, at most every few seconds."""
        if time.monotonic() - self._last_beat < min(10.0, self.driver_timeout / 4):
            return
        self._claim()

    def _release(self) -> None:
        self._storage_call("releasing the study", self.study.set_user_attr, DRIVER_ATTR, None)

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
            frozen = self._storage_call(f"reading trial {self._numbers[trial]}",
                                        self.study._storage.get_trial, self._trial_ids[trial])
            if frozen.intermediate_values:
                self._reported[trial] = max(self._reported.get(trial, -1),
                                            max(frozen.intermediate_values))
                # The study holds every value reported, also those after the checkpoint.
                self._best[trial] = best_of(frozen.intermediate_values.values(), self._mode)
            if frozen.state.is_finished():
                self._replayed[trial] = frozen.state.name

    def config(self) -> dict[str, Any]:
        """What identifies this search in a checkpoint: the study by name, the budget and
        the ranking (a study, storage, sampler or pruner object is not JSON)."""
        name = self.study.study_name if self._given_study else self.study_name
        return {"study_name": name, "trials": self.trials, "concurrent": self.concurrent,
                "value": self.value, "metric": self.metric, "mode": self.mode}

    def __repr__(self) -> str:
        # Stable across processes (`jt.sweep` compares it on every process).
        return "OptunaSearch(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

