"""How fast is `jaxtune.sweep`? Side by side with three hand-written baselines.

Workload (fixed): the demo MLP 64-128-128-10 on the digits training split, batch
128, `optax.adam(learning_rate)`, 500 steps, N learning rates log-spaced in
[1e-4, 1e-1], one seed, no evaluation (only training is timed).

Methods, all training the same model from the same initial parameters on the
same minibatches (one permutation of the examples per epoch, drawn with
`jax.random` exactly as jaxtune draws them, so every method computes the same
losses up to rounding):

  jaxtune  `jaxtune.sweep(..., configs={"learning_rate": lrs}, progress=False)`
           on one device; every call compiles its own programs, so each repeat
           pays compile again and its compile time is its own.
  A        a Python loop over learning rates: `optax.adam(lr)` with a Python
           float, a `jax.jit` train step closed over it (one compile per lr),
           500 Python-level steps per lr.
  B        one compiled `lax.scan` over 500 steps with a traced `lr` argument,
           called once per lr (one compile).
  C        `jit(vmap(...))` of B's function over all lrs at once (one compile).

Compile time counts tracing, lowering, XLA compilation and one warm-up call; run
time is the median of up to `--repeats` timed runs (fewer once the runs so far
took `--repeat-budget` seconds), each ended by `jax.block_until_ready`.
Every baseline's compile time includes compiling the parameter initialisation,
which jaxtune compiles as its `init` program.

Also measured in the same run: jaxtune with the members sharded over 2 host
devices (in a subprocess started with `jaxtune.use_cpu_devices(2)`, so this
process stays on one device); the programs jaxtune compiled; the float32
matmul ceiling of this machine and each method's throughput as a fraction of
it; and, with `--slice-sizes`, jaxtune's throughput per `members_per_slice`.

    python bench/sweep_speed.py                       # the full table (N = 8, 32, 128)
    python bench/sweep_speed.py --quick               # N = 8, 32, one repeat
    python bench/sweep_speed.py --slice-sizes 1,2,4,8,16,32
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

# Importing starts no JAX backend, so the sharded worker can still choose its
# device count with `jaxtune.use_cpu_devices` before it computes anything.
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _cli import CompileLog, log, parse_ints, run_json_worker, table, write_json
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxtune as jt
from jaxtune.demo import LAYER_SIZES, cross_entropy, mlp_init
from jaxtune.engine import default_eval_every

sweep_module = importlib.import_module("jaxtune.sweep")  # `jaxtune.sweep` is also the function

STEPS = 500
BATCH_SIZE = 128
LR_LOW, LR_HIGH = 1e-4, 1e-1
SEED = 0
# Above this learning rate training is chaotic: float rounding (vmap vs loop) changes the
# trajectory, so the same-work check compares final losses only at or below it.
STABLE_LR = 1e-2
DEFAULT_SIZES = (8, 32, 128)
QUICK_SIZES = (8, 32)
SHARDED_DEVICES = 2
SLICE_MODE_SIZES = (32, 128)
SHARDED_TARGET = 4000.0  # member-steps/s at N=128 over 2 host devices
A_END_TO_END_TARGET = 5.0  # jaxtune vs A, total time, at N=32
RECORD_EVERY = default_eval_every(STEPS)  # jaxtune's chunk: its train_loss averages these steps
WORKER_MARK = "SWEEP_SPEED_JSON "


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark jaxtune.sweep against hand-written JAX baselines (see module docstring).",
    )
    parser.add_argument("--sizes", type=parse_ints, default=None,
                        help="population sizes N (default 8,32,128; with --slice-sizes: 32,128)")
    parser.add_argument("--quick", action="store_true",
                        help="N = 8,32 and one repeat per measurement (a check that the script runs)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="at most this many timed runs per measurement, median reported (default 3; --quick: 1)")
    parser.add_argument("--repeat-budget", type=float, default=20.0,
                        help="stop repeating a measurement once its runs took this many seconds (default 20)")
    parser.add_argument("--a-max", type=int, default=32,
                        help="largest N for baseline A (one compile per lr); larger N print 'skipped' (default 32)")
    parser.add_argument("--no-sharded", action="store_true", help="skip the 2-device subprocess")
    parser.add_argument("--slice-sizes", type=parse_ints, default=None,
                        help="instead of the comparison, measure jaxtune per members_per_slice "
                             "(members per device per slice), e.g. 1,2,4,8,16,32")
    parser.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    parser.add_argument("--sharded-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=SHARDED_DEVICES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive int, got {args.repeats}")
    if args.sizes is None:
        args.sizes = SLICE_MODE_SIZES if args.slice_sizes else (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    return args


# --------------------------------------------------------------------------------------
# Measurement helpers


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _repeat(run: Callable[[], dict], repeats: int, budget: float) -> list[dict]:
    """Calls `run()` up to `repeats` times, stopping once the runs took `budget` seconds."""
    results: list[dict] = []
    spent = 0.0
    while len(results) < repeats and (not results or spent < budget):
        start = time.perf_counter()
        results.append(run())
        spent += time.perf_counter() - start
    return results


def flops_per_member_step(layer_sizes: Sequence[int]) -> float:
    """Forward + backward FLOPs of the MLP's matmuls for one batch: 3 x 2 x batch x sum(m n)."""
    return 3.0 * 2.0 * BATCH_SIZE * sum(m * n for m, n in zip(layer_sizes[:-1], layer_sizes[1:]))


