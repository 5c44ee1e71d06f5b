"""The strategy protocol: the decision taken at every record point.

Everything that makes a search adaptive has one shape. The runner trains the
population chunk by chunk; whenever members reach a record point (every
`eval_every` of their own steps) it records their metrics and asks the strategy
what to do next. The strategy answers with a `Decision`, per member:

  * continue (say nothing);
  * stop members: their slots are freed, their curves and status stay in the result;
  * copy another member's state into a member (exploit: parameters, optimizer state,
    model state, step and hyperparameters; the member keeps its own seed, so its own
    minibatch order and keys), and/or give a member new hyperparameter values (explore);
  * start new configurations (each trained with every seed), into freed slots.

Decisions are made on the host from small arrays (the recorded metrics); what they
move (parameters, optimizer states) moves on the devices. A strategy is a plain
Python object whose state is JSON-able (`state_dict` / `load_state_dict`), so a
checkpointed sweep resumes with the strategy exactly where it was.

Writing one: subclass `Strategy`, override `decide` (and `initial` to choose the
first configurations, `setup` to check arguments against the sweep before
anything compiles, `members_in_flight` if it needs the whole population training
at once). `MedianStopping` in `median.py` is the worked example. A strategy
whose decisions `start` configurations sets `starts_members = True`.

A strategy reads the sweep through `Search`, a read-only view of its settings, its
members and its records (with `scores`, a metric's curve oriented so that lower is
better). It is identified in a checkpoint by its class and `config()`, the arguments it
was built with: read back from same-named attributes unless it declares its own.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxtune.results import MODES, guess_mode

if TYPE_CHECKING:  # the runner imports this module; only type names flow back
    from jaxtune.runner.configs import ConfigSource
    from jaxtune.runner.members import MemberTable
    from jaxtune.runner.recorder import Recorder
    from jaxtune.space import Space, Table


@dataclasses.dataclass(frozen=True)
class Report:
    """What happened since the previous decision.

    Attributes:
      reached: int [K], members that reached a record point (their new values are
        in `search.curve(...)` at column `search.record_index(member)`).
      completed: int [K'], members that just trained their full budget.
      diverged: int [K''], members that just went non-finite (they are frozen and
        out of the population; a strategy should count them as the worst).
      hypergradients: name -> float [N], per member id: the derivative of the eval
        metric at the end of the chunk just trained with respect to each hyperparameter
        (in its own scale), taken through the chunk's steps; NaN for members that did
        not train. Filled only for a strategy whose `hypergradients` asks for them.
    """

    reached: np.ndarray
    completed: np.ndarray
    diverged: np.ndarray
    hypergradients: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the population does next. The empty decision continues everything.

    The runner checks the whole decision before applying any of it (a refused one
    changes nothing), then applies it in this order: `stop`, `copy`, `hparams`,
    `start`. `copy` and `hparams` may name only members still running after the
    stops: naming a member that the same decision stops is an error, as is a member
    that is both copied into and copied from.

    Attributes:
      stop: members to stop now (running or still waiting to start).
      copy: target member -> source member: the target takes the source's
        parameters, optimizer state, model state, step and hyperparameters (both must
        be running, in the same static group). It keeps its own seed, so from the
        copied step on it trains on its own minibatch order and keys, as in PBT
        (Jaderberg et al. 2017), and `SweepResult.seed` stays its own.
      hparams: member -> {name: value}: new values of dynamic hyperparameters. Each
        is a number of its dimension's type (a whole number for an integer one,
        positive on a log scale); it may lie outside the dimension's bounds (a decay
        may take a learning rate below them).
      start: new configurations (a `Table` of the sweep's space, e.g. from
        `search.ask(n)`), each started with every seed once slots are free.
    """

    stop: Sequence[int] = ()
    copy: Mapping[int, int] = dataclasses.field(default_factory=dict)
    hparams: Mapping[int, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    start: Table | None = None


CONTINUE = Decision()


@dataclasses.dataclass(frozen=True)
class Settings:
    """A sweep's settings, as a strategy sees them (fixed for the sweep's life)."""

    space: Space  # the space searched
    configurations: Table  # the configurations sampled (or given) before the search
    seeds: int  # members per configuration
    steps: int  # the budget: optimizer steps per member
    eval_every: int  # steps between record points
    metric: str  # the metric ranking configurations
    mode: str  # "min" or "max"
    devices: int  # devices the members are sharded over


class Search:
    """What a strategy sees: the sweep's settings and everything recorded so far.

    A read-only view over the sweep's settings, its member table and its records:
    every array it returns is a copy or read-only, and `ask` is the one call that
    draws anything. Per-member arrays are indexed by member id (the member's row in
    the result), which never changes; members are added (by `Decision.start`) but
    never removed. Curves have one column per record point (`record_steps`).
    """

    def __init__(self, settings: Settings, members: MemberTable, recorder: Recorder,
                 configs: ConfigSource):
        """Built by `jt.sweep` before the runner, over the runner's own member table,
        records and sampler: what they hold now is what the view shows."""
        self._settings = settings
        self._members = members
        self._recorder = recorder
        self._configs = configs

    # -- the sweep's settings

    @property
    def space(self) -> Space:
        """The `Space` searched."""
        return self._settings.space

    @property
    def seeds(self) -> int:
        """Seeds per configuration: every configuration runs as this many members."""
        return self._settings.seeds

    @property
    def steps(self) -> int:
        """The full budget: optimizer steps per member."""
        return self._settings.steps

    @property
    def eval_every(self) -> int:
        """Steps between a member's record points (the budget's end is one too)."""
        return self._settings.eval_every

    @property
    def record_steps(self) -> np.ndarray:
        """int [C]: the step count of every record point."""
        return self._recorder.record_steps.copy()

    @property
    def metric(self) -> str:
        """The sweep's `metric`, which ranks configurations in the result."""
        return self._settings.metric

    @property
    def mode(self) -> str:
        """"min" or "max": whether a lower or a higher `metric` is better."""
        return self._settings.mode

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every metric recorded: "train_loss", `eval_fn`'s, then `loss_fn`'s aux metrics."""
        return self._recorder.metric_names

    @property
    def configurations(self) -> Table:
        """The configurations the sweep sampled (or was given), before any strategy ran."""
        return self._settings.configurations

    @property
    def devices(self) -> int:
        """The number of devices the members are sharded over."""
        return self._settings.devices

    def ask(self, n: int) -> Table:
        """The next `n` configurations of the sweep's sampler (resumable, deterministic).

        Raises ValueError when the sweep has no sampler (explicit `configs`, a grid).
        """
        return self._configs.ask(n)

    # -- the members

    @property
    def n_members(self) -> int:
        """Members so far (configurations started x seeds)."""
        return self._members.size

    @property
    def member_trial(self) -> np.ndarray:
        """int [N]: the configuration (trial id) each member trains."""
        return self._members.trial.copy()

    @property
    def member_seed(self) -> np.ndarray:
        """int [N]: each member's seed, 0 .. seeds-1."""
        return self._members.seed.copy()

    @property
    def status(self) -> np.ndarray:
        """str [N], read-only: "waiting", "running", "completed", "stopped" or "diverged".

        Built once each time a status changes, so reading it in a loop costs nothing.
        """
        return self._members.status_names()

    @property
    def step(self) -> np.ndarray:
        """int [N]: steps each member has trained so far."""
        return self._members.step.copy()

    @property
    def hparams(self) -> dict[str, np.ndarray]:
        """Each member's current dynamic hyperparameters, name -> [N]."""
        return {k: v.copy() for k, v in self._members.hparams.items()}

    def trial_members(self, trial: int) -> np.ndarray:
        """The members (one per seed) of configuration `trial`."""
        return np.flatnonzero(self._members.trial == trial)

    # -- the records

    def curve(self, metric: str | None = None) -> np.ndarray:
        """float [N, C]: `metric` (default: the sweep's) at every record point, NaN where
        not recorded. Raises ValueError naming the recorded metrics for another name."""
        return self._recorder.curve(metric or self.metric).copy()

    def scores(self, metric: str | None = None, mode: str | None = None) -> np.ndarray:
        """float [N, C]: `metric` at every record point, oriented so that lower is better.

        The curve itself for `mode` "min", its negation for "max"; NaN where not
        recorded. The defaults are the sweep's metric and mode; a metric without a mode
        takes the sweep's mode if it is the sweep's metric, else one judged from its name.
        """
        metric, mode = resolve_metric(self, metric, mode, "Search.scores")
        curve = self.curve(metric)
        return -curve if mode == "max" else curve

    def record_index(self, members: Any) -> np.ndarray:
        """The column of each member's latest record point (-1 if none yet)."""
        return self._recorder.latest[np.asarray(members, int)]

    def trial_scores(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-configuration means over seeds of a per-member `values` [N].

        Returns `(scores, trials)`: the mean per trial (NaN if any seed is NaN) and
        the trial ids, sorted.
        """
        trials, inverse = np.unique(self._members.trial, return_inverse=True)
        sums = np.zeros(trials.size)
        np.add.at(sums, inverse, np.asarray(values).astype(np.float64))
        return sums / np.bincount(inverse, minlength=trials.size), trials


def best_of(values: Iterable[float], mode: str) -> float:
    """The best of `values` in `mode`: the smallest for "min", the largest for "max"."""
    return min(values) if mode == "min" else max(values)


_MSG_UNDECLARED_CONFIG = """\
{name}'s constructor arguments cannot be read back ({reasons}), so a checkpoint could \
not tell this strategy from one built with other arguments. Define `config()` returning \
the arguments it was built with, e.g.

    def config(self):
        return {example}
"""


class Strategy:
    """Base class of search strategies: the plain full-budget sweep.

    Subclasses override what they decide; this base trains every configuration of
    the sweep to the full budget and decides nothing.

    Attributes:
      starts_members: whether `decide` may `start` new configurations. With `data`
        an iterable of batches the sweep then keeps every batch it reads, since a
        new member trains from step 0.
      hypergradients: None (off), or the keyword arguments of `Trainer.
        train_with_hypergradients` (`names`, `metric`, `scale`, `mode`, `window`): the
        runner then trains every chunk with them and hands them to `decide` in
        `Report.hypergradients` (`jt.HyperGradient` sets it in `setup`).
    """

    starts_members: bool = False
    hypergradients: Mapping[str, Any] | None = None

    def setup(self, search: Search) -> None:
        """Checks the strategy's arguments against the sweep; runs before any compile."""

    def members_in_flight(self, search: Search) -> int | None:
        """Members that must train at the same time (e.g. a whole PBT population), or None."""
        return None

    def initial(self, search: Search) -> Table:
        """The configurations to start with (default: the ones the sweep sampled)."""
        return search.configurations

    def decide(self, search: Search, report: Report) -> Decision:
        """The decision at a record point (default: continue).

        An exception raised here (or a decision the runner refuses) reaches the caller
        of `sweep` as itself, with the partial `SweepResult` as its `.result`.
        """
        return CONTINUE

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state as JSON-able values, for checkpoints."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what `state_dict` returned."""

    def config(self) -> dict[str, Any]:
        """The arguments this strategy was built with, by name: its identity.

        A checkpoint is resumed only by a strategy of the same class and the same
        `config()` (as JSON). The default reads back every parameter of
        `type(self).__init__` from the attribute of the same name; a strategy whose
        constructor takes `*args`/`**kwargs`, or stores an argument under another name,
        overrides this method (the sweep refuses to checkpoint it otherwise).

        Raises:
          TypeError: naming the arguments that cannot be read back, and the fix.
        """
        init = type(self).__init__
        if init is object.__init__:
            return {}
        named: list[str] = []  # the parameters passed by name
        reasons: list[str] = []  # why an argument cannot be read back, in signature order
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                stars = "*" if p.kind == p.VAR_POSITIONAL else "**"
                reasons.append(f"`{stars}{p.name}` takes any arguments")
                continue
            named.append(p.name)
            if not hasattr(self, p.name):
                reasons.append(f"no attribute `{p.name}`")
        if reasons:
            raise TypeError(_MSG_UNDECLARED_CONFIG.format(
                name=type(self).__qualname__, reasons="; ".join(reasons),
                example="{" + ", ".join(f"{n!r}: self.{n}" for n in named) + "}"))
        return {name: getattr(self, name) for name in named}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def resolve_metric(search: Search, metric: str | None, mode: str | None, owner: str
                   ) -> tuple[str, str]:
    """A strategy's (metric, mode): its own if given, else the sweep's; checked to exist."""
    metric = search.metric if metric is None else metric
    if metric not in search.metric_names:
        raise ValueError(
            f"{owner}: `metric`={metric!r} is not recorded by this sweep; recorded metrics: "
            f"{', '.join(map(repr, search.metric_names))}."
        )
    if mode is None:
        mode = search.mode if metric == search.metric else None
    if mode is None:
        mode = guess_mode(metric)
    if mode not in MODES:
        raise ValueError(f"{owner}: `mode` must be {' or '.join(map(repr, MODES))}, got "
                         f"mode={mode!r}.")
    return metric, mode
