"""Optuna itself: imported when first needed, and the two private names jaxtune still reads.

Everything else goes through Optuna's public API: `Study.ask`/`tell`, `Trial.suggest_*`,
`report`, `should_prune`, and the storage's `BaseStorage` methods, a trial reached by its
number (`get_trial_id_from_study_id_trial_number`, the study's id from
`get_study_id_from_name`). Two things have no public way:

- the storage a `Study` writes to (`Study._storage`): a study given by the user is all
  jaxtune has, and a storage built from the same URL would not do: Optuna wraps an
  `RDBStorage` in a cache (`_CachedStorage`) that a second object would bypass;
- the URL behind that cache (`_CachedStorage._backend`), only to name the storage in an
  error message.

Each is read by one function here, checked against Optuna 4.0.0, 4.9.0 and 5.1.0
(`pyproject.toml` pins `optuna>=4,<6`); `tests/test_optuna.py` fails, naming the missing
attribute, if an Optuna release drops one.
"""

from __future__ import annotations

from typing import Any

#: The Optuna releases the private names below were checked against.
CHECKED_VERSIONS = ("4.0.0", "4.9.0", "5.1.0")


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


def study_storage(study: Any) -> Any:
    """The storage `study` writes to, as Optuna wrapped it (private `Study._storage`,
    set in `Study.__init__` in Optuna 4.0.0 to 5.1.0)."""
    return study._storage


def storage_backend(storage: Any) -> Any:
    """The storage behind Optuna's cache around an `RDBStorage` (private
    `_CachedStorage._backend`, Optuna 4.0.0 to 5.1.0), or `storage` itself."""
    return getattr(storage, "_backend", storage)
