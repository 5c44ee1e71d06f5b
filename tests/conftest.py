"""Test configuration: two CPU host devices, so sharding is exercised on any machine.

This must run before JAX starts its backend, which is why it lives here.

The suite compiles hundreds of small programs, and the code generator's (LLVM's)
optimizations were about half of its CPU time while buying nothing at these sizes, so the
tests compile with XLA_FLAGS=--xla_backend_optimization_level=0 (XLA's default is 3). XLA's
own graph passes, fusion included, still run. Measured on two cores: tests/test_sweep.py
60 -> 31 CPU seconds, four notebooks 126 -> 79 s; only a convolution-heavy notebook runs
slower (flax_and_equinox, 29 -> 35 s). The variable is set here, before JAX starts, so that
the notebook kernels and the processes the tests launch inherit it. A level already given
in XLA_FLAGS is kept: `XLA_FLAGS=--xla_backend_optimization_level=3 python -m pytest` runs
the suite compiled as users' programs are.
"""

import inspect
import os
import signal
import tempfile

XLA_TEST_FLAGS = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_TEST_FLAGS}".strip()
# No compilation cache in the user's home, and `xla_compiles` counts real compiles. Tests
# that turn the cache on themselves (`jt.enable_compilation_cache()` in the processes they
# start) write it under the system's temporary directory, never into ~/.cache.
os.environ["JAXTUNE_COMPILATION_CACHE"] = "0"
os.environ.setdefault("JAXTUNE_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "jaxtune-tests-xla-cache"))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)


import contextlib  # noqa: E402
import logging  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Two programs that compute the same training differently (vmapped or alone, scanned or
# looped, sharded or not, on other data forms) may order each reduction differently, and a
# float32 reduction reordered moves its result by a few units in the last place (ulps).
# One step holds a handful of such roundings (the loss's mean, the gradient's sums over the
# batch, the optimizer's update), and a difference made at one step is carried into the
# next: over `steps` steps the two programs drift apart by about steps × (ulps per step).
# Every test comparing two such programs takes its tolerance from `rounding(steps)`,
# never from the figure one machine happened to give (an AMD EPYC and an Intel Xeon fuse
# differently: 1.09e-6 seen where 1e-6 had been written). A genuine difference (another
# batch, another seed, a missed update) moves a loss by orders of magnitude more.
F32_EPS = float(np.finfo(np.float32).eps)  # 2**-23 ≈ 1.19e-7: one rounding, relative
ULPS_PER_STEP = 8


def rounding(steps):
    """`rtol`/`atol` for comparing two float32 programs over `steps` training steps (the
    absolute part for values near zero, at the scale of the losses and weights compared)."""
    tolerance = ULPS_PER_STEP * max(int(steps), 1) * F32_EPS
    return dict(rtol=tolerance, atol=tolerance)


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


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if anything starts, trains or evaluates a population.

    For "bad input is refused before compiling": every compiled program of a population
    is reached through one of these `Trainer` methods, so a check that happens only after
    one of them runs fails the test instead of passing unseen.
    """
    import jaxtune as jt

    for name in ("init", "train", "train_with_metrics", "evaluate"):
        monkeypatch.setattr(jt.Trainer, name,
                            lambda *a, _name=name, **k: pytest.fail(f"Trainer.{_name} ran"))


def pytest_collection_modifyitems(items):
    """Tests marked `slow` first, so that under pytest-xdist (`-n` in pyproject.toml's addopts)
    they start at once on every worker and the end of the run is short tests only."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def interrupting(base):
    """The strategy class `base`, sending this process a Ctrl-C at decision `at` (0: never).

    `interrupting(jt.PBT)(2, ready=10)` is PBT that the user stops at its second
    decision; the same class with `at=0` is the uninterrupted twin: one class name and
    one `config()` (that of `base`, without `at`), so both have the same checkpoint
    fingerprint, and the twin resumes the interrupted run's checkpoint.
    """

    class Interrupting(base):
        def __init__(self, at, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.at, self.seen = at, 0

        def config(self):
            # `at` says only when the test presses Ctrl-C: the same sweep either way.
            return {name: getattr(self, name) for name in inspect.signature(base).parameters}

        def decide(self, search, report):
            self.seen += 1
            if self.seen == self.at:
                os.kill(os.getpid(), signal.SIGINT)
            return super().decide(search, report)

    Interrupting.__name__ = Interrupting.__qualname__ = f"Interrupting{base.__name__}"
    return Interrupting
