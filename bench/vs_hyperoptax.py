"""`jaxtune.sweep` against hyperoptax 0.2.0's `RandomSearch.optimize`, cold and warm.

Workload (the one of `sweep_speed.py`): the demo MLP 64-128-128-10 on the digits
training split, batch 128, `optax.adam(learning_rate)`, 500 steps, N learning
rates drawn log-uniformly from [1e-4, 1e-1], one device; at the end every member's
validation loss on the digits validation split.

  hyperoptax  `RandomSearch.init({"learning_rate": LogSpace(1e-4, 1e-1)},
              n_parallel=N)` then `optimizer.optimize(state, key, objective,
              n_iterations=1)`: it samples N learning rates and runs
              `jax.vmap(objective)` over them, un-jitted, as its README shows.
              `objective(key, params)` builds `optax.adam(lr)`, trains 500 steps
              in a `lax.scan` and returns the validation loss (a scalar).
  jaxtune     `jt.sweep(..., configs={"learning_rate": <the same N rates>},
              seeds=1, eval_fn=<validation loss>, eval_every=500,
              keep_params=False, devices=jax.devices()[:1], progress=False)`.

Same work: both do N x 500 member-steps from the same initial parameters on the
same minibatches, then one validation pass per member; the script checks it by
comparing the validation losses of the members with lr <= 1e-2. What differs:
  * The objective ignores its per-member `key`: it initialises from and draws its
    minibatches with jaxtune's keys for seed 0 (`sweep_speed.Workload`), so both
    compute the same numbers. A typical hyperoptax objective would derive
    both from `key`; that adds one [128]-row gather per member per step, a small
    fraction of the matmuls.
  * jaxtune receives the rates hyperoptax samples (its `get_next_params` with the
    key `optimize` derives), as `configs`; hyperoptax's sampling (a Python loop
    of N eager draws) is inside its timed call, as it is in a user's.
  * jaxtune also records the mean training loss per chunk and checks divergence.

Cold = the first call in a fresh subprocess (compilation included; JAX's backend
is started and the data put on the device before the clock starts); warm = the
same call again in that process. Every cell is the median over `--repeats` fresh
subprocesses; the ratio hyperoptax/jaxtune above 1 means jaxtune is faster.

    python bench/vs_hyperoptax.py                 # N = 8, 32, 128, 3 repeats
    python bench/vs_hyperoptax.py --quick         # N = 8, 32, 1 repeat
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _cli import CompileLog, log, parse_ints, positive, run_json_worker, table, write_json

# `python bench/vs_hyperoptax.py` puts bench/ on the path: the workload and its
# key derivation are sweep_speed's, so the two benchmarks time the same thing.
from sweep_speed import BATCH_SIZE, LR_HIGH, LR_LOW, SEED, STABLE_LR, STEPS, Workload

import jaxtune as jt
from jaxtune.demo import cross_entropy, mlp_init

DEFAULT_SIZES = (8, 32, 128)
QUICK_SIZES = (8, 32)
SEARCH_KEY = 0  # jax.random.key(SEARCH_KEY) is the key passed to `optimize`
METHODS = ("hyperoptax", "jaxtune")
WORKER_MARK = "VS_HYPEROPTAX_JSON "


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="jaxtune.sweep vs hyperoptax RandomSearch (see module docstring).")
    parser.add_argument("--sizes", type=parse_ints, default=None,
                        help=f"population sizes N (default {','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--repeats", type=positive, default=None,
                        help="fresh subprocesses per cell; medians are quoted (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help=f"N = {','.join(map(str, QUICK_SIZES))}, one repeat")
    parser.add_argument("--json", metavar="PATH", help="write every measurement to PATH")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=positive, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


# --------------------------------------------------------------------------------------
# The worker: one method, one N, two calls, in a fresh process


def _search_space():
    from hyperoptax import LogSpace

    return {"learning_rate": LogSpace(LR_LOW, LR_HIGH)}


def hyperoptax_learning_rates(n: int) -> np.ndarray:
    """The N rates `RandomSearch.optimize(state, key(SEARCH_KEY), f, 1)` evaluates.

    `optimize` splits its key in four and samples with the second
    (`hyperoptax/base.py`); the hyperoptax worker checks that the rates it was
    given are these.
    """
    from hyperoptax import RandomSearch

    state, optimizer = RandomSearch.init(_search_space(), n_parallel=n)
    _, key_get, _, _ = jax.random.split(jax.random.key(SEARCH_KEY), 4)
    return np.asarray(optimizer.get_next_params(state, key_get)["learning_rate"], np.float32)


def make_objective(work: Workload, x_valid: jax.Array, y_valid: jax.Array):
    """hyperoptax's `fn(key, params) -> scalar`: train 500 steps, return the validation loss."""

    def objective(key, params):
        del key  # the same init and minibatches as jaxtune's seed 0, see the module docstring
        optimizer = optax.adam(params["learning_rate"])
        model = mlp_init(work.init_key)
        indices = work.batch_indices(work.data_key)

        def step(carry, batch_indices):
            model, opt_state = carry
            grads = jax.grad(cross_entropy)(model, (work.x[batch_indices], work.y[batch_indices]))
            updates, opt_state = optimizer.update(grads, opt_state, model)
            return (optax.apply_updates(model, updates), opt_state), None

        (model, _), _ = jax.lax.scan(step, (model, optimizer.init(model)), indices)
        return cross_entropy(model, (x_valid, y_valid))

    return objective


