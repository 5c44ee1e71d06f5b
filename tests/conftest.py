"""Test configuration: two CPU host devices, so sharding is exercised on any machine.

This must run before JAX starts its backend, which is why it lives here.
"""

import jax

jax.config.update("jax_num_cpu_devices", 2)


import contextlib  # noqa: E402
import logging  # noqa: E402

import pytest  # noqa: E402

# The programs jaxtune compiles, as `jax.log_compiles` names them.
ENGINE_PROGRAMS = ("init_seeds", "init_local", "train_local", "evaluate_local", "pick", "take",
                   "cat")


@contextlib.contextmanager
def _xla_compiles():
    """Collects the name of every program XLA compiles inside the block."""
    names = []

    class Collect(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Finished XLA compilation of jit("):
                names.append(message.split("jit(", 1)[1].split(")", 1)[0])

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield names
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def xla_compiles():
    """`with xla_compiles() as names:` lists the programs compiled inside the block."""
    return _xla_compiles
