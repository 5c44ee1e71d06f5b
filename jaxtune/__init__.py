"""jaxtune: hyperparameter sweeps for JAX, one compiled program per population.

Every numeric hyperparameter is an array: schedules and transforms on optax's
protocol accept traced values, and `sweep` trains a whole population of
configurations x seeds with `jit(vmap(lax.scan(...)))`.
"""

# Schedules: optax's, trace-safe in every argument, and more.
from .schedules import (
    constant_schedule as constant_schedule,
    cosine_decay_schedule as cosine_decay_schedule,
    cosine_onecycle_schedule as cosine_onecycle_schedule,
    cyclic_schedule as cyclic_schedule,
    exponential_decay as exponential_decay,
    join_schedules as join_schedules,
    linear_onecycle_schedule as linear_onecycle_schedule,
    linear_schedule as linear_schedule,
    piecewise_constant_schedule as piecewise_constant_schedule,
    piecewise_interpolate_schedule as piecewise_interpolate_schedule,
    polynomial_schedule as polynomial_schedule,
    sgdr_schedule as sgdr_schedule,
    warmup_constant_schedule as warmup_constant_schedule,
    warmup_cosine_decay_schedule as warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule as warmup_exponential_decay_schedule,
    warmup_inverse_sqrt_schedule as warmup_inverse_sqrt_schedule,
    warmup_stable_decay_schedule as warmup_stable_decay_schedule,
)

# Tuning-aware gradient transformations.
from .transforms import (
    ProximalL1State as ProximalL1State,
    ReduceOnPlateauState as ReduceOnPlateauState,
    l1_penalty as l1_penalty,
    l2_penalty as l2_penalty,
    proximal_l1 as proximal_l1,
    reduce_on_plateau as reduce_on_plateau,
)

# Several optax optimizers as one dynamic hyperparameter, in one compiled program.
from .families import (
    FamilyState as FamilyState,
    OptimizerChoice as OptimizerChoice,
    optimizer_choice as optimizer_choice,
)

# Learning rates that follow their own gradient (Baydin et al., ICLR 2018).
from .hypergradient_descent import (
    HypergradientState as HypergradientState,
    hd_adam as hd_adam,
    hd_sgd as hd_sgd,
    hd_sgdn as hd_sgdn,
    hypergradient_learning_rate as hypergradient_learning_rate,
    scale_by_hypergradient as scale_by_hypergradient,
)

# Search spaces and samplers.
from .space import (
    ConfigStream as ConfigStream,
    Dimension as Dimension,
    Family as Family,
    Space as Space,
    Table as Table,
    choice as choice,
    fixed as fixed,
    loguniform as loguniform,
    randint as randint,
    uniform as uniform,
)

# Devices the population is sharded over; many processes under jax.distributed.
from . import distributed as distributed
from .devices import (
    enable_compilation_cache as enable_compilation_cache,
    use_cpu_devices as use_cpu_devices,
)

# The population trainer.
from .engine import (
    PopulationState as PopulationState,
    Trainer as Trainer,
)

# Batches from a host iterator (a generator, a DataLoader), by step.
from .stream import HostStream as HostStream

# Your own loop: populations of optimizer states.
from .loop import (
    get_member as get_member,
    init_population as init_population,
    set_member as set_member,
    step_population as step_population,
    update_population as update_population,
)

# The runner and its strategies: decisions at record points.
from .runner import SweepInterrupted as SweepInterrupted
from .strategies import (
    PBT as PBT,
    Decision as Decision,
    Hyperband as Hyperband,
    MedianStopping as MedianStopping,
    PlateauDecay as PlateauDecay,
    Report as Report,
    Search as Search,
    Strategy as Strategy,
    SuccessiveHalving as SuccessiveHalving,
    HyperGradient as HyperGradient,
)

# Hypergradients through training: d(validation metric) / d(hyperparameters).
from .hypergradient import (
    Hypergradients as Hypergradients,
    hypergradient as hypergradient,
    scales_of as scales_of,
)

# Optional bridges: each imports its library only when used.
from .integrations import OptunaSearch as OptunaSearch

# The learning-rate range test.
from .lr_find import (
    LRFindResult as LRFindResult,
    lr_find as lr_find,
)

# The one call.
from .sweep import sweep as sweep

# What a sweep returns.
from .results import (
    BestConfig as BestConfig,
    SweepResult as SweepResult,
)

# Classification metrics, jittable and vmappable.
from .metrics import (
    accuracy as accuracy,
    classification_metrics as classification_metrics,
    confusion_matrix as confusion_matrix,
    f1 as f1,
    precision as precision,
    recall as recall,
)

# Embedded demo data.
from .data import (
    Dataset as Dataset,
    load_digits as load_digits,
    make_classification_data as make_classification_data,
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
    "FamilyState",
    "OptimizerChoice",
    "optimizer_choice",
    "HypergradientState",
    "hd_adam",
    "hd_sgd",
    "hd_sgdn",
    "hypergradient_learning_rate",
    "scale_by_hypergradient",
    "Dimension",
    "Family",
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
    "HostStream",
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
    "PlateauDecay",
    "HyperGradient",
    "hypergradient",
    "Hypergradients",
    "scales_of",
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
