"""Search spaces, samplers and the hyperparameter table.

A `Space` names the hyperparameters of a sweep and, for each, the set it is drawn
from: a *dimension* (`uniform`, `loguniform`, `randint`, `choice`, `fixed`).
`Space.sample` draws configurations with a sampler (random, grid, Sobol, Halton)
and `Space.table` takes configurations you list yourself; both return a `Table`,
one row per configuration. Adaptive searches that need configurations over time
ask a `ConfigStream` (`Space.stream`) for them in batches; it gives the same
configurations as `Space.sample`, and can be checkpointed and resumed. A table holds
at most `MAX_CONFIGURATIONS` rows.

Every dimension is *dynamic* or *static*:

- dynamic: a number that goes into the compiled program as data (a float32 or
  int32 array with one entry per configuration). Changing it never recompiles,
  so configurations that differ only in dynamic values train together.
- static: a Python value that shapes the program itself (an activation name, a
  layer width, a batch size). Configurations with different static values need
  different compiled programs; `Table.static_groups` splits a table into them.

By default numeric values (int or float, not bool) are dynamic and everything
else is static; `choice(..., static=True)` and `fixed(..., static=True)` make a
number static (a width or a batch size changes shapes, so it must be).

Dynamic values are stored in float32 (continuous dimensions and float choices)
or int32 (integer dimensions), and bounds are judged in that precision. A `Family`
(named alternatives: the optimizer families of `jaxtune.families.optimizer_choice`) is
dynamic too, stored as int32 indices and shown by name.

Example:

  >>> import jaxtune as jt
  >>> space = jt.Space(
  ...     learning_rate=jt.loguniform(1e-4, 1e-1),
  ...     warmup_steps=jt.randint(0, 500),
  ...     activation=jt.choice(["relu", "tanh"]),
  ... )
  >>> table = space.sample(8, seed=0)
  >>> len(table), table.static_names, table.dynamic_names
  (8, ('activation',), ('learning_rate', 'warmup_steps'))
  >>> table.columns["learning_rate"].dtype
  dtype('float32')
"""

# The package's files, by what they hold: values.py (plain values, the size limit),
# dimensions.py (the dimensions and their constructors), table.py (`Table`), samplers.py
# (one class per sampler; the names are aliases), stream.py (`ConfigStream`), space.py
# (`Space`). Everything importable from `jaxtune.space` is re-exported here.

from .dimensions import Choice as Choice
from .dimensions import Dimension as Dimension
from .dimensions import Family as Family
from .dimensions import Fixed as Fixed
from .dimensions import LogUniform as LogUniform
from .dimensions import RandInt as RandInt
from .dimensions import Uniform as Uniform
from .dimensions import choice as choice
from .dimensions import fixed as fixed
from .dimensions import loguniform as loguniform
from .dimensions import randint as randint
from .dimensions import uniform as uniform
from .samplers import SAMPLERS as SAMPLERS
from .space import Space as Space
from .stream import ConfigStream as ConfigStream
from .table import Table as Table
from .values import MAX_CONFIGURATIONS as MAX_CONFIGURATIONS

__all__ = [
    "MAX_CONFIGURATIONS",
    "SAMPLERS",
    "Choice",
    "ConfigStream",
    "Dimension",
    "Family",
    "Fixed",
    "LogUniform",
    "RandInt",
    "Space",
    "Table",
    "Uniform",
    "choice",
    "fixed",
    "loguniform",
    "randint",
    "uniform",
]