def _run_hyperoptax(n: int, work: Workload, valid, lrs: np.ndarray) -> Callable[[], tuple]:
    from hyperoptax import RandomSearch

    objective = make_objective(work, *valid)

    def call():
        state, optimizer = RandomSearch.init(_search_space(), n_parallel=n)
        _, (params_hist, results_hist) = optimizer.optimize(state, jax.random.key(SEARCH_KEY), objective,
                                                            n_iterations=1)
        jax.block_until_ready(results_hist)
        given = np.asarray(params_hist[0]["learning_rate"], np.float32)
        if not np.array_equal(given, lrs):
            raise RuntimeError("hyperoptax evaluated other learning rates than the ones given to jaxtune.")
        return np.asarray(results_hist[0], np.float64), {}

    return call


def _run_jaxtune(n: int, work: Workload, valid, lrs: np.ndarray) -> Callable[[], tuple]:
    def make_optimizer(learning_rate):
        return optax.adam(learning_rate)

    def validation_loss(params, data):
        return {"eval_loss": cross_entropy(params, data)}

    space = jt.Space(learning_rate=jt.loguniform(LR_LOW, LR_HIGH))

    def call():
        result = jt.sweep(
            cross_entropy, mlp_init, make_optimizer, space,
            data=(work.x_host, work.y_host), batch_size=BATCH_SIZE, steps=STEPS,
            configs={"learning_rate": lrs}, seeds=1, seed=SEED,
            eval_fn=validation_loss, eval_data=valid, eval_every=STEPS,
            keep_params=False, devices=jax.devices()[:1], progress=False,
        )
        given = np.asarray(result.hparams["learning_rate"], np.float32)
        if not np.array_equal(given, lrs):
            raise RuntimeError("jaxtune's members are not in the order of `configs`.")
        return np.asarray(result.metrics["eval_loss"][:, -1], np.float64), {
            "compile_s": float(result.timing.get("compile_s", float("nan")))}

    return call


def worker(method: str, n: int) -> None:
    jax.block_until_ready(jnp.ones(()) + 1)  # start the backend before any clock
    work = Workload()
    data = jt.load_digits()
    valid = (jnp.asarray(data.x_valid), jnp.asarray(data.y_valid))
    lrs = hyperoptax_learning_rates(n)
    jax.block_until_ready((work.x, work.y, valid))
    call = (_run_hyperoptax if method == "hyperoptax" else _run_jaxtune)(n, work, valid, lrs)
    out: dict[str, Any] = {"method": method, "n": n, "devices": len(jax.devices()),
                           "learning_rate": lrs.tolist()}
    with jax.default_device(jax.devices()[0]):
        for phase in ("cold", "warm"):
            with CompileLog() as compiled:
                start = time.perf_counter()
                losses, extra = call()
                out[f"{phase}_s"] = time.perf_counter() - start
            out[f"{phase}_compiles"] = len(compiled.names)
            out[f"{phase}_programs"] = sorted(set(compiled.names))
            out[f"{phase}_extra"] = extra
            out[f"{phase}_valid_loss"] = losses.tolist()
    print(WORKER_MARK + json.dumps(out), flush=True)


