"""Ray Tune's ASHA against `jt.SuccessiveHalving` on W1, the digits MLP: wall time to an
equal best accuracy.

Workload (W1): the demo MLP 64-128-128-10 (`jaxtune.demo`) on the digits training split,
batch 128, `optax.adam(learning_rate)`, `--trials` learning rates drawn once from
`loguniform(1e-4, 1e-1)` (`jt.Space.sample`, seed `--seed`) and given to both sides, a
budget of `--steps` steps, validation accuracy every `--steps // 9` steps. Both stop the
worst configurations at the same rungs, R/9 and R/3 of the budget R, keeping the best
1/3 (eta = 3):

  ray       `tune.Tuner` with `ASHAScheduler(time_attr="training_iteration",
            grace_period=1, reduction_factor=3, max_t=9)`, one iteration being R/9
            steps; the trainable is the tutorial's loop (a `jax.jit` step closed over
            `optax.adam(lr)`, a Python loop of steps, `tune.report({"accuracy": ...})`
            after each iteration), one trial per worker, `--workers` workers (default:
            the cores this process may use); each trial compiles its own step.
  jaxtune   `jt.sweep(..., configs={"learning_rate": lrs}, eval_every=R // 9,
            strategy=jt.SuccessiveHalving(eta=3, min_steps=R // 9))`: every trial in one
            population, one compiled program.

Printed: each side's wall time (Ray's start-up apart), best accuracy, member-steps, and
the wall time at which each first reached the lower of the two best accuracies (so both
reached it): Ray from the reports' time stamps, jaxtune from the record points (a
`SuccessiveHalving` that notes the time and the best accuracy so far at each).

    python bench/vs_ray_tune.py              # 81 trials x 810 steps
    python bench/vs_ray_tune.py --quick      # 27 trials x 270 steps
    python bench/vs_ray_tune.py --json PATH

Both compile cold: the script sets `JAXTUNE_COMPILATION_CACHE=0` (unless it is set), or
`jt.sweep` would turn on JAX's persistent compilation cache and a second run would load
jaxtune's programs from disk while every Ray worker compiles afresh.

Ray is not a jaxtune dependency: `pip install "ray[tune]"` (measured with ray 2.60.0).
Without it the script runs the jaxtune side alone and says so.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from _cli import add_json_option, log, positive, table, write_json

BATCH = 128
ETA = 3
RUNGS_PER_BUDGET = 9  # the first rung at R/9: rungs at R/9, R/3, budget R


def accuracy(params, data):
    """Validation accuracy of the demo MLP, the one metric both sides evaluate."""
    import jax.numpy as jnp

    from jaxtune.demo import mlp_apply

    x, labels = data
    return {"accuracy": jnp.mean(jnp.argmax(mlp_apply(params, x), -1) == labels)}


def learning_rates(trials: int, seed: int) -> list[float]:
    """The `trials` learning rates both sides train, drawn once."""
    import jaxtune as jt

    table_ = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1)).sample(trials, seed=seed)
    return [float(v) for v in table_.columns["learning_rate"]]


# -- Ray Tune ---------------------------------------------------------------------------------

def ray_trainable(config, data=None, every=30, iterations=9):
    """The tutorial's training loop for one learning rate, reporting every `every` steps."""
    import jax
    import optax
    from ray import tune

    from jaxtune.demo import cross_entropy, mlp_init

    x_train, y_train, x_valid, y_valid = data
    optimizer = optax.adam(config["learning_rate"])

    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(cross_entropy)(params, (x, y))
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    evaluate = jax.jit(lambda params: accuracy(params, (x_valid, y_valid))["accuracy"])
    params = mlp_init(jax.random.key(0))
    state = optimizer.init(params)
    rng = np.random.default_rng(0)
    order, cursor = rng.permutation(len(x_train)), 0
    for _ in range(iterations):
        for _ in range(every):
            if cursor + BATCH > len(order):
                order, cursor = rng.permutation(len(x_train)), 0
            rows = order[cursor:cursor + BATCH]
            cursor += BATCH
            params, state = step(params, state, x_train[rows], y_train[rows])
        tune.report({"accuracy": float(evaluate(params)), "wall": time.time()})