def matmul_ceiling(devices: Sequence[Any], trials: int = 3, min_seconds: float = 0.2) -> dict:
    """Best float32 FLOP/s of a jitted [128k, 128] @ [128, 128] per device, over k and trials.

    A ceiling is a best case, so each k keeps its fastest of `trials` timings
    (each at least `min_seconds` long): a busy machine lowers some, not all.

    With several devices the rows are sharded over them (`shard_map`), so the
    ceiling is that of the whole device set, as the sharded sweep uses it.
    """
    mesh = Mesh(np.array(list(devices)), ("d",))
    matmul = jax.jit(jax.shard_map(lambda a, b: a @ b, mesh=mesh, in_specs=(P("d"), P()),
                                   out_specs=P("d"), check_vma=False))
    per_k = {}
    for k in (1, 2, 4, 8, 32, 128):
        rows = 128 * k * len(devices)
        x = jax.device_put(jnp.ones((rows, 128), jnp.float32), NamedSharding(mesh, P("d")))
        y = jax.device_put(jnp.ones((128, 128), jnp.float32), NamedSharding(mesh, P()))
        jax.block_until_ready(matmul(x, y))
        best = 0.0
        for _ in range(trials):
            calls, start = 0, time.perf_counter()
            while True:
                jax.block_until_ready([matmul(x, y) for _ in range(8)])
                calls += 8
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            best = max(best, 2.0 * rows * 128 * 128 * calls / elapsed)
        per_k[k] = best
    best = max(per_k, key=per_k.get)
    return {"flops": per_k[best], "best_k": best, "per_k": per_k, "devices": len(devices)}


# --------------------------------------------------------------------------------------
# The workload and the four methods


