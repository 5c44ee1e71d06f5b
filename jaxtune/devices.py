"""Devices a population is sharded over.

On a CPU one training step runs on one core. Exposing the cores as separate host
devices, and sharding the members over them, is how a sweep uses the whole
machine. JAX fixes its device list when it first runs anything, so the request
must come first:

    import jaxtune as jt
    jt.use_cpu_devices()        # before any JAX computation

The memory a sweep plans with is read here too: `plan_slices` sizes the slices against
each device's memory, `check_kept_memory` the kept parameters against the host's. And
the compilation cache that keeps compiled programs across processes is turned on here:
by `enable_compilation_cache`, or by `jt.sweep` itself (`default_compilation_cache`).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxtune._checks import positive_int

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
    n = positive_int("n", n)
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


def default_cache_dir() -> str:
    """Where jaxtune keeps compiled programs unless told otherwise.

    `$JAXTUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/jaxtune/xla` (an absolute
    `XDG_CACHE_HOME` only, as the XDG specification says), else `~/.cache/jaxtune/xla`.
    """
    if os.environ.get("JAXTUNE_CACHE_DIR"):
        return os.environ["JAXTUNE_CACHE_DIR"]
    root = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(root):
        root = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "jaxtune", "xla")


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> str:
    """Keeps compiled programs on disk, so a new process skips compiling them again.

    Within one process jaxtune already compiles each program once; this turns on
    JAX's persistent compilation cache for the next processes (a rerun of a script,
    a restarted notebook kernel). Every program is cached, however fast it compiled.
    `jt.sweep` calls it itself at its first call in a process (see its docstring);
    call it first to choose another directory.

    Args:
      directory: where to keep the cache (default: `default_cache_dir()`:
        `$JAXTUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/jaxtune/xla`, else
        `~/.cache/jaxtune/xla`).

    Returns:
      The directory used.

    Raises:
      OSError: the directory cannot be created or written to.
    """
    directory = os.fspath(default_cache_dir() if directory is None else directory)
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"`directory` {directory!r} cannot be written to; pass a "
                              "writable directory for the compilation cache.")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


_MSG_NO_CACHE = """jaxtune could not turn on the compilation cache ({error}); this sweep \
runs without it, compiling again in every new process. Set JAXTUNE_CACHE_DIR to a \
writable directory, or JAXTUNE_COMPILATION_CACHE=0 to silence this."""


@functools.cache  # once per process: the first sweep decides
def default_compilation_cache() -> None:
    """Turns on the compilation cache for `jt.sweep`, at its first call in a process.

    Nothing is changed where the user opted out (`JAXTUNE_COMPILATION_CACHE=0`) or
    configured JAX's cache themselves (`jax_compilation_cache_dir` set, or
    `jax_enable_compilation_cache` off). A directory that cannot be created or written
    to warns (once) and the sweep goes on without the cache.
    """
    opted_out = os.environ.get("JAXTUNE_COMPILATION_CACHE", "").strip().lower() in (
        "0", "false", "no", "off")
    if (opted_out or jax.config.jax_compilation_cache_dir
            or not jax.config.jax_enable_compilation_cache):
        return
    try:
        enable_compilation_cache()
    except OSError as error:
        warnings.warn(_MSG_NO_CACHE.format(error=error), RuntimeWarning, stacklevel=3)


# -- memory: slices on the devices, kept parameters on the host --------------------


def plan_slices(members: int, devices: Sequence[jax.Device], member_bytes: int,
                members_per_slice: int | None, members_in_flight: int | None,
                required_in_flight: int | None, cpu_members_per_device: int
                ) -> tuple[int, int]:
    """The slice size and members in flight: bounded by the devices' memory.

    Raises ValueError, with the estimate and the fix, when even one slice cannot fit.
    """
    num_devices = len(devices)
    memory = device_memory_bytes(devices[0])
    # Half of the memory for the population: the rest is data, programs and scratch.
    fits = max(0, int(0.5 * memory * num_devices // max(member_bytes, 1)))
    if members_per_slice is None:
        whole = math.ceil(members / num_devices) * num_devices
        if devices[0].platform == "cpu":
            size = min(whole, cpu_members_per_device * num_devices)
        else:
            size = min(whole, max(num_devices, fits // num_devices * num_devices))
    else:
        size = math.ceil(members_per_slice / num_devices) * num_devices
    if size * member_bytes > 0.5 * memory * num_devices:
        raise ValueError(
            f"one slice of {size} members needs about {_gib(size * member_bytes)} of device "
            f"memory (about {_gib(member_bytes)} per member: parameters, optimizer state, "
            f"gradients), more than half of the {_gib(memory * num_devices)} the "
            f"{num_devices} device(s) have; pass members_per_slice={max(1, fits)} or fewer"
            + ("" if fits else ", or shrink the model") + "."
        )
    if members_in_flight is None:
        # Two slices: one trains while the other is read back and decided on.
        members_in_flight = size * max(1, min(2, fits // max(size, 1)))
    members_in_flight = max(members_in_flight, required_in_flight or 0, size)
    if members_in_flight * member_bytes > 0.5 * memory * num_devices and members_in_flight > size:
        raise ValueError(
            f"{members_in_flight} members in flight need about "
            f"{_gib(members_in_flight * member_bytes)} of device memory; at most {fits} fit. "
            "Lower `members_in_flight` (or the strategy's population)."
        )
    return size, members_in_flight


# The kept parameters may take this fraction of the host memory available when the sweep
# starts: the rest is the data, the compiled programs, the members in flight (on a CPU, the
# host's memory too) and whatever else the process holds.
KEPT_MEMORY_FRACTION = 0.5


def kept_configurations(keep_params: Any) -> int | None:
    """How many configurations' members `keep_params` keeps: None for all (True) or none.

    Raises TypeError / ValueError naming the allowed values.
    """
    allowed = ("`keep_params` must be True, False, 'best' or a positive int k (the members "
               "of the best k configurations)")
    if isinstance(keep_params, bool | np.bool_):
        return None
    if isinstance(keep_params, str):
        if keep_params != "best":
            raise ValueError(f"{allowed}, got keep_params={keep_params!r}.")
        return 1
    if not isinstance(keep_params, int | np.integer):
        raise TypeError(f"{allowed}, got {type(keep_params).__name__} {keep_params!r}.")
    if keep_params < 1:
        raise ValueError(f"{allowed}, got keep_params={keep_params}; pass keep_params=False "
                         "to keep none.")
    return int(keep_params)


def check_kept_memory(keep_params: Any, members: int, seeds: int, member_trees: Sequence[Any],
                      available: int | None = None) -> None:
    """Refuses, before anything trains, kept parameters that would outgrow the host's memory.

    `member_trees` holds one member's parameters and model state (arrays or
    `ShapeDtypeStruct`s) of each static group; the largest is counted for every kept
    member. The bound is `KEPT_MEMORY_FRACTION` of `available` (default:
    `host_memory_available()`; no check where that is unknown).

    Raises:
      ValueError: with the estimate and the `keep_params` values that fit.
    """
    best = kept_configurations(keep_params)
    if (best is None and not keep_params) or not members:
        return
    available = host_memory_available() if available is None else available
    if available is None:
        return
    per_member = max(sum(math.prod(np.shape(a)) * np.dtype(a.dtype).itemsize
                         for a in jax.tree_util.tree_leaves(tree)) for tree in member_trees)
    kept = members if best is None else min(members, best * seeds)
    bound = KEPT_MEMORY_FRACTION * available
    if kept * per_member <= bound:
        return
    fit = int(bound // max(per_member * seeds, 1))  # configurations whose members fit
    what = ("keeps every member's final parameters on the host" if best is None else
            f"keeps the members of the best {best} configuration{'s' if best > 1 else ''}")
    if fit == 0:
        fixes = "keep_params=False (not even the best configuration's members fit)"
    else:
        fixes = ", ".join([f"keep_params='best' (the best configuration's {seeds} member(s))",
                           *([f"keep_params=k for k <= {fit}"] if fit > 1 else []),
                           "or keep_params=False"])
    raise ValueError(
        f"keep_params={keep_params!r} {what}: {kept} members x {_gib(per_member)} = "
        f"{_gib(kept * per_member)}, more than {KEPT_MEMORY_FRACTION:.0%} of the "
        f"{_gib(available)} of host memory available; keep fewer: {fixes}. (A member's "
        "figure counts its parameters and model state.)")


def host_memory_available() -> int | None:
    """Bytes of host memory available now, or None where it cannot be read.

    Linux's MemAvailable (/proc/meminfo: free memory plus the page cache it can
    reclaim), else the free pages (`os.sysconf("SC_AVPHYS_PAGES")` times the page size).
    """
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(_sysconf("SC_AVPHYS_PAGES")) * int(_sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def device_memory_bytes(device: jax.Device) -> int:
    """Memory one device can hold: its allocator limit, or the host's RAM on a CPU."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some backends do not implement memory_stats
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return int(np.int64(_sysconf("SC_PAGE_SIZE")) * _sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _sysconf(name: str) -> int:
    return os.sysconf(name)


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"
