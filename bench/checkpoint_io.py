"""Checkpoint format for a sweep's population state: orbax-checkpoint or an atomic `.npz`?

The state is what a sweep would checkpoint between chunks: the demo MLP
64-128-128-10's parameters and its `optax.adam` state (mu, nu, count), every leaf
with a leading member axis of M, as one pytree `{"params": ..., "opt_state": ...}`
(optax's own `(ScaleByAdamState, EmptyState)` tuple). mu and nu hold random
values, not adam's initial zeros, so neither format gains from compressing zeros.
Per member that is 3 x 26,122 float32 values and one int32 count, about 306 KiB.

Measured, for M = 32, 256, 1024:
  (a) import time of `orbax.checkpoint` in a fresh interpreter, next to `import jax`
      alone (orbax imports jax, so the difference is what orbax adds);
  (b) median wall time over `--repeats` to save and to restore:
        orbax  `ocp.StandardCheckpointer().save(path, state)` followed by
               `wait_until_finished()` (so the save is complete, as a
               synchronous one would be); restore with `restore(path, abstract)`,
               `abstract` the tree of `jax.ShapeDtypeStruct`s. Each save goes to
               a new directory (orbax refuses to overwrite one).
        npz    `np.savez` of the flattened leaves into `<path>.tmp`, `flush`,
               `os.fsync`, `os.replace(<path>.tmp, <path>)`, `fsync` of the
               directory; restore with `np.load`, unflatten with the state's
               tree structure and `jax.device_put`.
      Both restores end with device arrays (`jax.block_until_ready`) and both need
      the state's structure up front (orbax the abstract tree, npz the treedef).
      One untimed save and restore per format and M comes first.
  (c) that each restores bit-identical: same tree structure, and every leaf with
      the same dtype, shape and bytes as the saved one.

The directory (`--dir`, default the system temporary directory) decides what is
measured: a page-cache-backed /tmp hides the disk; point it at the disk the
sweeps would write to.

    python bench/checkpoint_io.py                 # M = 32, 256, 1024, 5 repeats
    python bench/checkpoint_io.py --quick         # the same sizes, 3 repeats
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from _cli import log, parse_ints, positive, table

from jaxtune.demo import mlp_init

DEFAULT_SIZES = (32, 256, 1024)
DEFAULT_REPEATS = 5
QUICK_REPEATS = 3
IMPORT_REPEATS = 3


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="orbax-checkpoint vs atomic .npz (see module docstring).")
    parser.add_argument("--sizes", type=parse_ints, default=DEFAULT_SIZES,
                        help=f"members M (default {','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--repeats", type=positive, default=None,
                        help=f"timed saves and restores per cell (default {DEFAULT_REPEATS}, --quick {QUICK_REPEATS})")
    parser.add_argument("--import-repeats", type=positive, default=IMPORT_REPEATS,
                        help=f"fresh interpreters per import timing (default {IMPORT_REPEATS})")
    parser.add_argument("--dir", default=None, help="where to write (default: the system temporary directory)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REPEATS} repeats")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    return args


# --------------------------------------------------------------------------------------
# The state


def population_state(members: int, seed: int = 0) -> Any:
    """Params and adam state of `members` MLPs, leading axis M, mu and nu random."""
    init_key, mu_key, nu_key, count_key = jax.random.split(jax.random.key(seed), 4)
    params = jax.vmap(mlp_init)(jax.random.split(init_key, members))
    adam_state, empty = jax.vmap(optax.adam(1e-3).init)(params)

    def random_like(key, tree, scale):
        leaves, treedef = jax.tree.flatten(tree)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, x.shape, x.dtype)
                                            for k, x in zip(keys, leaves)])

    adam_state = adam_state._replace(
        count=jax.random.randint(count_key, (members,), 0, 10_000, adam_state.count.dtype),
        mu=random_like(mu_key, adam_state.mu, 1e-3),
        nu=jax.tree.map(jax.numpy.square, random_like(nu_key, adam_state.nu, 1e-3)),
    )
    return jax.block_until_ready({"params": params, "opt_state": (adam_state, empty)})


def identical(a: Any, b: Any) -> bool:
    """Same tree structure; every leaf the same dtype, shape and bytes."""
    leaves_a, treedef_a = jax.tree.flatten(a)
    leaves_b, treedef_b = jax.tree.flatten(b)
    if treedef_a != treedef_b:
        return False
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True


def _tree_bytes(tree: Any) -> int:
    return sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))


def _disk_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


# --------------------------------------------------------------------------------------
# The two formats: save(state, path) and restore(path, like) -> state on device


def npz_save(state: Any, path: str) -> None:
    leaves = jax.tree.leaves(state)
    arrays = {f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def npz_restore(path: str, like: Any) -> Any:
    treedef = jax.tree.structure(like)
    with np.load(path) as stored:
        leaves = [stored[f"leaf_{i:04d}"] for i in range(treedef.num_leaves)]
    return jax.block_until_ready(jax.device_put(jax.tree.unflatten(treedef, leaves)))


class Orbax:
    """One `StandardCheckpointer`, built once (its construction is not timed)."""

    def __init__(self):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.checkpointer = ocp.StandardCheckpointer()

    def save(self, state: Any, path: str) -> None:
        self.checkpointer.save(path, state)
        self.checkpointer.wait_until_finished()

    def restore(self, path: str, like: Any) -> Any:
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, like)
        return jax.block_until_ready(self.checkpointer.restore(path, abstract))

    def close(self) -> None:
        self.checkpointer.close()


# --------------------------------------------------------------------------------------
# Measurements


def import_seconds(statement: str, repeats: int) -> float:
    """Median seconds of `statement` in fresh interpreters (interpreter start excluded)."""
    code = ("import time; t = time.perf_counter(); " + statement +
            "; print(time.perf_counter() - t)")
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def measure_format(name: str, save: Callable, restore: Callable, state: Any, root: str,
                   repeats: int) -> dict:
    save_s, restore_s, ok, size = [], [], True, 0
    for i in range(repeats + 1):  # the first round is an untimed warm-up
        path = os.path.join(root, f"{name}_{i}" + (".npz" if name == "npz" else ""))
        start = time.perf_counter()
        save(state, path)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        restored = restore(path, state)
        loaded = time.perf_counter() - start
        ok &= identical(state, restored)
        size = _disk_bytes(path)
        if i:
            save_s.append(saved)
            restore_s.append(loaded)
        del restored
        (shutil.rmtree if os.path.isdir(path) else os.remove)(path)
    return {"save_s": statistics.median(save_s), "restore_s": statistics.median(restore_s),
            "identical": ok, "disk_bytes": size, "save_all": save_s, "restore_all": restore_s}


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    start_all = time.perf_counter()
    log("timing imports in fresh interpreters")
    jax_s = import_seconds("import jax", args.import_repeats)
    orbax_s = import_seconds("import orbax.checkpoint", args.import_repeats)
    orbax_after_jax_s = import_seconds(
        "import jax; t = time.perf_counter(); import orbax.checkpoint", args.import_repeats)

    orbax = Orbax()
    root = tempfile.mkdtemp(prefix="jaxtune_checkpoint_io_", dir=args.dir)
    rows, checks = [], []
    try:
        for members in args.sizes:
            state = population_state(members)
            mib = _tree_bytes(state) / 2**20
            results = {}
            for name, save, restore in (("orbax", orbax.save, orbax.restore), ("npz", npz_save, npz_restore)):
                log(f"M={members}: {name}, {args.repeats} repeats")
                results[name] = measure_format(name, save, restore, state, root, args.repeats)
            o, n = results["orbax"], results["npz"]
            rows.append([members, f"{mib:.1f}",
                         f"{1e3 * o['save_s']:.1f}", f"{1e3 * n['save_s']:.1f}", f"{o['save_s'] / n['save_s']:.2f}x",
                         f"{1e3 * o['restore_s']:.1f}", f"{1e3 * n['restore_s']:.1f}",
                         f"{o['restore_s'] / n['restore_s']:.2f}x",
                         f"{o['disk_bytes'] / 2**20:.1f} / {n['disk_bytes'] / 2**20:.1f}",
                         f"{'yes' if o['identical'] else 'NO'} / {'yes' if n['identical'] else 'NO'}"])
            checks.append(o["identical"] and n["identical"])
            del state
    finally:
        orbax.close()
        shutil.rmtree(root, ignore_errors=True)

    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    out = [
        (f"Population checkpoint: MLP 64-128-128-10 params + adam (mu, nu, count), leading axis M\n"
        f"orbax-checkpoint {importlib.metadata.version('orbax-checkpoint')}, "
        f"jax {jax.__version__}, numpy {np.__version__}, directory {args.dir or tempfile.gettempdir()}, "
        f"load average {load}\n"),
        table(f"Import time in a fresh interpreter (median of {args.import_repeats})",
               ["import", "seconds"],
               [["jax", f"{jax_s:.2f}"], ["orbax.checkpoint (imports jax too)", f"{orbax_s:.2f}"],
                ["orbax.checkpoint after jax", f"{orbax_after_jax_s:.2f}"]]),
        table(f"Save and restore, median of {args.repeats} (ms); ratio = orbax / npz (>1: npz faster); "
               f"bit-identical = same tree, dtypes, shapes, bytes",
               ["M", "state MiB", "orbax save", "npz save", "save ratio", "orbax restore", "npz restore",
                "restore ratio", "disk MiB orbax / npz", "bit-identical orbax / npz"], rows),
        f"all restores bit-identical: {'yes' if all(checks) else 'NO'}",
        f"benchmark wall time {time.perf_counter() - start_all:.0f} s",
    ]
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