class Workload:
    """Data, initial-parameter key and minibatch key shared by every method."""

    def __init__(self):
        data = jt.load_digits()
        self.x_host, self.y_host = data.x_train, data.y_train
        self.x, self.y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
        self.num_examples = int(data.x_train.shape[0])
        self.layer_sizes = LAYER_SIZES
        # jaxtune's derivation for seed index 0 of `seed=SEED` (population.Trainer):
        # split the root in (init, data order, step keys), fold in the seed index,
        # and draw epoch e's permutation from fold_in(data_key, e).
        init_root, data_root, _ = jax.random.split(jax.random.key(SEED), 3)
        self.init_key = jax.random.fold_in(init_root, 0)
        self.data_key = jax.random.fold_in(data_root, 0)

    def batch_indices(self, data_key):
        """[STEPS, BATCH_SIZE] example indices: consecutive slices of one permutation per epoch."""
        per_epoch = self.num_examples // BATCH_SIZE
        epochs = -(-STEPS // per_epoch)
        orders = jax.vmap(
            lambda e: jax.random.permutation(jax.random.fold_in(data_key, e), self.num_examples)
        )(jnp.arange(epochs))
        t = jnp.arange(STEPS)
        columns = (t % per_epoch)[:, None] * BATCH_SIZE + jnp.arange(BATCH_SIZE)
        return orders[(t // per_epoch)[:, None], columns]


def learning_rates(n: int) -> np.ndarray:
    return np.geomspace(LR_LOW, LR_HIGH, n).astype(np.float32)


def _last_chunk_loss(losses) -> np.ndarray:
    """Mean training loss over the last chunk of steps, as jaxtune records it."""
    return np.asarray(losses)[..., -RECORD_EVERY:].mean(axis=-1)


def run_jaxtune(work: Workload, n: int, devices, members_per_slice: int | None = None) -> dict:
    """One `jaxtune.sweep` call; compile and run times from its own clock."""

    def make_optimizer(learning_rate):
        return optax.adam(learning_rate)

    space = jt.Space(learning_rate=jt.loguniform(LR_LOW, LR_HIGH))
    with CompileLog() as compiled:
        start = time.perf_counter()
        result = jt.sweep(
            cross_entropy, mlp_init, make_optimizer, space,
            data=(work.x_host, work.y_host), batch_size=BATCH_SIZE, steps=STEPS,
            configs={"learning_rate": learning_rates(n)}, seeds=1, seed=SEED,
            members_per_slice=members_per_slice, devices=devices, progress=False,
        )
        total = time.perf_counter() - start
    compile_s = float(result.timing["compile_s"])
    names = Counter(compiled.names)
    return {
        "compile_s": compile_s,
        "run_s": total - compile_s,
        "total_s": total,
        "engine_compiles": int(result.timing["compiles"]),
        "xla_compiles": dict(names),
        "train_programs": sum(c for name, c in names.items() if "train" in name),
        "init_programs": sum(c for name, c in names.items() if "init" in name),
        "eval_programs": sum(c for name, c in names.items() if "eval" in name),
        "final_loss": result.train_loss[:, -1].tolist(),
        "diverged": int(result.diverged.sum()),
    }


def _baseline_functions(work: Workload):
    """B's and C's functions, fresh so nothing is cached: init, and the 500-step scan."""

    def train(params, learning_rate, data_key, x, y):
        optimizer = optax.adam(learning_rate)
        indices = work.batch_indices(data_key)

        def step(carry, batch_indices):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(cross_entropy)(params, (x[batch_indices], y[batch_indices]))
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), indices)
        return params, losses

    return (lambda key: mlp_init(key)), train


def _compile_timed(fn, *args):
    """AOT-compiles `jit(fn)` for `args` and runs it once (warm-up); returns (compiled, seconds)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    return compiled, time.perf_counter() - start


def measure_b(work: Workload, n: int, repeats: int, budget: float) -> dict:
    """B: one compiled scan with a traced learning rate, called once per lr."""
    init, train = _baseline_functions(work)
    init_c, init_s = _compile_timed(init, work.init_key)
    params = init_c(work.init_key)
    train_c, train_s = _compile_timed(train, params, jnp.float32(LR_LOW), work.data_key, work.x, work.y)
    lrs = [jnp.float32(lr) for lr in learning_rates(n)]

    def run():
        start = time.perf_counter()
        params = init_c(work.init_key)
        outs = [train_c(params, lr, work.data_key, work.x, work.y) for lr in lrs]
        jax.block_until_ready(outs)
        return {"run_s": time.perf_counter() - start, "losses": [o[1] for o in outs]}

    runs = _repeat(run, repeats, budget)
    return _summary(init_s + train_s, runs, jnp.stack(runs[-1]["losses"]))


def measure_c(work: Workload, n: int, repeats: int, budget: float) -> dict:
    """C: jit(vmap(scan)) over every lr at once."""
    init, train = _baseline_functions(work)
    init_c, init_s = _compile_timed(init, work.init_key)
    params = init_c(work.init_key)
    lrs = jnp.asarray(learning_rates(n))
    batched = jax.vmap(train, in_axes=(None, 0, None, None, None))
    train_c, train_s = _compile_timed(batched, params, lrs, work.data_key, work.x, work.y)

    def run():
        start = time.perf_counter()
        params = init_c(work.init_key)
        out = train_c(params, lrs, work.data_key, work.x, work.y)
        jax.block_until_ready(out)
        return {"run_s": time.perf_counter() - start, "losses": out[1]}

    runs = _repeat(run, repeats, budget)
    return _summary(init_s + train_s, runs, runs[-1]["losses"])


def _a_step(optimizer: optax.GradientTransformation) -> Callable:
    """A's train step, closed over an optimizer built from a Python-float learning rate."""

    def step(params, opt_state, x, y, indices, t):
        batch_indices = indices[t]
        loss, grads = jax.value_and_grad(cross_entropy)(params, (x[batch_indices], y[batch_indices]))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def measure_a(work: Workload, n: int, repeats: int, budget: float) -> dict:
    """A: Python loop over lrs, a jitted step closed over a Python-float lr, per-step dispatch."""
    start = time.perf_counter()
    init = jax.jit(lambda key: mlp_init(key))
    indices_fn = jax.jit(work.batch_indices)
    params0 = jax.block_until_ready(init(work.init_key))
    indices = jax.block_until_ready(indices_fn(work.data_key))
    compile_s = time.perf_counter() - start

    steps = []  # (optimizer, jitted step) per lr, compiled and warmed up
    for lr in learning_rates(n):
        optimizer = optax.adam(float(lr))
        start = time.perf_counter()
        jitted = jax.jit(_a_step(optimizer))
        jax.block_until_ready(jitted(params0, optimizer.init(params0), work.x, work.y, indices, 0))
        compile_s += time.perf_counter() - start
        steps.append((optimizer, jitted))

    def run():
        start = time.perf_counter()
        params0 = init(work.init_key)
        indices = indices_fn(work.data_key)
        finals, tails = [], []
        for optimizer, jitted in steps:
            params, opt_state, tail = params0, optimizer.init(params0), []
            for t in range(STEPS):
                params, opt_state, loss = jitted(params, opt_state, work.x, work.y, indices, t)
                if t >= STEPS - RECORD_EVERY:
                    tail.append(loss)
            finals.append(params)
            tails.append(tail)
        jax.block_until_ready((finals, tails))
        return {"run_s": time.perf_counter() - start, "losses": tails}

    runs = _repeat(run, repeats, budget)
    losses = np.asarray([[float(v) for v in tail] for tail in runs[-1]["losses"]])
    return _summary(compile_s, runs, losses)


def _summary(compile_s: float, runs: list[dict], losses) -> dict:
    run_s = _median([r["run_s"] for r in runs])
    return {
        "compile_s": compile_s,
        "run_s": run_s,
        "total_s": compile_s + run_s,
        "repeats": len(runs),
        "final_loss": _last_chunk_loss(losses).tolist(),
    }


def measure_jaxtune(work: Workload, n: int, devices, repeats: int, budget: float,
                    members_per_slice: int | None = None) -> dict:
    runs = _repeat(lambda: run_jaxtune(work, n, devices, members_per_slice), repeats, budget)
    out = {key: _median([r[key] for r in runs]) for key in ("compile_s", "run_s", "total_s")}
    out.update(
        repeats=len(runs),
        final_loss=runs[-1]["final_loss"],
        diverged=runs[-1]["diverged"],
        calls=[{k: r[k] for k in ("engine_compiles", "xla_compiles", "train_programs",
                                  "init_programs", "eval_programs")} for r in runs],
    )
    return out


def _stable(n: int, losses: Sequence[float]) -> list[float]:
    return [loss for lr, loss in zip(learning_rates(n), losses) if lr <= STABLE_LR * (1 + 1e-6)]


def _max_difference(n: int, a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(x - y) for x, y in zip(_stable(n, a), _stable(n, b)))


def _throughput(n: int, run_s: float) -> float:
    return n * STEPS / run_s


# --------------------------------------------------------------------------------------
# The sharded worker (its own process, started with jaxtune.use_cpu_devices(n))


def sharded_worker(args: argparse.Namespace) -> None:
    jt.use_cpu_devices(args.devices)
    devices = jax.devices()
    if len(devices) != args.devices:
        raise RuntimeError(f"the sharded worker asked for {args.devices} devices, JAX has {len(devices)}.")
    work = Workload()
    out: dict[str, Any] = {"devices": len(devices), "ceiling": matmul_ceiling(devices), "sweeps": {}}
    for n in args.sizes:
        for per_device in args.slice_sizes or (None,):
            per_slice = None if per_device is None else per_device * len(devices)
            log(f"sharded x{len(devices)}: jaxtune N={n} members_per_slice={per_slice or 'default'}")
            result = measure_jaxtune(work, n, devices, args.repeats, args.repeat_budget, per_slice)
            out["sweeps"][f"{n}/{per_device or 'default'}"] = result
    print(WORKER_MARK + json.dumps(out), flush=True)


def run_sharded(args: argparse.Namespace, sizes: Sequence[int]) -> dict | None:
    command = [sys.executable, os.path.abspath(__file__), "--sharded-worker",
               "--devices", str(SHARDED_DEVICES), "--sizes", ",".join(map(str, sizes)),
               "--repeats", str(args.repeats), "--repeat-budget", str(args.repeat_budget)]
    if args.slice_sizes:
        command += ["--slice-sizes", ",".join(map(str, args.slice_sizes))]
    log("starting the sharded worker: " + " ".join(command[1:]))
    code, out = run_json_worker(command, WORKER_MARK)  # the worker sets its own device count
    if code != 0 or out is None:
        log(f"the sharded worker failed (exit code {code}); sharded rows are missing.")
        return None
    return out


# --------------------------------------------------------------------------------------
# Reporting


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _header() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"jaxtune sweep benchmark: MLP 64-128-128-10 on digits, batch {BATCH_SIZE}, adam, {STEPS} steps, "
        f"lr log-spaced in [{LR_LOW:g}, {LR_HIGH:g}]\n"
        f"jax {jax.__version__}, optax {optax.__version__}, backend "
        f"{jax.default_backend()}, {cores} cores usable, load average "
        f"{' '.join(f'{v:.2f}' for v in load)}\n"
    )


