"""Optuna's samplers and pruners over a compiled population: batched ask/tell.

Optuna evaluates one trial per Python call (or per process); `OptunaSearch` asks
the study for a *batch* of trials, trains them as one vmapped population, and
tells each result when its members finish. At every record point each trial
reports the mean of its metric over its seeds (`trial.report(value, step)`) and
is stopped, all seeds together, when `trial.should_prune()` says so; the freed
slots take the next asked trials. With a fixed `concurrent`, the whole study
trains in one compiled program per static group, whatever the sampler proposes.

`search.py` holds `OptunaSearch`; `trials.py` the ask/tell bookkeeping;
`distributions.py` the space as Optuna's distributions (its table says how each
dimension maps); `storage.py` the storage calls, retried while locked; `driver.py`
the record of the one process driving a study; `library.py` the lazy import and the
two private Optuna names still read, with the versions they were checked against.

Optuna is optional: `pip install 'jaxtune[optuna]'`. These modules import it only
when an `OptunaSearch` is created.
"""

from jaxtune.integrations.optuna.distributions import distributions as distributions
from jaxtune.integrations.optuna.driver import DRIVER_ATTR as DRIVER_ATTR
from jaxtune.integrations.optuna.library import import_optuna as import_optuna
from jaxtune.integrations.optuna.search import OptunaSearch as OptunaSearch
from jaxtune.integrations.optuna.trials import INTERRUPTED_ATTR as INTERRUPTED_ATTR
from jaxtune.integrations.optuna.trials import TRIAL_ATTR as TRIAL_ATTR
