"""Hypergradients through training: forward vs reverse mode, and HyperGradient vs plain search.

Part 1, cost: `jaxtune.hypergradient.hypergradient` on the digits MLP (W1, the demo's
model: AdamW, 8 members, batch 128), for T training steps and K differentiated
hyperparameters (log learning rate; + log weight decay; + b1, Adam's momentum). Per
mode: wall-clock per call relative to the same program without a derivative (T steps
per member, then the metric), the median ratio of calls timed in pairs, and
the compiled program's temporary memory from XLA's own `memory_analysis()`. Forward
mode carries K tangents (memory flat in T); reverse mode holds every step's residuals
(memory grows with T), or a window's.

Part 2, search: on W1, the plain search (the demo's space, Sobol, full budget) vs
`HyperGradient` tuning the learning rate of a quarter as many configurations (so 1/4 of
the member-steps), each run with the same root seeds. Best validation accuracy of a
member that trained the full budget, mean ± std over repeats.

    python bench/hypergradient.py --quick     # T in 10, 40; 8 vs 2 trials x 240 steps
    python bench/hypergradient.py             # T in 10, 50, 200; 32 vs 8 trials x 500 steps
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _cli import add_json_option, log, table, write_json

import jaxtune as jt
from jaxtune.demo import cross_entropy, digits_space, evaluate, mlp_init
from jaxtune.hypergradient import _own_step, _population
from jaxtune.strategies.hypergradient import HyperGradient

MEMBERS = 8
# Adam's sqrt(nu) has an infinite derivative where nu = 0 (a unit whose gradient is exactly
# 0): optax's eps_root keeps the hypergradient finite. Both searches use it.
EPS_ROOT = 1e-12
NAMES = ("learning_rate", "weight_decay", "b1")
SCALE = (("b1", "linear"), ("learning_rate", "log"), ("weight_decay", "log"))


def make_adamw(learning_rate, weight_decay, b1):
    return optax.adamw(learning_rate, b1=b1, weight_decay=weight_decay, eps_root=EPS_ROOT)


def eval_loss(params, data):
    return evaluate(params, data)["eval_loss"]


@jax.jit
def _plain(params, opt_state, hparams, batches, valid):
    """The same program without a derivative: T steps per member, then the metric."""
    def one(p, s, h):
        step = _own_step(cross_entropy, make_adamw, h)
        (p, s), losses = jax.lax.scan(lambda c, x: step(c, x, {}), (p, s), batches)
        return eval_loss(p, valid), p, s, losses
    return jax.vmap(one)(params, opt_state, hparams)


def _seconds(fn, args, options):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args, **options))
    return time.perf_counter() - start


def _ratio(fn, args, options, base_args, repeats):
    """Median over `repeats` of fn's seconds / `_plain`'s, the two timed one after the other
    (on a loaded machine a ratio of neighbours is steadier than one of separate medians)."""
    _seconds(fn, args, options)  # compiled and warm
    pairs = [(_seconds(fn, args, options), _seconds(_plain, base_args, {}))
             for _ in range(repeats)]
    return statistics.median(a / b for a, b in pairs), statistics.median(a for a, _ in pairs)


def cost(data, steps_list, repeats):
    """Rows (T, K, mode, time / plain, temp MiB) of part 1."""
    rng = np.random.default_rng(0)
    hparams = {"learning_rate": np.full(MEMBERS, 1e-3, np.float32) * rng.uniform(0.5, 2, MEMBERS),
               "weight_decay": np.full(MEMBERS, 1e-4, np.float32),
               "b1": np.full(MEMBERS, 0.9, np.float32)}
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    params, opt_state = jt.init_population(make_adamw, mlp_init(jax.random.key(0)), hparams)
    valid = (data.x_valid, data.y_valid)
    rows, records = [], []
    for steps in steps_list:
        index = rng.integers(0, data.x_train.shape[0], (steps, 128))
        batches = (jnp.asarray(data.x_train[index]), jnp.asarray(data.y_train[index]))
        base_args = (params, opt_state, hparams, batches, valid)
        _seconds(_plain, base_args, {})  # compiled and warm
        base_mem = _plain.lower(params, opt_state, hparams, batches, valid).compile().memory_analysis()
        modes = [("forward", None), ("reverse", None), ("reverse", max(1, steps // 10))]
        for k in (1, 2, 3):
            for mode, window in modes:
                options = dict(names=NAMES[:k], scale=SCALE, mode=mode, window=window)
                args = (cross_entropy, make_adamw, eval_loss, params, opt_state, hparams,
                        batches, valid)
                ratio, seconds = _ratio(_population, args, options, base_args, repeats)
                memory = _population.lower(*args, **options).compile().memory_analysis()
                label = mode if window is None else f"reverse, window {window}"
                mib = memory.temp_size_in_bytes / 2 ** 20
                rows.append((steps, k, label, f"{ratio:.2f}x", f"{mib:.1f}",
                             f"{base_mem.temp_size_in_bytes / 2 ** 20:.1f}"))
                records.append({"steps": steps, "hyperparameters": k, "mode": label,
                                "time_vs_plain": ratio, "seconds": seconds,
                                "temp_mib": mib, "plain_temp_mib": base_mem.temp_size_in_bytes / 2 ** 20})
                log(f"T={steps} K={k} {label}: {ratio:.2f}x plain, {mib:.1f} MiB")
    return rows, records


def search(data, trials, steps, eval_every, repeats, lr, max_step):
    """Rows and records of part 2: plain search vs HyperGradient at 1/4 of its member-steps."""
    def make_optimizer(learning_rate, weight_decay):
        return optax.adamw(jt.cosine_decay_schedule(learning_rate, decay_steps=steps),
                           weight_decay=weight_decay, eps_root=EPS_ROOT)

    def run(strategy, n, seed):
        start = time.perf_counter()
        result = jt.sweep(cross_entropy, mlp_init, make_optimizer, digits_space(),
                          data=(data.x_train, data.y_train), batch_size=128, steps=steps,
                          trials=n, seed=seed, eval_every=eval_every, eval_fn=evaluate,
                          eval_data=(data.x_valid, data.y_valid), metric="accuracy",
                          mode="max", progress=False, keep_params=False, strategy=strategy)
        done = result.steps_trained == steps
        best = float(np.nanmax(np.where(done, result.final("accuracy"), np.nan)))
        return best, int(result.steps_trained.sum()), time.perf_counter() - start

    outcomes = {"plain": [], "hypergradient": []}
    for seed in range(repeats):
        outcomes["plain"].append(run(None, trials, seed))
        tuned = HyperGradient(lr=lr, every=eval_every, names=["learning_rate"],
                              metric="eval_loss", mode="min", max_step=max_step)
        outcomes["hypergradient"].append(run(tuned, max(2, trials // 4), seed))
        log(f"seed {seed}: plain {outcomes['plain'][-1][0]:.4f}, "
            f"hypergradient {outcomes['hypergradient'][-1][0]:.4f}")
    rows, records = [], {}
    base_steps = np.mean([o[1] for o in outcomes["plain"]])
    base_time = np.mean([o[2] for o in outcomes["plain"]])
    for name, runs in outcomes.items():
        accuracy = np.array([o[0] for o in runs])
        member_steps, seconds = np.mean([o[1] for o in runs]), np.mean([o[2] for o in runs])
        rows.append((name, f"{accuracy.mean():.4f} ± {accuracy.std():.4f}",
                     f"{member_steps / base_steps:.2f}x", f"{seconds / base_time:.2f}x"))
        records[name] = {"accuracy": accuracy.tolist(), "member_steps": member_steps,
                         "seconds": seconds}
    return rows, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3,
                        help="searches per method (part 2), timed pairs per cell (part 1: 3x)")
    parser.add_argument("--lr", type=float, default=4.0,
                        help="HyperGradient's step size on log learning rate")
    parser.add_argument("--max-step", type=float, default=0.5,
                        help="HyperGradient's bound on one step of log learning rate")
    parser.add_argument("--skip-cost", action="store_true")
    add_json_option(parser)
    args = parser.parse_args()
    data = jt.load_digits()
    steps_list = (10, 40) if args.quick else (10, 50, 200)
    trials, steps, eval_every = (8, 240, 30) if args.quick else (32, 500, 50)
    results = {}
    if not args.skip_cost:
        rows, results["cost"] = cost(data, steps_list, 3 * args.repeats)
        print(table(f"hypergradient cost on W1 ({MEMBERS} members): time relative to plain "
                    "training of the same T steps; XLA temporary memory",
                    ("T", "K", "mode", "time / plain", "temp MiB", "plain temp MiB"), rows))
    rows, results["search"] = search(data, trials, steps, eval_every, args.repeats, args.lr,
                                     args.max_step)
    print(table(f"W1: plain search ({trials} trials) vs HyperGradient on learning_rate "
                f"({max(2, trials // 4)} trials), {steps} steps, {args.repeats} repeats",
                ("search", "best accuracy", "member-steps", "wall-clock"), rows))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