def run_ray(data, lrs: list[float], steps: int, workers: int) -> dict:
    """ASHA over `lrs`; wall time, best accuracy, member-steps and the reports' times."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    every = steps // RUNGS_PER_BUDGET
    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 2**20, configure_logging=False)
    ray_start = time.perf_counter() - start
    try:
        arrays = (data.x_train, data.y_train, data.x_valid, data.y_valid)
        trainable = tune.with_resources(
            tune.with_parameters(ray_trainable, data=arrays, every=every,
                                 iterations=RUNGS_PER_BUDGET), {"cpu": 1})
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=RUNGS_PER_BUDGET,
                                  grace_period=1, reduction_factor=ETA)
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                trainable, param_space={"learning_rate": tune.grid_search(lrs)},
                tune_config=tune.TuneConfig(metric="accuracy", mode="max", scheduler=scheduler),
                run_config=tune.RunConfig(storage_path=storage, verbose=0))
            began = time.time()
            start = time.perf_counter()
            results = tuner.fit()
            seconds = time.perf_counter() - start
            histories = [r.metrics_dataframe for r in results]
    finally:
        ray.shutdown()
    reports = [(float(w - began), float(a)) for h in histories
               for w, a in zip(h["wall"], h["accuracy"])]
    iterations = sum(len(h) for h in histories)
    return {"seconds": seconds, "start_s": ray_start, "best": max(a for _, a in reports),
            "member_steps": iterations * every, "timeline": sorted(reports)}


# -- jaxtune ----------------------------------------------------------------------------------

def run_jaxtune(data, lrs: list[float], steps: int) -> dict:
    """`jt.SuccessiveHalving` over `lrs`, noting the best accuracy at each record point."""
    import optax

    import jaxtune as jt
    from jaxtune.demo import cross_entropy, mlp_init

    class TimedHalving(jt.SuccessiveHalving):
        """Successive halving that notes (seconds, best accuracy so far) at each decision."""

        def decide(self, search, report):
            best = np.nanmax(search.curve("accuracy"), initial=-np.inf)
            self.timeline.append((time.perf_counter() - self.began, float(best)))
            return super().decide(search, report)

    every = steps // RUNGS_PER_BUDGET
    strategy = TimedHalving(eta=ETA, min_steps=every)
    strategy.timeline = []
    strategy.began = start = time.perf_counter()
    result = jt.sweep(cross_entropy, mlp_init, lambda learning_rate: optax.adam(learning_rate),
                      jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1)),
                      configs={"learning_rate": lrs}, data=(data.x_train, data.y_train),
                      eval_data=(data.x_valid, data.y_valid), eval_fn=accuracy,
                      metric="accuracy", mode="max", batch_size=BATCH, steps=steps,
                      eval_every=every, seeds=1, keep_params=False, progress=False,
                      strategy=strategy)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "best": float(np.nanmax(result.metrics["accuracy"])),
            "member_steps": int(result.steps_trained.sum()), "timeline": strategy.timeline,
            "compile_s": float(result.timing["compile_s"])}


# -- the comparison -----------------------------------------------------------------------------

def time_to(timeline: list[tuple[float, float]], target: float) -> float | None:
    """The first time in `timeline` at which the best accuracy reached `target`."""
    best = -np.inf
    for seconds, value in sorted(timeline):
        best = max(best, value)
        if best >= target:
            return seconds
    return None


def ray_available() -> str | None:
    """None when Ray Tune imports, else why not."""
    try:
        import ray.tune  # noqa: F401
    except ImportError as error:
        return f"ray[tune] is not installed ({error}); pip install 'ray[tune]'"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=positive, default=None, help="default 81; --quick: 27")
    parser.add_argument("--steps", type=positive, default=None,
                        help="the budget R, a multiple of 9 (default 810; --quick: 270)")
    parser.add_argument("--workers", type=positive, default=None,
                        help="Ray workers, one trial each (default: the cores this process may use)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ray", action="store_true")
    add_json_option(parser)
    args = parser.parse_args()
    trials = args.trials or (27 if args.quick else 81)
    steps = args.steps or (270 if args.quick else 810)
    if steps % RUNGS_PER_BUDGET:
        parser.error(f"--steps must be a multiple of {RUNGS_PER_BUDGET} (rungs at R/9 and R/3), "
                     f"got {steps}")
    workers = args.workers or len(os.sched_getaffinity(0))
    os.environ.setdefault("JAXTUNE_COMPILATION_CACHE", "0")  # cold, both (docstring)

    import jaxtune as jt

    data = jt.load_digits()
    lrs = learning_rates(trials, args.seed)
    log(f"jaxtune: SuccessiveHalving, {trials} trials x {steps} steps")
    runs = {"jaxtune": run_jaxtune(data, lrs, steps)}
    missing = "--skip-ray" if args.skip_ray else ray_available()
    if missing is None:
        log(f"ray: ASHA, {trials} trials x {steps} steps, {workers} workers")
        runs["ray"] = run_ray(data, lrs, steps, workers)
    else:
        print(f"Ray Tune left out: {missing}")
    target = min(run["best"] for run in runs.values())
    rows = []
    for name, run in runs.items():
        run["time_to_target"] = time_to(run["timeline"], target)
        reached = run["time_to_target"]
        rows.append([name, f"{run['seconds']:.1f}", f"{run.get('start_s', 0):.1f}",
                     f"{run['best']:.4f}", f"{run['member_steps']:,}",
                     "-" if reached is None else f"{reached:.1f}"])
    print(table(f"W1 digits MLP, {trials} learning rates, budget {steps} steps, rungs at "
                f"{steps // 9} and {steps // 3} (eta {ETA}); target accuracy {target:.4f}",
                ["method", "wall s", "start-up s", "best accuracy", "member-steps",
                 "s to target"], rows))
    summary = {"target": target}
    if "ray" in runs:
        summary["speedup_to_target"] = runs["ray"]["time_to_target"] / runs["jaxtune"]["time_to_target"]
        summary["speedup_wall"] = runs["ray"]["seconds"] / runs["jaxtune"]["seconds"]
        print(f"ray / jaxtune: {summary['speedup_wall']:.2f}x end to end, "
              f"{summary['speedup_to_target']:.2f}x to accuracy {target:.4f}")
    write_json(args.json, {"trials": trials, "steps": steps, "workers": workers, "seed": args.seed,
                           "learning_rates": lrs, "runs": runs, "summary": summary,
                           "ray_missing": missing})


if __name__ == "__main__":
    main()
