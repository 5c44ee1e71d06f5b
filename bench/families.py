"""Optimizer families in one compiled program against one static group per family.

K optimizer families (K = 2: adamw, sgd with momentum; K = 4: also lion and rmsprop)
swept over the same configurations (`--per-family` learning rates log-spaced in
[1e-3, 1e-2] per family, weight decay 1e-4, one seed) two ways:

  one program    `optimizer_choice(families)`: the family a dynamic hyperparameter,
                 every member in one compiled program, each member's update chosen
                 with `lax.switch` (under vmap: every family's update runs, one is kept);
  static groups  `jt.choice(names, static=True)` and a `make_optimizer` that builds the
                 named family: one compiled program per family, trained one after another.

Workloads: W1, the digits MLP of `jaxtune.demo` (64-128-128-10, batch 128); W2, the
Flax NNX CNN with BatchNorm of `bench/models.py` (dropout 0), when that file imports.

Printed per (workload, K, way): programs compiled and compile seconds (the first call,
`result.timing`; summed over static groups, whose compiles may overlap training), wall
seconds of the first call (cold) and of the same call again (warm: the programs come from
the process cache), member-steps per second of wall time and per CPU-second of this
process (the figure a shared machine disturbs least), and the largest difference between
the two ways' final losses (the same training: it should be rounding). Warm calls are
repeated, the two ways interleaved, and the median shown. Then the update alone,
`jit(vmap(update))` over the MLP's parameters for N members: the combined update's time
against each family's own, and the optimizer state each member carries (the union of
every family's state, against one family's).

    python bench/families.py --quick       # W1, K = 2, 4; 4 rates per family, 100 steps
    python bench/families.py               # W1 and W2, K = 2, 4; 8 per family, 300 steps
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import time

os.environ.setdefault("JAXTUNE_COMPILATION_CACHE", "0")  # every first call compiles

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _cli import add_json_option, log, parse_ints, table, write_json

import jaxtune as jt
from jaxtune.demo import cross_entropy, mlp_init
from jaxtune.families import optimizer_choice

FAMILIES = {
    "adamw": lambda learning_rate, weight_decay: optax.adamw(learning_rate,
                                                             weight_decay=weight_decay),
    "sgd": lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
    "lion": lambda learning_rate, weight_decay: optax.lion(learning_rate * 0.1,
                                                           weight_decay=weight_decay),
    "rmsprop": lambda learning_rate: optax.rmsprop(learning_rate),
}


def workload(name: str, steps: int):
    """(loss_fn, init, data, batch_size, extra space dimensions) of W1 or W2."""
    if name == "W1":
        data = jt.load_digits()
        return cross_entropy, mlp_init, (data.x_train, data.y_train), 128, {}
    import models  # bench/models.py: the workload suite's definitions

    w2 = models.digits_cnn(steps)
    return (w2.loss_fn, (w2.params, w2.model_state), w2.data, w2.batch_size,
            {"dropout": jt.choice([0.0], static=True)})


def configs(k: int, per_family: int) -> dict[str, list]:
    names = list(FAMILIES)[:k]
    rates = np.geomspace(1e-3, 1e-2, per_family).tolist()
    return {"optimizer": [n for n in names for _ in rates], "learning_rate": rates * k,
            "weight_decay": [1e-4] * (k * per_family)}


def ways(k: int, extra: dict) -> dict:
    """way -> (make_optimizer, space), each with new function objects: a cold cache."""
    families = {n: FAMILIES[n] for n in list(FAMILIES)[:k]}
    rest = {"learning_rate": jt.loguniform(1e-4, 1e-1), "weight_decay": jt.loguniform(1e-5, 1e-2),
            **extra}
    opt = optimizer_choice(families)
    return {"one program": (opt, jt.Space(optimizer=opt.dimension, **rest)),
            "static groups": (_static(families),
                              jt.Space(optimizer=jt.choice(list(families), static=True), **rest))}


def _static(families: dict):
    """A `make_optimizer` building the named family only (a static group's own optimizer)."""
    def make_optimizer(optimizer, learning_rate, weight_decay):
        factory = families[optimizer]
        wanted = inspect.signature(factory).parameters
        values = {"learning_rate": learning_rate, "weight_decay": weight_decay}
        return factory(**{k: v for k, v in values.items() if k in wanted})
    return make_optimizer


def _sweep(work, make_optimizer, space, columns, steps):
    loss_fn, init, data, batch_size, _ = work
    start, cpu = time.perf_counter(), time.process_time()
    result = jt.sweep(loss_fn, init, make_optimizer, space, data=data, batch_size=batch_size,
                      steps=steps, configs=columns, seed=0, progress=False, keep_params=False)
    return result, time.perf_counter() - start, time.process_time() - cpu


def measure(name: str, k: int, per_family: int, steps: int, repeats: int) -> list[dict]:
    """Both ways on one workload: cold once each, then `repeats` warm calls, interleaved."""
    work = workload(name, steps)
    columns = configs(k, per_family)
    columns.update({key: [dim.values[0]] * len(columns["optimizer"]) for key, dim in work[4].items()})
    n = len(columns["optimizer"])
    made = ways(k, work[4])
    records, finals = {}, {}
    warm, cpu = {way: [] for way in made}, {way: [] for way in made}
    for way, (make_optimizer, space) in made.items():
        result, wall, _ = _sweep(work, make_optimizer, space, columns, steps)
        records[way] = {"workload": name, "K": k, "way": way, "N": n,
                        "compiles": int(result.timing["compiles"]),
                        "compile_s": result.timing["compile_s"], "cold_s": wall}
        order = np.lexsort((result.hparams["learning_rate"].astype(float),
                            result.hparams["optimizer"].astype(str)))
        finals[way] = result.train_loss[order, -1]
    for _ in range(repeats):  # interleaved: the machine's load falls on both ways alike
        for way, (make_optimizer, space) in made.items():
            _, wall, seconds = _sweep(work, make_optimizer, space, columns, steps)
            warm[way].append(wall)
            cpu[way].append(seconds)
    difference = float(np.max(np.abs(finals["one program"] - finals["static groups"])))
    for way, record in records.items():
        record.update(warm_s=statistics.median(warm[way]), warm_all_s=warm[way],
                      max_final_loss_difference=difference)
        record["member_steps_per_s"] = n * steps / record["warm_s"]
        # CPU seconds of this process: the same work whatever else loads the machine
        record.update(warm_cpu_s=statistics.median(cpu[way]), warm_cpu_all_s=cpu[way])
        record["member_steps_per_cpu_s"] = n * steps / record["warm_cpu_s"]
        log(f"{name} K={k} {way}: {record}")
    return list(records.values())


def update_cost(k: int, members: int, repeats: int = 50) -> dict:
    """The update alone on the MLP's parameters for `members` members: combined vs each family."""
    params = jax.vmap(mlp_init)(jax.random.split(jax.random.key(0), members))
    grads = jax.tree_util.tree_map(lambda p: 0.01 * jnp.ones_like(p), params)
    names = list(FAMILIES)[:k]
    opt = optimizer_choice({n: FAMILIES[n] for n in names})
    index = jnp.arange(members, dtype=jnp.int32) % k
    lr, wd = jnp.full(members, 1e-3), jnp.full(members, 1e-4)

    def timed(make):
        """Median seconds of one vmapped update (the state made beforehand, not timed)."""
        state = jax.jit(jax.vmap(lambda i, lr, wd, p: make(i, lr, wd).init(p)))(
            index, lr, wd, params)

        def step(i, lr, wd, s, p, g):
            return make(i, lr, wd).update(g, s, p, value=jnp.float32(0.0))

        fn = jax.jit(jax.vmap(step))
        jax.block_until_ready(fn(index, lr, wd, state, params, grads))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(index, lr, wd, state, params, grads))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def state_floats(tx):
        return sum(x.size for x in jax.tree_util.tree_leaves(tx.init(mlp_init(jax.random.key(0))))
                   if jnp.issubdtype(x.dtype, jnp.floating))

    combined = timed(lambda i, lr, wd: opt(optimizer=i, learning_rate=lr, weight_decay=wd))
    alone = {n: timed(lambda i, lr, wd, n=n: opt._make(n, {"learning_rate": lr, "weight_decay": wd}))
             for n in names}
    return {"K": k, "members": members, "combined_s": combined, "alone_s": alone,
            "combined_over_sum": combined / sum(alone.values()),
            "combined_over_mean": combined / statistics.mean(alone.values()),
            "state_floats_union": state_floats(opt(optimizer=0, learning_rate=1e-3,
                                                   weight_decay=1e-4)),
            "state_floats_alone": {n: state_floats(opt._make(n, {"learning_rate": 1e-3,
                                                                 "weight_decay": 1e-4}))
                                   for n in names}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--families", type=parse_ints, default=(2, 4), help="K values (2,4)")
    parser.add_argument("--repeats", type=int, default=None, help="warm calls per way (3; --quick 2)")
    parser.add_argument("--workloads", default=None, help="W1 or W1,W2 (default: W1 --quick, else both)")
    add_json_option(parser)
    args = parser.parse_args()
    per_family, steps = (4, 100) if args.quick else (8, 300)
    names = (args.workloads or ("W1" if args.quick else "W1,W2")).split(",")
    repeats = args.repeats or (2 if args.quick else 3)
    rows = [r for name in names for k in args.families
            for r in measure(name, k, per_family, steps, repeats)]
    print(table(f"one program vs K static groups ({per_family} rates per family, {steps} steps)",
                ["workload", "K", "way", "N", "compiles", "compile s", "cold s", "warm s",
                 "member-steps/s (warm)", "per CPU-s", "max |final loss diff|"],
                [[r["workload"], r["K"], r["way"], r["N"], r["compiles"], f"{r['compile_s']:.1f}",
                  f"{r['cold_s']:.1f}", f"{r['warm_s']:.2f}", f"{r['member_steps_per_s']:,.0f}",
                  f"{r['member_steps_per_cpu_s']:,.0f}", f"{r['max_final_loss_difference']:.1e}"]
                 for r in rows]))
    ratios = []
    for one, static in zip(rows[::2], rows[1::2]):
        ratios.append([one["workload"], one["K"], f"{static['compiles'] / one['compiles']:.1f}x",
                       f"{one['compile_s'] / static['compile_s']:.2f}x",
                       f"{one['cold_s'] / static['cold_s']:.2f}x",
                       f"{one['member_steps_per_s'] / static['member_steps_per_s']:.2f}x",
                       f"{one['member_steps_per_cpu_s'] / static['member_steps_per_cpu_s']:.2f}x"])
    print(table("one program / static groups", ["workload", "K", "static compiles / one's",
                                                 "compile s", "cold wall", "member-steps/s (warm)",
                                                 "per CPU-s"], ratios))
    costs = [update_cost(k, per_family * k) for k in args.families]
    print(table("the update alone, jit(vmap(update)) on the MLP's parameters",
                ["K", "members", "combined ms", "each family alone ms", "combined / sum",
                 "combined / mean", "state floats: union / each"],
                [[c["K"], c["members"], f"{1e3 * c['combined_s']:.2f}",
                  " ".join(f"{n} {1e3 * s:.2f}" for n, s in c["alone_s"].items()),
                  f"{c['combined_over_sum']:.2f}", f"{c['combined_over_mean']:.2f}",
                  f"{c['state_floats_union']:,} / " + " ".join(
                      f"{v:,}" for v in c["state_floats_alone"].values())] for c in costs]))
    write_json(args.json, {"sweeps": rows, "update": costs, "per_family": per_family,
                           "steps": steps, "repeats": repeats})


if __name__ == "__main__":
    main()
