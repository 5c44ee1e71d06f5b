"""The study's storage: every call retried while another connection holds its lock, every
failure named, and a trial reached by its number through the storage's public API.

A storage that another connection has locked (SQLite: a second writer) is retried with
backoff, 0.02 s then twice as long each time (at most 1 s), for `timeout` seconds, then
named in the error; any other storage failure is named at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jaxtune.integrations.optuna.library import import_optuna, storage_backend, study_storage

# What a storage says when another connection holds the lock it needs (SQLite, MySQL,
# PostgreSQL); anything else from a storage is an error at once.
_LOCKED = ("database is locked", "database table is locked", "lock wait timeout",
           "could not obtain lock", "deadlock")

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
_MSG_OPEN = (
    "OptunaSearch: could not open the study in `storage`={storage!r} ({cause}); give a URL "
    "Optuna can open, e.g. storage='sqlite:///study.db' (its directory must exist)."
)


def locked(error: BaseException | None) -> str | None:
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


def retry_while_locked(timeout: float, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, called again with backoff while the storage is locked."""
    deadline = time.monotonic() + timeout
    wait = 0.02
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            if not locked(error) or time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(2 * wait, 1.0)


def storage_error(storage: Any, what: str, error: BaseException, timeout: float) -> RuntimeError:
    """The error naming `storage` (a URL or a storage) and what failed while `what`."""
    url = getattr(storage_backend(storage), "url", storage)
    name = repr(url) if isinstance(url, str) else type(url).__name__
    phrase = locked(error)
    if phrase:
        return RuntimeError(_MSG_LOCKED.format(storage=name, locked=phrase, what=what,
                                               seconds=timeout))
    return RuntimeError(_MSG_STORAGE.format(storage=name, what=what, cause=_cause(error)))


def open_study(storage: Any, timeout: float, **create: Any) -> Any:
    """`optuna.create_study(storage=storage, load_if_exists=True, **create)`, retried while
    locked; a storage that cannot be opened is named with the fix."""
    optuna = import_optuna()
    try:
        return retry_while_locked(timeout, optuna.create_study, storage=storage,
                                  load_if_exists=True, **create)
    except Exception as error:  # storages raise many kinds of errors
        if locked(error):
            raise storage_error(storage, "opening the study", error, timeout) from error
        raise ValueError(_MSG_OPEN.format(storage=storage,
                                          cause=f"{type(error).__name__}: {error}")) from error


class StudyStorage:
    """The storage of `study`: calls retried while locked, failures named (`call`), and the
    study's trials by number.

    Args:
      study: the `optuna.Study`.
      timeout: seconds to keep retrying a call that finds the storage locked.
    """

    def __init__(self, study: Any, timeout: float):
        self.study = study
        self.timeout = timeout
        self._storage = study_storage(study)
        self._study_id: int | None = None
        self._trial_ids: dict[int, int] = {}  # trial number -> the storage's id, which stays

    def call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, a call on the study's storage that `what` describes."""
        try:
            return retry_while_locked(self.timeout, fn, *args, **kwargs)
        except Exception as error:
            if locked(error) or isinstance(error,
                                           import_optuna().exceptions.StorageInternalError):
                raise storage_error(self._storage, what, error, self.timeout) from error
            raise

    def trials(self, states: Any = None) -> list[Any]:
        """The study's trials (`FrozenTrial`s, not copied), those in `states` if given."""
        return self.call("reading the study's trials", self.study.get_trials, deepcopy=False,
                         states=states)

    def trial_id(self, number: int) -> int:
        """The storage's id of the study's trial `number` (read once)."""
        if number not in self._trial_ids:
            if self._study_id is None:
                self._study_id = self.call("reading the study",
                                           self._storage.get_study_id_from_name,
                                           self.study.study_name)
            self._trial_ids[number] = self.call(
                f"reading trial {number}", self._storage.get_trial_id_from_study_id_trial_number,
                self._study_id, number)
        return self._trial_ids[number]

    def known_trial_id(self, number: int, trial_id: int) -> None:
        """Records the storage's id of trial `number`, read before (from a checkpoint)."""
        self._trial_ids[number] = trial_id

    def frozen(self, number: int) -> Any:
        """The study's trial `number` as the storage holds it now (a `FrozenTrial`)."""
        return self.call(f"reading trial {number}", self._storage.get_trial,
                         self.trial_id(number))

    def trial(self, number: int) -> Any:
        """The study's trial `number` as an `optuna.trial.Trial`, to report to and prune."""
        return self.call(f"reading trial {number}", import_optuna().trial.Trial, self.study,
                         self.trial_id(number))

    def set_trial_user_attr(self, number: int, key: str, value: Any) -> None:
        """Sets a user attribute of the study's trial `number`, which must be running."""
        self.call(f"labelling trial {number}", self._storage.set_trial_user_attr,
                  self.trial_id(number), key, value)
