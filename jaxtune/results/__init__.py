"""What a sweep returns: curves, final metrics, the best configuration, export, plots.

* `result`: `SweepResult` and `BestConfig`, the ranking rules (`trial_stats`,
  `final_values`) and the export to pandas;
* `columns`: the names a result uses, defined once (`STATUSES`, `MODES`,
  `RESERVED_COLUMNS`), and `validated`, the one check of a result's fields;
* `plotting`: `SweepResult.plot` and `plot_schedule` (matplotlib, imported when drawing);
* `io`: `SweepResult.save` and `load`, one ``.npz`` file without pickle.
"""

from jaxtune.results.columns import MODES as MODES
from jaxtune.results.columns import RESERVED_COLUMNS as RESERVED_COLUMNS
from jaxtune.results.columns import STATUSES as STATUSES
from jaxtune.results.columns import check_mode as check_mode
from jaxtune.results.columns import check_names as check_names
from jaxtune.results.columns import guess_mode as guess_mode
from jaxtune.results.result import BestConfig as BestConfig
from jaxtune.results.result import SweepResult as SweepResult
from jaxtune.results.result import final_values as final_values
from jaxtune.results.result import trial_stats as trial_stats

__all__ = [
    "BestConfig", "SweepResult", "final_values", "trial_stats",
    "STATUSES", "MODES", "RESERVED_COLUMNS", "check_mode", "check_names", "guess_mode",
]
