"""`OptunaSearch`: the strategy that asks an Optuna study for trials and tells it results.

It decides what to ask, report and tell; `trials.py` keeps the bookkeeping, `storage.py`
the retried storage calls, `driver.py` the study's driving process, `distributions.py`
the space as Optuna's distributions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxtune._checks import check_nonnegative, one_of, positive_int
from jaxtune.integrations.optuna.driver import Driver
from jaxtune.integrations.optuna.library import import_optuna
from jaxtune.integrations.optuna.storage import StudyStorage, open_study
from jaxtune.integrations.optuna.trials import TrialBook
from jaxtune.strategies.base import CONTINUE, Decision, Report, Strategy, resolve_metric

if TYPE_CHECKING:
    from jaxtune.space import Table
    from jaxtune.strategies.base import Search


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
        self.study = study
        self._given_study = study is not None
        self._driver = Driver(self.driver_timeout)
        # Built by `setup`, once the study is open.
        self._storage: StudyStorage | None = None
        self._book: TrialBook | None = None

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
        if self.study is None:
            self.study = self._create_study()
        self._storage = StudyStorage(self.study, self.storage_timeout)
        self._book = TrialBook(self._storage, search.space, self._mode)
        self._check_direction()
        self._book.check_distributions()
        self._driver.claim(self._storage)
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
        return open_study(self.storage, self.storage_timeout, study_name=self.study_name,
                          sampler=sampler, pruner=self.pruner,
                          direction="maximize" if self._mode == "max" else "minimize")

    def _check_direction(self) -> None:
        optuna = import_optuna()
        directions = self._storage.call("reading the study", lambda: self.study.directions)
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

    def members_in_flight(self, search: Search) -> int | None:
        return self._concurrent * search.seeds

    # -- the search ------------------------------------------------------------------------

    def initial(self, search: Search) -> Table:
        book = self._book
        remaining = self._trials_target - book.start()
        if remaining <= 0:
            self._driver.release(self._storage)
            raise ValueError(
                f"OptunaSearch: the study {self.study.study_name!r} already holds "
                f"{book.counted} finished trials, `trials`={self._trials_target}; raise "
                "`trials` to continue it, or use a new `study_name`."
            )
        n = min(self._concurrent, remaining, self._affordable(search))
        if n <= 0:
            self._driver.release(self._storage)
            raise ValueError(
                f"OptunaSearch: `max_member_steps`={self.max_member_steps} is less than one "
                f"trial ({search.steps} steps x {search.seeds} seeds); raise it.")
        return book.ask(n, first=0)

    def _affordable(self, search: Search) -> int:
        """How many more trials fit in `max_member_steps`."""
        if self.max_member_steps is None:
            return self._trials_target
        step = search.step
        live = np.isin(search.status, ("running", "waiting"))
        committed = int(step.sum()) + int((search.steps - step[live]).sum())
        return (self.max_member_steps - committed) // (search.steps * search.seeds)

    def decide(self, search: Search, report: Report) -> Decision:
        self._driver.heartbeat(self._storage)
        book = self._book
        curve = search.curve(self._metric)
        stop: list[int] = []
        for trial in sorted(book.active):
            stop.extend(self._follow(search, curve, trial))
        free = min(self._concurrent - len(book.active), self._trials_target - book.counted,
                   self._affordable(search))
        start = None
        if free > 0:
            first = int(search.member_trial.max()) + 1 if search.n_members else 0
            start = book.ask(free, first)
        if not book.active and start is None:
            self._driver.release(self._storage)  # the study is done, as far as this process goes
        if not stop and start is None:
            return CONTINUE
        return Decision(stop=tuple(stop), start=start)

    def _follow(self, search: Search, curve: np.ndarray, trial: int) -> list[int]:
        """Reports `trial`'s new record points and tells it when it ends; the members of
        it to stop."""
        state = import_optuna().trial.TrialState
        book = self._book
        status = search.status
        members = search.trial_members(trial)
        running = members[np.isin(status[members], ("running", "waiting"))].tolist()
        replayed = book.replayed.get(trial)
        if replayed is not None:  # told after the checkpoint this run resumed from
            if replayed != "COMPLETE" or np.all(status[members] != "running"):
                book.drop(trial)
                return running
            return []
        if np.any(status[members] == "diverged"):
            book.tell(trial, state.FAIL)
            return running
        latest = int(np.min(search.record_index(members)))
        record_steps = search.record_steps
        for column in np.flatnonzero(record_steps > book.reported.get(trial, -1)):
            if column > latest:
                break
            value = float(np.mean(curve[members, column].astype(np.float64)))
            step = int(record_steps[column])
            if not math.isfinite(value):
                book.tell(trial, state.FAIL)
                return running
            book.report(trial, value, step)
            if step >= search.steps:
                book.tell(trial, state.COMPLETE,
                          book.best[trial] if self.value == "best" else value)
                return []
            if book.should_prune(trial):
                book.tell(trial, state.PRUNED)
                return running
        return []

    # -- results and checkpoints -------------------------------------------------------------

    @property
    def trial_numbers(self) -> dict[int, int]:
        """jaxtune trial id -> Optuna trial number, for every trial this run asked."""
        return {} if self._book is None else dict(self._book.numbers)

    def member_numbers(self, result: Any) -> np.ndarray:
        """The Optuna trial number of every member of `result` (int [N])."""
        numbers = self.trial_numbers
        return np.asarray([numbers[int(t)] for t in result.trial], np.int64)

    def state_dict(self) -> dict[str, Any]:
        return self._book.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a checkpoint's state and reconciles it with the study (`TrialBook`)."""
        self._book.load_state_dict(state)

    def config(self) -> dict[str, Any]:
        """What identifies this search in a checkpoint: the study by name, the budget and
        the ranking (a study, storage, sampler or pruner object is not JSON)."""
        name = self.study.study_name if self._given_study else self.study_name
        return {"study_name": name, "trials": self.trials, "concurrent": self.concurrent,
                "value": self.value, "metric": self.metric, "mode": self.mode}

    def __repr__(self) -> str:
        # Stable across processes (`jt.sweep` compares it on every process).
        return "OptunaSearch(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"