def _ceiling_section(ceilings: list[dict], flops_step: float) -> str:
    rows = []
    for c in ceilings:
        per_k = ", ".join(f"k={k}: {v / 1e9:.1f}" for k, v in c["per_k"].items())
        rows.append([f"{c['devices']} device(s)", f"{c['flops'] / 1e9:.1f}", per_k,
                     _rate(c["flops"] / flops_step)])
    return table(
        f"float32 matmul ceiling: jit([128k*D, 128] @ [128, 128]); MLP forward+backward = "
        f"{flops_step / 1e6:.2f} MFLOP per member-step",
        ["devices", "GFLOP/s (best)", "GFLOP/s per k", "ceiling member-steps/s"], rows,
    )


def comparison(args: argparse.Namespace) -> dict:
    log(f"JAX devices in this process: {jax.devices()}; one-device runs use {jax.devices()[0]}")
    one_device = jax.devices()[:1]
    work = Workload()
    flops_step = flops_per_member_step(work.layer_sizes)
    log("measuring the matmul ceiling")
    ceiling = matmul_ceiling(one_device)
    results: dict[str, Any] = {"sizes": list(args.sizes), "ceiling": ceiling, "methods": {}}

    for n in args.sizes:
        row: dict[str, Any] = {}
        log(f"N={n}: jaxtune")
        row["jaxtune"] = measure_jaxtune(work, n, one_device, args.repeats, args.repeat_budget)
        if n <= args.a_max:
            log(f"N={n}: A (python loop, {n} compiles)")
            row["A"] = measure_a(work, n, args.repeats, args.repeat_budget)
        else:
            row["A"] = None
        log(f"N={n}: B (scan, sequential)")
        row["B"] = measure_b(work, n, args.repeats, args.repeat_budget)
        log(f"N={n}: C (jit(vmap(scan)))")
        row["C"] = measure_c(work, n, args.repeats, args.repeat_budget)
        results["methods"][n] = row

    sharded = None if args.no_sharded else run_sharded(args, [max(args.sizes)])
    results["sharded"] = sharded

    # ---- report
    out = [_header(), _ceiling_section([ceiling] + ([sharded["ceiling"]] if sharded else []), flops_step)]
    labels = {"jaxtune": "jaxtune.sweep", "A": "A python loop", "B": "B scan, sequential",
              "C": "C jit(vmap(scan))"}
    ceiling_rate = ceiling["flops"] / flops_step
    rows = []
    for n, row in results["methods"].items():
        for method in ("jaxtune", "A", "B", "C"):
            m = row[method]
            if m is None:
                rows.append([n, labels[method], "skipped", "", "", "", "", "", ""])
                continue
            rate = _throughput(n, m["run_s"])
            rows.append([n, labels[method], _f(m["compile_s"]), _f(m["run_s"]), _f(m["total_s"]),
                         _rate(rate), f"{100 * rate / ceiling_rate:.1f}%", m["repeats"],
                         f"{statistics.fmean(_stable(n, m['final_loss'])):.5f}"])
    out.append(table(
        "One device: compile (trace+lower+XLA+warm-up), run (median), member-steps/s = N*500/run",
        ["N", "method", "compile_s", "run_s", "total_s", "member-steps/s", "of ceiling", "runs",
         f"loss, lr<={STABLE_LR:g}"], rows,
    ))

    rows = []
    for n, row in results["methods"].items():
        jt_run, jt_total = row["jaxtune"]["run_s"], row["jaxtune"]["total_s"]
        for method in ("A", "B", "C"):
            m = row[method]
            if m is None:
                rows.append([n, f"jaxtune vs {method}", "skipped", "skipped", "-"])
                continue
            diff = _max_difference(n, row["jaxtune"]["final_loss"], m["final_loss"])
            rows.append([n, f"jaxtune vs {method}", f"{m['run_s'] / jt_run:.2f}x",
                         f"{m['total_s'] / jt_total:.2f}x", f"{diff:.1e}"])
    out.append(table(
        f"Ratios (>1: jaxtune faster); same-work check: max |d loss| = largest difference in "
        f"final loss (mean of the last {RECORD_EVERY} steps) over the members with lr <= {STABLE_LR:g}",
        ["N", "pair", "throughput (run)", "end-to-end (total)", "max |d loss|"], rows,
    ))

    rows = []
    for n, row in results["methods"].items():
        for i, call in enumerate(row["jaxtune"]["calls"]):
            others = {k: v for k, v in call["xla_compiles"].items()
                      if not any(s in k for s in ("train", "init", "eval"))}
            rows.append([n, i + 1, call["engine_compiles"], call["train_programs"], call["init_programs"],
                         call["eval_programs"], sum(others.values()),
                         ", ".join(f"{k} x{v}" for k, v in sorted(others.items())) or "-"])
    out.append(table(
        "jaxtune compiles per sweep call (one population shape per call): timing['compiles'] and "
        "XLA compilations seen",
        ["N", "call", "timing['compiles']", "train", "init", "eval", "other XLA", "other programs"], rows,
    ))

    if sharded:
        n = max(args.sizes)
        s = sharded["sweeps"][f"{n}/default"]
        one = results["methods"][n]["jaxtune"]
        rate2, rate1 = _throughput(n, s["run_s"]), _throughput(n, one["run_s"])
        rate_b = _throughput(n, results["methods"][n]["B"]["run_s"])
        rate_c = _throughput(n, results["methods"][n]["C"]["run_s"])
        ceiling2 = sharded["ceiling"]["flops"] / flops_step
        diff = _max_difference(n, s["final_loss"], one["final_loss"])
        rows = [
            [n, "jaxtune, 1 device", _f(one["compile_s"]), _f(one["run_s"]), _rate(rate1), "1.00x",
             f"{rate1 / rate_b:.2f}x", f"{100 * rate1 / ceiling_rate:.1f}% (1 dev)"],
            [n, f"jaxtune, {sharded['devices']} devices", _f(s["compile_s"]), _f(s["run_s"]), _rate(rate2),
             f"{rate2 / rate1:.2f}x", f"{rate2 / rate_b:.2f}x", f"{100 * rate2 / ceiling2:.1f}% ({sharded['devices']} dev)"],
        ]
        out.append(table(
            f"Sharded over {sharded['devices']} host devices (subprocess); C at this N: {_rate(rate_c)} "
            f"member-steps/s; max |d loss| sharded vs 1 device: {diff:.1e}",
            ["N", "run", "compile_s", "run_s", "member-steps/s", "vs 1 device", "vs B", "of ceiling"], rows,
        ))
        results["sharded_calls"] = s["calls"]

    out.append(_targets(results))
    print("\n".join(out), flush=True)
    return results


