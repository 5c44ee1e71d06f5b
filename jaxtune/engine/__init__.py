"""The engine: the layer below `sweep`, a population trained in one compiled program."""

from jaxtune.population import (
    PopulationState as PopulationState,
)
from jaxtune.population import (
    Trainer as Trainer,
)
from jaxtune.population import (
    _select as _select,
)
from jaxtune.population import (
    _signature as _signature,
)
from jaxtune.population import (
    check_data_form as check_data_form,
)
from jaxtune.population import (
    check_finite_leaves as check_finite_leaves,
)
from jaxtune.population import (
    default_eval_every as default_eval_every,
)
from jaxtune.population import (
    is_init_function as is_init_function,
)
from jaxtune.population import (
    leading_length as leading_length,
)
