"""jaxtune's space as Optuna's distributions, and an Optuna trial's parameters back.

  ============  ==========================================================
  jaxtune        Optuna
  ============  ==========================================================
  uniform        FloatDistribution(low, high)
  loguniform     FloatDistribution(low, high, log=True)
  randint        IntDistribution(low, high - 1)   (jaxtune's `high` is excluded; static
                 or dynamic alike, so a static width keeps its order)
  choice         CategoricalDistribution(values)  (values Optuna cannot store,
                 e.g. tuples, go in as their repr)
  fixed          not asked
  ============  ==========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jaxtune.integrations.optuna.library import import_optuna
from jaxtune.space import Choice, Fixed, LogUniform, RandInt, Uniform

if TYPE_CHECKING:
    from jaxtune.space import Space

# The values a CategoricalDistribution stores as they are; any other goes in as its repr.
_OPTUNA_TYPES = (type(None), bool, int, float, str)


def _stored(value: Any) -> Any:
    return value if isinstance(value, _OPTUNA_TYPES) else repr(value)


def distributions(space: Space) -> dict[str, Any]:
    """The Optuna distribution of every non-fixed dimension of `space`.

    Example:
      >>> import jaxtune as jt
      >>> from jaxtune.integrations.optuna import distributions
      >>> distributions(jt.Space(n=jt.randint(0, 10), lr=jt.loguniform(1e-4, 1e-1),
      ...                        act=jt.choice(["relu", "tanh"]), width=jt.fixed(64)))["n"]
      IntDistribution(high=9, log=False, low=0, step=1)
    """
    dists = import_optuna().distributions
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
            out[name] = dists.CategoricalDistribution([_stored(v) for v in dim.values])
        else:
            raise TypeError(f"OptunaSearch: dimension `{name}` is a {type(dim).__name__}, "
                            "which has no Optuna distribution; use uniform, loguniform, "
                            "randint, choice or fixed.")
    return out


def suggest(trial: Any, name: str, distribution: Any) -> Any:
    """Draws `name` from `distribution` (one that `distributions` made) for `trial`, through
    `Trial.suggest_*`.

    Example:
      >>> import optuna
      >>> from optuna.distributions import IntDistribution
      >>> from jaxtune.integrations.optuna.distributions import suggest
      >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
      >>> trial = optuna.create_study().ask()
      >>> suggest(trial, "n", IntDistribution(3, 3)), trial.distributions["n"]
      (3, IntDistribution(high=3, log=False, low=3, step=1))
    """
    dists = import_optuna().distributions
    if isinstance(distribution, dists.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high,
                                   step=distribution.step, log=distribution.log)
    if isinstance(distribution, dists.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 step=distribution.step, log=distribution.log)
    return trial.suggest_categorical(name, distribution.choices)  # the third kind made above


def space_values(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """One configuration of `space` from an Optuna trial's `params` (fixed dimensions at
    their value, a choice's repr back to the value it stands for, a randint's value as a
    Python int, as a static randint's shapes need)."""
    values = {}
    for name, dim in space.items():
        if isinstance(dim, Fixed):
            values[name] = dim.value
        elif isinstance(dim, Choice):
            values[name] = next(v for v in dim.values if _stored(v) == params[name])
        elif isinstance(dim, RandInt):
            values[name] = int(params[name])  # e.g. 3.0 from a trials_dataframe column
        else:
            values[name] = params[name]
    return values
