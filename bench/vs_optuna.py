"""`jt.OptunaSearch` against plain Optuna on the digits MLP: throughput and search quality.

Workload: the demo MLP 64-128-128-10 on the digits training split, batch 128,
`optax.adamw` with `jt.warmup_cosine_decay_schedule(0, learning_rate, warmup_steps,
steps)`, searched over the demo's space plus a warm-up length and Adam's `b1`:

  learning_rate  loguniform(1e-4, 1e-1)     weight_decay  choice([0, 1e-4, 1e-3, 1e-2])
  warmup_steps   randint(0, steps // 4)     b1            uniform(0.8, 0.99)

Validation accuracy on the digits validation split after `steps` steps, one seed.

(a) Throughput, `--trials` trials (>= 128 by default) of `--steps` steps, the same
    sampler (`TPESampler(seed=0)`; `constant_liar=True` for the batched run) and no
    pruner, trials per second end to end (compilation included):
      optuna          `study.optimize(objective)`, the objective building the
                      optimizer from Python floats and `jax.jit`-ing its training
                      loop (a `lax.scan`) per trial, as Optuna's docs show for any
                      framework: every trial compiles;
      optuna+traced   the strongest sequential baseline: one training function
                      compiled once, taking the hyperparameters as traced
                      arguments; every trial calls it;
      jaxtune         `jt.sweep(..., strategy=jt.OptunaSearch(study, concurrent=C))`:
                      C trials train as one vmapped population.
    optuna / optuna+traced shows what not recompiling buys; optuna+traced /
    jaxtune what batching buys.
(b) Search quality at an equal budget of member-steps (`--quality-trials` x
    `--steps`, for each of several `--quality-trials`), best final validation
    accuracy, mean and spread over `--repeats` repeats (seeds 0, 1, ...): random
    search (`jt.sweep`, sampler="random"), TPE (`OptunaSearch`, no pruner), TPE +
    `HyperbandPruner` (`OptunaSearch` with `max_member_steps` = the budget, so
    pruning buys more trials); `OptunaSearch`'s default `concurrent` unless
    `--quality-concurrent` is given.

    python bench/vs_optuna.py            # 128 trials x 300 steps; quality 64 trials, 5 repeats
    python bench/vs_optuna.py --quick    # 128 trials x 100 steps (the recompiling baseline:
                                         # 16); quality 32 trials, 3 repeats
    python bench/vs_optuna.py --skip throughput --quality-trials 16 32 64 --steps 100
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optuna

import jaxtune as jt
from jaxtune.demo import cross_entropy, evaluate, mlp_apply, mlp_init

BATCH = 128


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
        return jnp.mean(jnp.argmax(mlp_apply(params, x_valid), -1) == y_valid)

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
                   sampler: str = "random") -> jt.SweepResult:
    return jt.sweep(cross_entropy, mlp_init, optimizer_factory(steps), space(steps),
                    data=(data.x_train, data.y_train), eval_data=(data.x_valid, data.y_valid),
                    eval_fn=evaluate, metric="accuracy", mode="max", batch_size=BATCH,
                    steps=steps, eval_every=max(1, steps // 10), trials=trials, seeds=1,
                    seed=seed, sampler=sampler, keep_params=False, progress=False,
                    strategy=strategy)


def tpe(seed: int, pruner=None) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(constant_liar=True, seed=seed)
    return optuna.create_study(direction="maximize", sampler=sampler,
                               pruner=pruner or optuna.pruners.NopPruner())


def throughput(data, trials: int, steps: int, concurrent: int, optuna_trials: int) -> dict:
    rates = {}
    start = time.perf_counter()
    jaxtune_search(data, steps, jt.OptunaSearch(tpe(0), trials=trials, concurrent=concurrent),
                   trials=trials)
    rates["jaxtune"] = trials / (time.perf_counter() - start)
    rates["optuna+traced"] = plain_optuna(data, trials, steps, traced=True)
    # Every trial compiles, so its rate is the same over fewer trials.
    rates["optuna"] = plain_optuna(data, optuna_trials, steps, traced=False)
    return rates


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
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--optuna-trials", type=int, default=None,
                        help="trials of the recompiling baseline (default: --trials; "
                             "16 with --quick: each compiles, so its rate does not change)")
    parser.add_argument("--concurrent", type=int, default=32)
    parser.add_argument("--quality-trials", type=int, nargs="+", default=None)
    parser.add_argument("--quality-concurrent", type=int, default=None,
                        help="OptunaSearch's `concurrent` in (b) (default: its own)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip", choices=["throughput", "quality"], default=None)
    parser.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                        help="CPU cores exposed as devices for jaxtune (default: all)")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args()
    jt.use_cpu_devices(args.cpu_devices)  # how a sweep uses every core (docs/guide/devices.md)
    steps = args.steps or (100 if args.quick else 300)
    quality_trials = args.quality_trials or [32 if args.quick else 64]
    repeats = args.repeats or (3 if args.quick else 5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = jt.load_digits()
    out: dict = {"trials": args.trials, "steps": steps, "devices": jax.device_count()}
    if args.skip != "throughput":
        optuna_trials = args.optuna_trials or (16 if args.quick else args.trials)
        out["optuna_trials"] = optuna_trials
        rates = throughput(data, args.trials, steps, args.concurrent, optuna_trials)
        out["throughput"] = rates
        print(f"(a) throughput, {args.trials} trials x {steps} steps (the recompiling "
              f"optuna: {optuna_trials} trials), "
              f"{jax.device_count()} device(s), trials/s end to end:")
        for name, rate in rates.items():
            print(f"  {name:14s} {rate:8.2f}   jaxtune is {rates['jaxtune'] / rate:5.1f}x")
    for n in quality_trials if args.skip != "quality" else []:
        scores = quality(data, n, steps, repeats, args.quality_concurrent)
        out.setdefault("quality", {})[n] = scores
        print(f"(b) best validation accuracy at {n} x {steps} member-steps, "
              f"{repeats} repeats (mean +- std; trials run):", flush=True)
        for name, s in scores.items():
            print(f"  {name:14s} {s['mean']:.4f} +- {s['std']:.4f}   trials {s['trials']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
