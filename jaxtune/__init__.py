"""jaxtune: hyperparameter sweeps for JAX, one compiled program per population.

Every numeric hyperparameter is an array: schedules and transforms on optax's
protocol accept traced values, and `sweep` trains a whole population of
configurations x seeds with `jit(vmap(lax.scan(...)))`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