def _targets(results: dict) -> str:
    lines = ["targets", "-------"]
    methods = results["methods"]

    detail, ok = [], True
    for n, row in methods.items():
        jt_rate = _throughput(n, row["jaxtune"]["run_s"])
        best = max(_throughput(n, row["B"]["run_s"]), _throughput(n, row["C"]["run_s"]))
        ok &= jt_rate >= best
        detail.append(f"N={n}: {jt_rate:,.0f} vs {best:,.0f}")
    lines.append(f"{'PASS' if ok else 'MISS'}  jaxtune >= max(B, C) throughput at every N, one device "
                 f"({'; '.join(detail)})")

    sharded = results.get("sharded")
    key = "128/default"
    if sharded and key in sharded["sweeps"]:
        rate = _throughput(128, sharded["sweeps"][key]["run_s"])
        lines.append(f"{'PASS' if rate >= SHARDED_TARGET else 'MISS'}  sharded >= {SHARDED_TARGET:,.0f} "
                     f"member-steps/s at N=128 ({rate:,.0f})")
    else:
        lines.append(f"n/a   sharded >= {SHARDED_TARGET:,.0f} member-steps/s at N=128 (not measured)")

    row = methods.get(32)
    if row and row["A"] is not None:
        ratio = row["A"]["total_s"] / row["jaxtune"]["total_s"]
        lines.append(f"{'PASS' if ratio >= A_END_TO_END_TARGET else 'MISS'}  jaxtune >= "
                     f"{A_END_TO_END_TARGET:g}x A end-to-end at N=32 ({ratio:.2f}x: "
                     f"{row['A']['total_s']:.1f} s vs {row['jaxtune']['total_s']:.1f} s)")
    else:
        lines.append(f"n/a   jaxtune >= {A_END_TO_END_TARGET:g}x A end-to-end at N=32 (not measured)")

    calls = [c for row in methods.values() for c in row["jaxtune"]["calls"]]
    calls += results.get("sharded_calls", [])
    trains = sorted({c["train_programs"] for c in calls})
    ok = trains == [1]
    lines.append(f"{'PASS' if ok else 'MISS'}  exactly one train compile per population shape "
                 f"(train programs per sweep call: {trains}, over {len(calls)} calls)")
    return "\n".join(lines) + "\n"


