"""The ask/tell bookkeeping: which Optuna trial each jaxtune trial is, which are running,
what each has reported, and how many of the study's trials count toward `trials`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from jaxtune.integrations.optuna.distributions import distributions, space_values, suggest
from jaxtune.integrations.optuna.library import import_optuna
from jaxtune.strategies.base import best_of

if TYPE_CHECKING:
    from jaxtune.integrations.optuna.storage import StudyStorage
    from jaxtune.space import Space, Table

#: The user attribute linking an Optuna trial to its jaxtune trial id.
TRIAL_ATTR = "jaxtune_trial"
#: The user attribute of a trial that was running when its process died.
INTERRUPTED_ATTR = "jaxtune_interrupted"


class TrialBook:
    """The study's trials as this run asked them, and what it has told the study.

    Args:
      storage: the study's storage.
      space: the sweep's space, asked from its Optuna distributions.
      mode: "min" or "max": which value reported is a trial's best.

    Attributes:
      numbers: jaxtune trial id -> Optuna trial number, for every trial this run asked.
      active: the jaxtune trials asked and not yet told.
      reported: jaxtune trial -> the last step it reported.
      best: jaxtune trial -> the best value it reported.
      replayed: jaxtune trial -> its state, for the trials told after the checkpoint this
        run resumed from (they are not told again).
      counted: the study's finished (or asked) trials that count toward `trials`.
    """

    def __init__(self, storage: StudyStorage, space: Space, mode: str):
        self.storage = storage
        self.space = space
        self.mode = mode
        self.distributions = distributions(space)
        self.numbers: dict[int, int] = {}
        self.active: set[int] = set()
        self.reported: dict[int, int] = {}
        self.best: dict[int, float] = {}
        self.replayed: dict[int, str] = {}
        self.counted = 0
        self._trials: dict[int, Any] = {}  # jaxtune trial -> optuna.trial.Trial

    def check_distributions(self) -> None:
        """Refuses a study whose trials drew a parameter from another distribution."""
        for frozen in self.storage.trials():
            for name, theirs in frozen.distributions.items():
                ours = self.distributions.get(name)
                if ours is not None and ours != theirs:
                    raise ValueError(
                        f"OptunaSearch: the study's trial {frozen.number} drew `{name}` from "
                        f"{theirs}, but the space gives {ours}; use a new `study_name` for "
                        "this space, or the space the study was created with."
                    )

    def start(self) -> int:
        """Fails the study's interrupted trials; counts those that count toward `trials`."""
        self.recover_interrupted(keep=())
        self.counted = sum(self._counts(frozen) for frozen in self.storage.trials())
        return self.counted

    def ask(self, n: int, first: int) -> Table:
        """Asks the study for `n` trials, jaxtune trials `first`, `first + 1`, ..."""
        call = self.storage.call
        rows = []
        for trial in range(first, first + n):
            # Asked, then each parameter drawn, as `study.ask(distributions)` does, so a
            # retry after a lock repeats one write, not the trial's creation.
            asked = call("asking for a trial", self.storage.study.ask)
            for name, distribution in self.distributions.items():
                call(f"drawing `{name}` of trial {asked.number}", suggest, asked, name,
                     distribution)
            call(f"labelling trial {asked.number}", asked.set_user_attr, TRIAL_ATTR, trial)
            self.numbers[trial] = asked.number
            self._trials[trial] = asked
            self.active.add(trial)
            rows.append(space_values(self.space, asked.params))
        self.counted += n
        return self.space.table({name: [row[name] for row in rows]
                                 for name in self.space.names})

    def report(self, trial: int, value: float, step: int) -> None:
        """Reports `trial`'s value at `step` to the study."""
        self.storage.call(f"reporting trial {self.numbers[trial]}'s value at step {step}",
                          self._trial(trial).report, value, step)
        self.reported[trial] = step
        self.best[trial] = best_of((self.best.get(trial, value), value), self.mode)

    def should_prune(self, trial: int) -> bool:
        """Whether the study's pruner stops `trial` at the step it last reported."""
        return self.storage.call(f"asking the pruner about trial {self.numbers[trial]}",
                                 self._trial(trial).should_prune)

    def tell(self, trial: int, state: Any, value: float | None = None) -> None:
        """Tells the study `trial` finished in `state` (with `value` when COMPLETE)."""
        number = self.numbers[trial]
        self.storage.call(f"telling trial {number} {state.name}", self.storage.study.tell,
                          number, value, state=state)
        self.drop(trial)

    def drop(self, trial: int) -> None:
        """Stops following `trial` without telling the study (it was told already)."""
        self.active.discard(trial)
        self._trials.pop(trial, None)

    def _trial(self, trial: int) -> Any:
        if trial not in self._trials:  # restored from a checkpoint
            self._trials[trial] = self.storage.trial(self.numbers[trial])
        return self._trials[trial]

    def _counts(self, frozen: Any) -> bool:
        """Whether a trial of the study counts toward `trials`: finished, not interrupted."""
        state = import_optuna().trial.TrialState
        if frozen.state == state.FAIL:
            return not frozen.user_attrs.get(INTERRUPTED_ATTR, False)
        return frozen.state in (state.COMPLETE, state.PRUNED)

    def recover_interrupted(self, keep: Iterable[int]) -> None:
        """Marks FAIL the study's running jaxtune trials whose numbers are not in `keep`."""
        state = import_optuna().trial.TrialState
        keep = set(keep)
        for frozen in self.storage.trials(states=(state.RUNNING,)):
            if TRIAL_ATTR in frozen.user_attrs and frozen.number not in keep:
                self.storage.set_trial_user_attr(frozen.number, INTERRUPTED_ATTR, True)
                self.storage.call(f"marking interrupted trial {frozen.number} FAIL",
                                  self.storage.study.tell, frozen.number, state=state.FAIL)

    def state_dict(self) -> dict[str, Any]:
        """The bookkeeping as JSON-able values: each trial with its number and storage id."""
        return {
            "trials": [[t, n, self.storage.trial_id(n)] for t, n in sorted(self.numbers.items())],
            "active": sorted(self.active),
            "reported": [[t, s] for t, s in sorted(self.reported.items())],
            "counted": self.counted,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a checkpoint's state and reconciles it with the study.

        The study may have moved on after the checkpoint (trials told or asked before
        the process died): trials asked after it are marked FAIL (interrupted), and
        trials told after it are not told again.
        """
        for trial, number, trial_id in state["trials"]:
            self.numbers[int(trial)] = int(number)
            self.storage.known_trial_id(int(number), int(trial_id))
        self.active = {int(t) for t in state["active"]}
        self.reported = {int(t): int(s) for t, s in state["reported"]}
        self.counted = int(state["counted"])
        self.recover_interrupted(keep=[self.numbers[t] for t in self.active])
        for trial in self.active:
            frozen = self.storage.frozen(self.numbers[trial])
            if frozen.intermediate_values:
                self.reported[trial] = max(self.reported.get(trial, -1),
                                           max(frozen.intermediate_values))
                # The study holds every value reported, also those after the checkpoint.
                self.best[trial] = best_of(frozen.intermediate_values.values(), self.mode)
            if frozen.state.is_finished():
                self.replayed[trial] = frozen.state.name
