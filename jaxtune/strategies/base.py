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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the runner imports this module; only type names flow back
    from jaxtune.runner import Search
    from jaxtune.space import Table


@dataclasses.dataclass(frozen=True)
class Report:
    """What happened since the previous decision.

    Attributes:
      reached: int [K], members that reached a record point (their new values are
        in `search.curve(...)` at column `search.record_index(member)`).
      completed: int [K'], members that just trained their full budget.
      diverged: int [K''], members that just went non-finite (they are frozen and
        out of the population; a strategy should count them as the worst).
    """

    reached: np.ndarray
    completed: np.ndarray
    diverged: np.ndarray


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


class Strategy:
    """Base class of search strategies: the plain full-budget sweep.

    Subclasses override what they decide; this base trains every configuration of
    the sweep to the full budget and decides nothing.

    Attributes:
      starts_members: whether `decide` may `start` new configurations. With `data`
        an iterable of batches the sweep then keeps every batch it reads, since a
        new member trains from step 0.
    """

    starts_members: bool = False

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
        from jaxtune.results import guess_mode

        mode = guess_mode(metric)
    if mode not in ("min", "max"):
        raise ValueError(f"{owner}: `mode` must be 'min' or 'max', got mode={mode!r}.")
    return metric, mode
