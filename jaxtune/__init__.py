"""jaxtune: hyperparameter sweeps for JAX, one compiled program per population.

Every numeric hyperparameter is an array: schedules and transforms on optax's
protocol accept traced values, and `sweep` trains a whole population of
configurations x seeds with `jit(vmap(lax.scan(...)))`.
"""

# Schedules: optax's, trace-safe in every argument, and more.
# Embedded demo data.
from .data import (
    Dataset as Dataset,
)
from .data import (
    load_digits as load_digits,
)
from .data import (
    make_classification_data as make_classification_data,
)

# Compiled programs, cached for the process and (optionally) on disk.
from .devices import enable_compilation_cache as enable_compilation_cache

# Devices the population is sharded over.
from .devices import use_cpu_devices as use_cpu_devices

# Optional bridges: each imports its library only when used.
from .integrations import OptunaSearch as OptunaSearch

# Your own loop: populations of optimizer states.
from .loop import (
    get_member as get_member,
)
from .loop import (
    init_population as init_population,
)
from .loop import (
    set_member as set_member,
)
from .loop import (
    step_population as step_population,
)
from .loop import (
    update_population as update_population,
)

# The learning-rate range test.
from .lr_find import (
    LRFindResult as LRFindResult,
)
from .lr_find import (
    lr_find as lr_find,
)

# Classification metrics, jittable and vmappable.
from .metrics import (
    accuracy as accuracy,
)
from .metrics import (
    classification_metrics as classification_metrics,
)
from .metrics import (
    confusion_matrix as confusion_matrix,
)
from .metrics import (
    f1 as f1,
)
from .metrics import (
    precision as precision,
)
from .metrics import (
    recall as recall,
)

# The population trainer.
from .population import (
    PopulationState as PopulationState,
)
from .population import (
    Trainer as Trainer,
)

# What a sweep returns.
from .results import (
    BestConfig as BestConfig,
)
from .results import (
    SweepResult as SweepResult,
)

# The runner and its strategies: decisions at record points.
from .runner import (
    Search as Search,
)
from .runner import (
    SweepInterrupted as SweepInterrupted,
)
from .schedules import (
    constant_schedule as constant_schedule,
)
from .schedules import (
    cosine_decay_schedule as cosine_decay_schedule,
)
from .schedules import (
    cosine_onecycle_schedule as cosine_onecycle_schedule,
)
from .schedules import (
    cyclic_schedule as cyclic_schedule,
)
from .schedules import (
    exponential_decay as exponential_decay,
)
from .schedules import (
    join_schedules as join_schedules,
)
from .schedules import (
    linear_onecycle_schedule as linear_onecycle_schedule,
)
from .schedules import (
    linear_schedule as linear_schedule,
)
from .schedules import (
    piecewise_constant_schedule as piecewise_constant_schedule,
)
from .schedules import (
    piecewise_interpolate_schedule as piecewise_interpolate_schedule,
)
from .schedules import (
    polynomial_schedule as polynomial_schedule,
)
from .schedules import (
    sgdr_schedule as sgdr_schedule,
)
from .schedules import (
    warmup_constant_schedule as warmup_constant_schedule,
)
from .schedules import (
    warmup_cosine_decay_schedule as warmup_cosine_decay_schedule,
)
from .schedules import (
    warmup_exponential_decay_schedule as warmup_exponential_decay_schedule,
)
from .schedules import (
    warmup_inverse_sqrt_schedule as warmup_inverse_sqrt_schedule,
)
from .schedules import (
    warmup_stable_decay_schedule as warmup_stable_decay_schedule,
)
from .space import (
    ConfigStream as ConfigStream,
)

# Search spaces and samplers.
from .space import (
    Dimension as Dimension,
)
from .space import (
    Space as Space,
)
from .space import (
    Table as Table,
)
from .space import (
    choice as choice,
)
from .space import (
    fixed as fixed,
)
from .space import (
    loguniform as loguniform,
)
from .space import (
    randint as randint,
)
from .space import (
    uniform as uniform,
)
from .strategies import (
    PBT as PBT,
)
from .strategies import (
    Decision as Decision,
)
from .strategies import (
    Hyperband as Hyperband,
)
from .strategies import (
    MedianStopping as MedianStopping,
)
from .strategies import (
    Report as Report,
)
from .strategies import (
    Strategy as Strategy,
)
from .strategies import (
    SuccessiveHalving as SuccessiveHalving,
)

# The one call.
from .sweep import sweep as sweep

# Tuning-aware gradient transformations.
from .transforms import (
    ProximalL1State as ProximalL1State,
)
from .transforms import (
    ReduceOnPlateauState as ReduceOnPlateauState,
)
from .transforms import (
    l1_penalty as l1_penalty,
)
from .transforms import (
    l2_penalty as l2_penalty,
)
from .transforms import (
    proximal_l1 as proximal_l1,
)
from .transforms import (
    reduce_on_plateau as reduce_on_plateau,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "cyclic_schedule",
    "exponential_decay",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "warmup_inverse_sqrt_schedule",
    "warmup_stable_decay_schedule",
    "ProximalL1State",
    "ReduceOnPlateauState",
    "l1_penalty",
    "l2_penalty",
    "proximal_l1",
    "reduce_on_plateau",
    "Dimension",
    "Space",
    "ConfigStream",
    "Table",
    "choice",
    "fixed",
    "loguniform",
    "randint",
    "uniform",
    "use_cpu_devices",
    "PopulationState",
    "Trainer",
    "init_population",
    "update_population",
    "step_population",
    "get_member",
    "set_member",
    "Search",
    "SweepInterrupted",
    "Decision",
    "MedianStopping",
    "SuccessiveHalving",
    "Hyperband",
    "PBT",
    "Report",
    "Strategy",
    "OptunaSearch",
    "enable_compilation_cache",
    "sweep",
    "lr_find",
    "LRFindResult",
    "BestConfig",
    "SweepResult",
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "f1",
    "precision",
    "recall",
    "Dataset",
    "load_digits",
    "make_classification_data",
]
