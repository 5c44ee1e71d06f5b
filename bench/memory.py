"""Peak host memory of `jaxtune.sweep` against population size.

Each cell is a fresh subprocess that runs one plain sweep and reports its peak
resident set size, `resource.getrusage(RUSAGE_SELF).ru_maxrss`:

  sweep     the demo MLP 64-128-128-10 on the digits training split, batch 128,
            `optax.adam(learning_rate)`, `--steps` (20) steps, N learning rates
            log-spaced in [1e-4, 1e-1], one seed, no evaluation,
            `keep_params=False`, `members_per_slice=--members-per-slice` (16),
            one device, plus any `--extra KEY=VALUE` keyword arguments.
  baseline  a process that imported jax and ran a tiny computation: the floor
            every JAX process pays.
  imported  a process that imported jaxtune, optax and the sweep's inputs and
            loaded the data, without sweeping: what the sweep adds is above it.

The ratio RSS(N) / RSS(smallest N) is what the population's size costs; the
target (after the sweep engine's rebuild) is at most 1.25x at N = 4,096 against
N = 256. `--extra` passes keyword arguments through to `jaxtune.sweep`, so the
same table can be taken with parameters the engine gains later, e.g.
`--extra members_in_flight=32`.

    python bench/memory.py                       # N = 256, 1024, 4096
    python bench/memory.py --quick               # the same sizes, 4 steps
    python bench/memory.py --extra members_in_flight=32
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from _cli import log, parse_ints, positive, run_json_worker, table, write_json

DEFAULT_SIZES = (256, 1024, 4096)
DEFAULT_STEPS = 20
QUICK_STEPS = 4
DEFAULT_MEMBERS_PER_SLICE = 16
BATCH_SIZE = 128
LR_LOW, LR_HIGH = 1e-4, 1e-1
TARGET_RATIO = 1.25  # RSS(4096) / RSS(256), the rebuilt engine's goal
TARGET_SIZES = (256, 4096)
WORKER_MARK = "MEMORY_JSON "


def _parse_extra(text: str) -> tuple[str, Any]:
    """`KEY=VALUE`, VALUE read as a Python literal (32, 1e-3, True, None, 'x') or else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a keyword name, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Peak RSS of jaxtune.sweep against N (see module docstring).")
    parser.add_argument("--sizes", type=parse_ints, default=DEFAULT_SIZES,
                        help=f"population sizes N (default {','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--steps", type=positive, default=None,
                        help=f"optimizer steps per member (default {DEFAULT_STEPS}, --quick {QUICK_STEPS})")
    parser.add_argument("--members-per-slice", type=positive, default=DEFAULT_MEMBERS_PER_SLICE,
                        help=f"passed to jaxtune.sweep (default {DEFAULT_MEMBERS_PER_SLICE})")
    parser.add_argument("--repeats", type=positive, default=1,
                        help="fresh subprocesses per cell; the median is quoted (default 1)")
    parser.add_argument("--extra", type=_parse_extra, action="append", default=[], metavar="KEY=VALUE",
                        help="extra keyword argument for jaxtune.sweep (repeatable)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per member")
    parser.add_argument("--json", metavar="PATH", help="write every measurement to PATH")
    parser.add_argument("--worker", choices=("baseline", "imported", "sweep"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=positive, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = QUICK_STEPS if args.quick else DEFAULT_STEPS
    return args


# --------------------------------------------------------------------------------------
# Workers: each runs in a fresh process and reports its own peak RSS


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def worker(args: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp

    jax.block_until_ready(jnp.arange(8.0).sum())
    out: dict[str, Any] = {"devices": len(jax.devices())}
    if args.worker != "baseline":
        import numpy as np
        import optax

        import jaxtune as jt
        from jaxtune.demo import cross_entropy, mlp_init

        data = jt.load_digits()
        out["before_sweep_mib"] = _peak_rss_mib()
        if args.worker == "sweep":
            lrs = np.geomspace(LR_LOW, LR_HIGH, args.n).astype(np.float32)
            start = time.perf_counter()
            result = jt.sweep(
                cross_entropy, mlp_init, lambda learning_rate: optax.adam(learning_rate),
                jt.Space(learning_rate=jt.loguniform(LR_LOW, LR_HIGH)),
                data=(data.x_train, data.y_train), batch_size=BATCH_SIZE, steps=args.steps,
                configs={"learning_rate": lrs}, seeds=1, keep_params=False,
                members_per_slice=args.members_per_slice, devices=jax.devices()[:1],
                progress=False, **dict(args.extra),
            )
            out["sweep_s"] = time.perf_counter() - start
            out["members"] = int(result.n_members)
            out["final_train_loss"] = float(np.nanmedian(result.train_loss[:, -1]))
    out["peak_rss_mib"] = _peak_rss_mib()
    print(WORKER_MARK + json.dumps(out), flush=True)


def run_worker(args: argparse.Namespace, kind: str, n: int | None = None) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind,
               "--steps", str(args.steps), "--members-per-slice", str(args.members_per_slice)]
    if n is not None:
        command += ["--n", str(n)]
    for key, value in args.extra:
        command += ["--extra", f"{key}={value!r}"]
    code, out = run_json_worker(command, WORKER_MARK)  # one device: the worker's default
    if code != 0 or out is None:
        raise RuntimeError(f"the {kind} worker (N={n}) failed (exit code {code}).")
    return out


# --------------------------------------------------------------------------------------
# Driver and report


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def measure(args: argparse.Namespace) -> dict:
    cells: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for kind in ("baseline", "imported"):
            log(f"repeat {repeat + 1}/{args.repeats}: {kind}")
            cells.setdefault(kind, []).append(run_worker(args, kind))
        for n in args.sizes:
            log(f"repeat {repeat + 1}/{args.repeats}: sweep N={n}")
            cells.setdefault(str(n), []).append(run_worker(args, "sweep", n))

    baseline = _median(cells["baseline"], "peak_rss_mib")
    imported = _median(cells["imported"], "peak_rss_mib")
    first = _median(cells[str(args.sizes[0])], "peak_rss_mib")
    rows = [["baseline: import jax, tiny computation", "-", f"{baseline:,.0f}", "-", "-", "-"],
            ["imported: + jaxtune, optax, digits loaded", "-", f"{imported:,.0f}", "-", "-", "-"]]
    for n in args.sizes:
        runs = cells[str(n)]
        rss = _median(runs, "peak_rss_mib")
        rows.append([f"sweep N={n}", f"{_median(runs, 'sweep_s'):.1f}", f"{rss:,.0f}",
                     f"{rss - imported:,.0f}", f"{rss / first:.2f}x",
                     f"{(rss - imported) / max(first - imported, 1e-9):.2f}x"])

    extra = ", ".join(f"{k}={v!r}" for k, v in args.extra) or "none"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    import jax

    out = [
        (f"jaxtune.sweep peak RSS: MLP 64-128-128-10 on digits, batch {BATCH_SIZE}, adam, {args.steps} steps, "
        f"keep_params=False, members_per_slice={args.members_per_slice}, one device, extra kwargs: {extra}\n"
        f"jax {jax.__version__}, {cells['baseline'][0]['devices']} device(s) per worker, medians over "
        f"{args.repeats} fresh subprocess(es) per row, load average {load}\n"),
        table(f"Peak RSS (ru_maxrss) per fresh process, MiB; ratios against N={args.sizes[0]}",
               ["process", "sweep_s", "peak RSS MiB", "above imported", f"RSS / RSS({args.sizes[0]})",
                f"above-imported / same at {args.sizes[0]}"], rows),
    ]
    low, high = TARGET_SIZES
    if str(low) in cells and str(high) in cells:
        ratio = _median(cells[str(high)], "peak_rss_mib") / _median(cells[str(low)], "peak_rss_mib")
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        out.append(f"target\n------\n{verdict}  RSS(N={high}) / RSS(N={low}) <= {TARGET_RATIO:g}x ({ratio:.2f}x)\n")
    else:
        out.append(f"target\n------\nn/a   RSS(N={high}) / RSS(N={low}) <= {TARGET_RATIO:g}x (not measured)\n")
    print("\n".join(out), flush=True)
    return {"cells": cells, "extra": dict(args.extra)}


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker:
        worker(args)
        return
    start = time.perf_counter()
    results = measure(args)
    print(f"benchmark wall time {time.perf_counter() - start:.0f} s")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
