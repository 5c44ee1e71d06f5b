"""Devices a population is sharded over.

On a CPU one training step runs on one core. Exposing the cores as separate host
devices, and sharding the members over them, is how a sweep uses the whole
machine. JAX fixes its device list when it first runs anything, so the request
must come first:

    import jaxtune as jt
    jt.use_cpu_devices()        # before any JAX computation
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

MEMBER_AXIS = "member"


def use_cpu_devices(n: int | None = None) -> int:
    """Exposes `n` CPU cores as `n` JAX host devices (default: every core).

    Call it right after `import jaxtune`, before JAX computes anything: JAX reads
    the device count once, when its backend starts. If that has already happened
    this raises a RuntimeError (unless the count already is `n`), rather than
    silently running on one core. The environment-variable equivalent, for
    scripts you launch, is `XLA_FLAGS=--xla_force_host_platform_device_count=n`.

    Args:
      n: static; number of host devices, a positive int. Defaults to the number
        of cores this process may use.

    Returns:
      The number of CPU devices JAX will use.
    """
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"`n` must be a positive int, got {type(n).__name__} {n!r}.")
    if n < 1:
        raise ValueError(f"`n` must be a positive int, got n={n}.")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as error:
        current = len(jax.devices("cpu"))
        if current == n:
            return n
        raise RuntimeError(
            f"`use_cpu_devices({n})` came too late: JAX has already started with "
            f"{current} CPU device(s). Call `jaxtune.use_cpu_devices()` right after "
            "`import jaxtune`, before any JAX computation, or launch Python with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n}."
        ) from error
    return n


def member_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh whose single axis, "member", spans `devices`.

    The default is every device of every process: under `jax.distributed` the
    members are sharded over the whole run.
    """
    if devices is None:
        devices = jax.devices()
    devices = list(devices)
    if not devices:
        raise ValueError("`devices` must name at least one device, got an empty sequence.")
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(
                f"`devices` must hold jax.Device objects (from `jax.devices()`), got "
                f"{type(device).__name__} {device!r}."
            )
    return Mesh(np.array(devices), (MEMBER_AXIS,))


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> str:
    """Keeps compiled programs on disk, so a new process skips compiling them again.

    Within one process jaxtune already compiles each program once; this turns on
    JAX's persistent compilation cache for the next processes (a rerun of a script,
    a restarted notebook kernel). Every program is cached, however fast it compiled.

    Args:
      directory: where to keep the cache (default: `$JAXTUNE_CACHE_DIR`, else
        `~/.cache/jaxtune/xla`).

    Returns:
      The directory used.
    """
    if directory is None:
        directory = os.environ.get("JAXTUNE_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "jaxtune", "xla")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