def slice_mode(args: argparse.Namespace) -> dict:
    one_device = jax.devices()[:1]
    work = Workload()
    flops_step = flops_per_member_step(work.layer_sizes)
    log("measuring the matmul ceiling")
    ceiling = matmul_ceiling(one_device)
    measured: dict[str, Any] = {}
    for n in args.sizes:
        for per_device in (*args.slice_sizes, None):
            log(f"1 device: jaxtune N={n} members_per_slice={per_device or 'default'}")
            measured[f"{n}/{per_device or 'default'}"] = measure_jaxtune(
                work, n, one_device, args.repeats, args.repeat_budget, per_device)
    sharded = None if args.no_sharded else run_sharded(args, args.sizes)

    default = sweep_module.CPU_MEMBERS_PER_DEVICE
    headers = ["members/device/slice"]
    for n in args.sizes:
        headers += [f"N={n} 1 dev"]
    if sharded:
        for n in args.sizes:
            headers += [f"N={n} {sharded['devices']} dev"]
    rows = []
    for per_device in args.slice_sizes:
        label = f"{per_device}" + (" (default)" if per_device == default else "")
        row = [label]
        for n in args.sizes:
            row.append(_rate(_throughput(n, measured[f"{n}/{per_device}"]["run_s"])))
        if sharded:
            for n in args.sizes:
                row.append(_rate(_throughput(n, sharded["sweeps"][f"{n}/{per_device}"]["run_s"])))
        rows.append(row)
    row = ["auto (sweep default)"] + [_rate(_throughput(n, measured[f"{n}/default"]["run_s"])) for n in args.sizes]
    if sharded:
        row += ["-"] * len(args.sizes)
    rows.append(row)
    out = [_header(), _ceiling_section([ceiling] + ([sharded["ceiling"]] if sharded else []), flops_step),
           table(f"jaxtune member-steps/s by members_per_slice (members per device; "
                  f"CPU_MEMBERS_PER_DEVICE = {default}); run time, compile excluded",
                  headers, rows)]

    rows = []
    for n in args.sizes:
        for per_device in args.slice_sizes:
            m = measured[f"{n}/{per_device}"]
            rows.append([n, per_device, "1", _f(m["compile_s"]), _f(m["run_s"]), m["repeats"]])
            if sharded:
                s = sharded["sweeps"][f"{n}/{per_device}"]
                rows.append([n, per_device, str(sharded["devices"]), _f(s["compile_s"]), _f(s["run_s"]),
                             s["repeats"]])
    out.append(table("Times behind the table above", ["N", "members/device", "devices", "compile_s",
                                                        "run_s", "runs"], rows))
    best = []
    for n in args.sizes:
        rates = {p: _throughput(n, measured[f"{n}/{p}"]["run_s"]) for p in args.slice_sizes}
        top = max(rates, key=rates.get)
        best.append(f"N={n}, 1 device: best {top} ({rates[top]:,.0f}; default {default}: "
                    f"{rates.get(default, float('nan')):,.0f})")
        if sharded:
            rates = {p: _throughput(n, sharded["sweeps"][f"{n}/{p}"]["run_s"]) for p in args.slice_sizes}
            top = max(rates, key=rates.get)
            best.append(f"N={n}, {sharded['devices']} devices: best {top} per device ({rates[top]:,.0f}; "
                        f"default {default}: {rates.get(default, float('nan')):,.0f})")
    out.append("best members_per_slice per device\n" + "\n".join(best) + "\n")
    print("\n".join(out), flush=True)
    return {"ceiling": ceiling, "one_device": measured, "sharded": sharded}


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.sharded_worker:
        sharded_worker(args)
        return
    start = time.perf_counter()
    results = slice_mode(args) if args.slice_sizes else comparison(args)
    elapsed = time.perf_counter() - start
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"benchmark wall time {elapsed:.0f} s; load average at the end {load}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
