"""`jt.OptunaSearch` against plain Optuna on the digits MLP: throughput and search quality.

Workload: the demo MLP 64-128-128-10 on the digits training split, batch 128,
`optax.adamw` with `jt.warmup_cosine_decay_schedule(0, learning_rate, warmup_steps,
steps)`, searched over the demo's space plus a warm-up length and Adam's `b1`:

  learning_rate  loguniform(1e-4, 1e-1)     weight_decay  choice([0, 1e-4, 1e-3, 1e-2])
  warmup_steps   randint(0, steps // 4)     b1            uniform(0.8, 0.99)

Validation accuracy on the digits validation split after `steps` steps, one seed.

(a) Throughput at each of `--steps` (100 and 300 steps a trial by default),
    `--trials` trials (128 by default), the same sampler (`TPESampler(seed=0)`;
    `constant_liar=True` for the batched run) and no pruner, trials per second end to
    end (compilation included). Every way trains each trial for `steps` steps and
    evaluates it once, at the end (validation accuracy only):
      optuna          `study.optimize(objective)`, the objective building the
                      optimizer from Python floats and `jax.jit`-ing its training
                      loop (a `lax.scan`) per trial, as Optuna's docs show for any
                      framework: every trial compiles;
      optuna+traced   the strongest sequential baseline: one training function
                      compiled once, taking the hyperparameters as traced
                      arguments; every trial calls it;
      jaxtune         `jt.sweep(..., strategy=jt.OptunaSearch(study, concurrent=C),
                      eval_every=steps)`: C trials train as one vmapped population.
    Printed: jaxtune / optuna+traced (what batching buys; the issue's targets:
    >= 1.0x at 100 steps, >= 2x at 300) and jaxtune / optuna.
(b) Search quality at an equal budget of member-steps (`--quality-trials` x
    `--steps`, for each of several `--quality-trials`), best final validation
    accuracy, mean and spread over `--repeats` repeats (seeds 0, 1, ...): random
    search (`jt.sweep`, sampler="random"), TPE (`OptunaSearch`, no pruner), TPE +
    `HyperbandPruner` (`OptunaSearch` with `max_member_steps` = the budget, so
    pruning buys more trials); `OptunaSearch`'s default `concurrent` unless
    `--quality-concurrent` is given.

    python bench/vs_optuna.py            # 128 trials x 100 and 300 steps; quality 64 trials
                                         # x 300 steps, 5 repeats
    python bench/vs_optuna.py --quick    # the same throughput (the recompiling baseline:
                                         # 16 trials); quality 32 trials x 100 steps, 3 repeats
    python bench/vs_optuna.py --skip quality --steps 100,300 --json bench/results/vs_optuna.json
    python bench/vs_optuna.py --skip throughput --quality-trials 16 32 64 --quality-steps 100

Every way compiles cold: the script sets `JAXTUNE_COMPILATION_CACHE=0` (unless it is
set), since `jt.sweep` would otherwise turn JAX's persistent compilation cache on for
the whole process and a second run would load every way's programs from disk.

`--json PATH` writes the record `bench/tables.py` reads (`throughput`: the rates at the
first `--steps`; `throughput_by_steps`: every one, with the ratios).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optuna
from _cli import add_json_option, parse_ints, write_json

import jaxtune as jt
from jaxtune.demo import cross_entropy, mlp_apply, mlp_init

BATCH = 128
# The targets for jaxtune / optuna+traced, by steps a trial.
TARGETS = {100: 1.0, 300: 2.0}


def space(steps: int) -> jt.Space:
    return jt.Space(
        learning_rate=jt.loguniform(1e-4, 1e-1),
        weight_decay=jt.choice([0.0, 1e-4, 1e-3, 1e-2]),
        warmup_steps=jt.randint(0, steps // 4),
        b1=jt.uniform(0.8, 0.99),
    )


def optimizer_factory(steps: int):
    def make_optimizer(learning_rate, weight_decay, warmup_steps, b1):
        schedule = jt.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, steps)
        return optax.adamw(schedule, b1=b1, weight_decay=weight_decay)
    return make_optimizer


def suggest(trial: optuna.Trial, steps: int) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
        "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-4, 1e-3, 1e-2]),
        "warmup_steps": trial.suggest_int("warmup_steps", 0, steps // 4 - 1),
        "b1": trial.suggest_float("b1", 0.8, 0.99),
    }


def accuracy(params, data) -> dict:
    """Validation accuracy, the one metric every way evaluates."""
    x, labels = data
    return {"accuracy": jnp.mean(jnp.argmax(mlp_apply(params, x), -1) == labels)}


def sequential_trainer(data, steps: int):
    """`train(hparams...) -> accuracy`: a scan over `steps` minibatch steps, one member."""
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_valid, y_valid = jnp.asarray(data.x_valid), jnp.asarray(data.y_valid)
    make_optimizer = optimizer_factory(steps)

    def train(learning_rate, weight_decay, warmup_steps, b1):
        params = mlp_init(jax.random.key(0))
        optimizer = make_optimizer(learning_rate, weight_decay, warmup_steps, b1)

        def step(carry, key):
            params, state = carry
            rows = jax.random.randint(key, (BATCH,), 0, x.shape[0])
            grads = jax.grad(cross_entropy)(params, (x[rows], y[rows]))
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        keys = jax.random.split(jax.random.key(1), steps)
        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), keys)
        return accuracy(params, (x_valid, y_valid))["accuracy"]

    return train


def plain_optuna(data, trials: int, steps: int, traced: bool) -> float:
    """Trials per second of `study.optimize` (compiling every trial unless `traced`)."""
    train = sequential_trainer(data, steps)
    compiled = jax.jit(train)

    def objective(trial):
        hp = suggest(trial, steps)
        if traced:
            return float(compiled(**hp))
        # The docs' way: Python floats closed over by a freshly jitted function.
        return float(jax.jit(lambda: train(**hp))())

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return trials / (time.perf_counter() - start)


def jaxtune_search(data, steps: int, strategy=None, *, trials: int, seed: int = 0,
                   sampler: str = "random", eval_every: int | None = None) -> jt.SweepResult:
    """A sweep of `trials` trials; evaluated every `eval_every` steps (default: ten
    record points, which a pruner needs)."""
    return jt.sweep(cross_entropy, mlp_init, optimizer_factory(steps), space(steps),
                    data=(data.x_train, data.y_train), eval_data=(data.x_valid, data.y_valid),
                    eval_fn=accuracy, metric="accuracy", mode="max", batch_size=BATCH,
                    steps=steps, eval_every=eval_every or max(1, steps // 10), trials=trials,
                    seeds=1,
                    seed=seed, sampler=sampler, keep_params=False, progress=False,
                    strategy=strategy)


def tpe(seed: int, pruner=None) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(constant_liar=True, seed=seed)
    return optuna.create_study(direction="maximize", sampler=sampler,
                               pruner=pruner or optuna.pruners.NopPruner())


def throughput(data, trials: int, steps: int, concurrent: int, optuna_trials: int) -> dict:
    """Trials/s of every way at `steps` steps a trial, each trial evaluated once."""
    rates = {}
    start = time.perf_counter()
    search = jt.OptunaSearch(tpe(0), trials=trials, concurrent=concurrent)
    jaxtune_search(data, steps, search, trials=trials, eval_every=steps)
    rates["jaxtune"] = trials / (time.perf_counter() - start)
    rates["optuna+traced"] = plain_optuna(data, trials, steps, traced=True)
    # Every trial compiles, so its rate is the same over fewer trials.
    rates["optuna"] = plain_optuna(data, optuna_trials, steps, traced=False)
    return rates


def print_throughput(trials: int, steps: int, optuna_trials: int, rates: dict) -> dict:
    """Prints one steps' rates and ratios; returns the ratios and the target's verdict."""
    ratios = {"vs_optuna": rates["jaxtune"] / rates["optuna"],
              "vs_traced": rates["jaxtune"] / rates["optuna+traced"]}
    print(f"(a) throughput, {trials} trials x {steps} steps (the recompiling optuna: "
          f"{optuna_trials} trials), {jax.device_count()} device(s), trials/s end to end:")
    for name, rate in rates.items():
        print(f"  {name:14s} {rate:8.2f}   jaxtune is {rates['jaxtune'] / rate:5.2f}x")
    target = TARGETS.get(steps)
    if target is not None:
        ratios["target"] = target
        verdict = "PASS" if ratios["vs_traced"] >= target else "MISS"
        print(f"  target jaxtune >= {target:.1f}x optuna+traced at {steps} steps: {verdict} "
              f"({ratios['vs_traced']:.2f}x)")
    return ratios


def quality(data, trials: int, steps: int, repeats: int, concurrent: int | None) -> dict:
    budget = trials * steps
    best: dict[str, list[float]] = {"random": [], "TPE": [], "TPE+Hyperband": []}
    counts: dict[str, list[int]] = {name: [] for name in best}
    hyperband = {"min_resource": max(1, steps // 10), "max_resource": steps,
                 "reduction_factor": 3}

    def run(name: str, seed: int) -> jt.SweepResult:
        if name == "random":
            return jaxtune_search(data, steps, trials=trials, seed=seed)
        if name == "TPE":
            search = jt.OptunaSearch(tpe(seed), trials=trials, concurrent=concurrent)
            return jaxtune_search(data, steps, search, trials=trials, seed=seed)
        search = jt.OptunaSearch(tpe(seed, optuna.pruners.HyperbandPruner(**hyperband)),
                                 trials=8 * trials, concurrent=concurrent,
                                 max_member_steps=budget)
        return jaxtune_search(data, steps, search, trials=8 * trials, seed=seed)

    for seed in range(repeats):
        for name, values in best.items():
            result = run(name, seed)
            assert int(result.steps_trained.sum()) <= budget, name
            values.append(result.best.mean)
            counts[name].append(result.n_trials)
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v,
                   "trials": counts[name]} for name, v in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=128)
    parser.add_argument("--steps", type=parse_ints, default=(100, 300),
                        help="steps a trial of the throughput runs, e.g. 100,300 (default)")
    parser.add_argument("--optuna-trials", type=int, default=None,
                        help="trials of the recompiling baseline (default: --trials; "
                             "16 with --quick: each compiles, so its rate does not change)")
    parser.add_argument("--concurrent", type=int, default=32)
    parser.add_argument("--quality-trials", type=int, nargs="+", default=None)
    parser.add_argument("--quality-steps", type=int, default=None,
                        help="steps a trial in (b) (default 300; --quick: 100)")
    parser.add_argument("--quality-concurrent", type=int, default=None,
                        help="OptunaSearch's `concurrent` in (b) (default: its own)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip", choices=["throughput", "quality"], default=None)
    parser.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                        help="CPU cores exposed as devices for jaxtune (default: all)")
    add_json_option(parser)
    args = parser.parse_args()
    os.environ.setdefault("JAXTUNE_COMPILATION_CACHE", "0")  # cold, every way (docstring)
    jt.use_cpu_devices(args.cpu_devices)  # how a sweep uses every core (docs/guide/devices.md)
    quality_steps = args.quality_steps or (100 if args.quick else 300)
    quality_trials = args.quality_trials or [32 if args.quick else 64]
    repeats = args.repeats or (3 if args.quick else 5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = jt.load_digits()
    out: dict = {"trials": args.trials, "steps": list(args.steps), "devices": jax.device_count()}
    if args.skip != "throughput":
        optuna_trials = args.optuna_trials or (16 if args.quick else args.trials)
        out["optuna_trials"] = optuna_trials
        for steps in args.steps:
            rates = throughput(data, args.trials, steps, args.concurrent, optuna_trials)
            ratios = print_throughput(args.trials, steps, optuna_trials, rates)
            out.setdefault("throughput", rates)  # the first steps: what tables.py quotes
            out.setdefault("throughput_by_steps", {})[steps] = {"trials_per_s": rates, **ratios}
    for n in quality_trials if args.skip != "quality" else []:
        scores = quality(data, n, quality_steps, repeats, args.quality_concurrent)
        out.setdefault("quality", {})[n] = scores
        print(f"(b) best validation accuracy at {n} x {quality_steps} member-steps, "
              f"{repeats} repeats (mean +- std; trials run):", flush=True)
        for name, s in scores.items():
            print(f"  {name:14s} {s['mean']:.4f} +- {s['std']:.4f}   trials {s['trials']}")
    write_json(args.json, out)


if __name__ == "__main__":
    main()