def run_worker(method: str, n: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", method, "--n", str(n)]
    code, out = run_json_worker(command, WORKER_MARK)  # one device: the worker's default
    if code != 0 or out is None:
        raise RuntimeError(f"the {method} worker for N={n} failed (exit code {code}).")
    return out


# --------------------------------------------------------------------------------------
# Driver and report


def _max_stable_difference(lrs: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float:
    pairs = [(x, y) for lr, x, y in zip(lrs, a, b) if lr <= STABLE_LR * (1 + 1e-6)]
    return max((abs(x - y) for x, y in pairs), default=float("nan"))


def compare(args: argparse.Namespace) -> dict:
    runs: dict[str, dict[int, list[dict]]] = {m: {n: [] for n in args.sizes} for m in METHODS}
    for repeat in range(args.repeats):
        for n in args.sizes:
            # Alternate which method goes first, so drift in machine load hits both.
            for method in (METHODS if repeat % 2 == 0 else METHODS[::-1]):
                log(f"repeat {repeat + 1}/{args.repeats}: {method}, N={n}")
                runs[method][n].append(run_worker(method, n))

    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    out = [(
        f"jaxtune.sweep vs hyperoptax {importlib.metadata.version('hyperoptax')} RandomSearch.optimize: MLP 64-128-128-10 on "
        f"digits, batch {BATCH_SIZE}, adam, {STEPS} steps, lr ~ loguniform[{LR_LOW:g}, {LR_HIGH:g}], "
        f"one device\njax {jax.__version__}, backend {jax.default_backend()}, devices per worker "
        f"{runs['jaxtune'][args.sizes[0]][0]['devices']}, medians over {args.repeats} fresh "
        f"subprocess(es), load average {load}\n"
    )]
    rows, summary = [], {}
    for n in args.sizes:
        for phase in ("cold", "warm"):
            h = statistics.median(r[f"{phase}_s"] for r in runs["hyperoptax"][n])
            j = statistics.median(r[f"{phase}_s"] for r in runs["jaxtune"][n])
            hc = statistics.median(r[f"{phase}_compiles"] for r in runs["hyperoptax"][n])
            jc = statistics.median(r[f"{phase}_compiles"] for r in runs["jaxtune"][n])
            summary[f"{n}/{phase}"] = {"hyperoptax_s": h, "jaxtune_s": j, "ratio": h / j}
            rows.append([n, phase, f"{h:.2f}", f"{j:.2f}", f"{h / j:.2f}x", f"{n * STEPS / h:,.0f}",
                         f"{n * STEPS / j:,.0f}", f"{hc:g} / {jc:g}"])
    out.append(table(
        "Wall seconds per call (median); ratio = hyperoptax / jaxtune (>1: jaxtune faster); "
        "member-steps/s = N*500/wall",
        ["N", "call", "hyperoptax_s", "jaxtune_s", "ratio", "hyperoptax m-s/s", "jaxtune m-s/s",
         "XLA compiles h / j"], rows))

    rows = []
    for n in args.sizes:
        h, j = runs["hyperoptax"][n][0], runs["jaxtune"][n][0]
        stable = sum(lr <= STABLE_LR * (1 + 1e-6) for lr in h["learning_rate"])
        diff = _max_stable_difference(h["learning_rate"], h["cold_valid_loss"], j["cold_valid_loss"])
        warm = max(_max_stable_difference(r["learning_rate"], r["cold_valid_loss"], r["warm_valid_loss"])
                   for m in METHODS for r in runs[m][n])
        best_h = float(np.nanmin(h["cold_valid_loss"]))
        best_j = float(np.nanmin(j["cold_valid_loss"]))
        rows.append([n, stable, f"{diff:.1e}", f"{warm:.1e}", f"{best_h:.4f}", f"{best_j:.4f}"])
    out.append(table(
        f"Same work: validation loss per member, hyperoptax vs jaxtune (first repeat, cold call), "
        f"over the members with lr <= {STABLE_LR:g}",
        ["N", "members compared", "max |d loss|", "max |cold - warm|", "best loss h", "best loss j"], rows))
    largest = max(args.sizes)
    for method in METHODS:
        programs = runs[method][largest][0]["warm_programs"]
        out.append(f"{method}, warm call at N={largest}, programs compiled: {', '.join(programs) or 'none'}")
    print("\n".join(out), flush=True)
    return {"summary": summary, "runs": runs}


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker:
        worker(args.worker, args.n)
        return
    start = time.perf_counter()
    results = compare(args)
    print(f"benchmark wall time {time.perf_counter() - start:.0f} s")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
