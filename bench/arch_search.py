"""W4, an architecture search: `jt.OptunaSearch` against Optuna's `study.optimize`.

Workload: a ReLU MLP on the digits (`jt.load_digits()`), searched over

  width          randint(4, 129, static=True)    units of every hidden layer
  depth          randint(1, 4, static=True)      hidden layers
  learning_rate  loguniform(1e-5, 1e-1)          `optax.adam`

(the space of Optuna's JAX example, optuna-examples haiku/haiku_simple.py: two widths
in [4, 128] and a log learning rate in [1e-5, 1e-1], here a width and a depth), batch
128, `--steps` steps a trial, validation accuracy reported to a `MedianPruner` every
`--report-every` steps, each trial's value its best reported accuracy (the example
returns its best test accuracy). Both sides use the same study settings:
`TPESampler(seed=seed, constant_liar=True)` (the liar only matters to trials asked
while others run, so `study.optimize` samples as plain TPE) and
`MedianPruner(n_startup_trials=2)`, and the same initialisation and optimizer.

  optuna    `study.optimize(objective, n_trials)`, the objective written as the
            example writes it: the trial's hyperparameters drawn, the network and a
            `jax.jit` update step and accuracy closed over them (so every trial
            compiles its own), a Python loop of steps over shuffled minibatches,
            `trial.report` and `trial.should_prune` every `--report-every` steps.
  jaxtune   `jt.sweep(..., strategy=jt.OptunaSearch(study, trials=n, value="best"))`:
            one compiled program set per static group (width, depth), the learning
            rate traced, `OptunaSearch`'s default `concurrent` trials at once.

Each (method, trials, seed) runs in a fresh subprocess with the persistent
compilation cache off, so every run starts cold; the clock starts once the data are
loaded and stops when the study holds `trials` finished trials. Printed per trial
count: wall seconds, best value and trials/s (means over `--seeds` seeds), XLA
compiles and the seconds XLA spent compiling (from `jax.log_compiles`; for jaxtune
also `result.timing`), the compiles by program, and the target: jaxtune faster with a
best value at least Optuna's.

    python bench/arch_search.py --trials 16,64 --seeds 3           # the issue's measurement
    python bench/arch_search.py --quick                            # 8 trials x 200 steps, 1 seed
    python bench/arch_search.py --trials 16 --seeds 1 --json w4.json

`run(argv)` runs the benchmark from Python (bench/workloads.py's `--workloads W4`)
and returns its summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections import defaultdict
from typing import Any

from _cli import add_json_option, log, parse_ints, positive, run_json_worker, table, write_json

BATCH = 128
WIDTHS = (4, 129)  # randint bounds, high excluded: the example's suggest_int(4, 128)
DEPTHS = (1, 4)
LEARNING_RATES = (1e-5, 1e-1)
MARK = "ARCH_SEARCH_JSON "
METHODS = ("optuna", "jaxtune")


# -- the model, shared by both sides -----------------------------------------------------

def init_mlp(key, width: int, depth: int) -> list[dict[str, Any]]:
    """He-initialised layers 64 -> `depth` x `width` -> 10 (a list of {"w", "b"})."""
    import jax
    import jax.numpy as jnp

    sizes = (64, *[width] * depth, 10)
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}
            for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def logits(params, x):
    import jax

    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss(params, batch):
    import optax

    x, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), labels).mean()


def accuracy(params, data):
    import jax.numpy as jnp

    x, labels = data
    return {"accuracy": jnp.mean(jnp.argmax(logits(params, x), -1) == labels)}


def make_optimizer(learning_rate):
    import optax

    return optax.adam(learning_rate)


def create_study(seed: int):
    """The study both sides search with: TPE seeded `seed`, median pruning."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.create_study(direction="maximize", sampler=sampler,
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=2))


# -- the two ways ------------------------------------------------------------------------

def optuna_way(data, trials: int, steps: int, every: int, seed: int) -> Any:
    """`study.optimize` with the objective Optuna's JAX example would write: each trial
    builds and jits its own step and accuracy, then loops over shuffled minibatches."""
    import jax
    import numpy as np
    import optax
    import optuna

    x_valid, y_valid = data.x_valid, data.y_valid
    rng = np.random.default_rng(seed)

    def batches():
        while True:
            order = rng.permutation(len(data.x_train))
            for i in range(0, len(order) - BATCH + 1, BATCH):
                rows = order[i:i + BATCH]
                yield data.x_train[rows], data.y_train[rows]

    def objective(trial):
        width = trial.suggest_int("width", WIDTHS[0], WIDTHS[1] - 1)
        depth = trial.suggest_int("depth", DEPTHS[0], DEPTHS[1] - 1)
        lr = trial.suggest_float("learning_rate", *LEARNING_RATES, log=True)
        optimizer = make_optimizer(lr)

        @jax.jit
        def update(params, state, batch):
            grads = jax.grad(loss)(params, batch)
            updates, state = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        evaluate = jax.jit(lambda params: accuracy(params, (x_valid, y_valid))["accuracy"])
        params = init_mlp(jax.random.key(seed), width, depth)
        state, feed, best = optimizer.init(params), batches(), 0.0
        for step in range(1, steps + 1):
            params, state = update(params, state, next(feed))
            if step % every == 0:
                value = float(jax.device_get(evaluate(params)))
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
                best = max(best, value)
        return best

    study = create_study(seed)
    study.optimize(objective, n_trials=trials)
    return study, None


def jaxtune_way(data, trials: int, steps: int, every: int, seed: int,
                concurrent: int | None, chunk_form: str | None = None) -> Any:
    """`jt.sweep` with `jt.OptunaSearch` on the same study settings (`chunk_form`, when
    given, passed on to `jt.sweep`)."""
    import jaxtune as jt

    space = jt.Space(width=jt.randint(*WIDTHS, static=True),
                     depth=jt.randint(*DEPTHS, static=True),
                     learning_rate=jt.loguniform(*LEARNING_RATES))
    study = create_study(seed)
    search = jt.OptunaSearch(study, trials=trials, value="best", concurrent=concurrent)
    result = jt.sweep(loss, init_mlp, make_optimizer, space,
                      data=(data.x_train, data.y_train), eval_data=(data.x_valid, data.y_valid),
                      eval_fn=accuracy, metric="accuracy", mode="max", batch_size=BATCH,
                      steps=steps, eval_every=every, trials=trials, seeds=1, seed=seed,
                      keep_params=False, progress=False, strategy=search,
                      **({} if chunk_form is None else {"chunk_form": chunk_form}))
    return study, result


# -- one run in a fresh process ----------------------------------------------------------

class CompileSeconds(logging.Handler):
    """The programs XLA compiles while active (in any thread), with the seconds each took."""

    PATTERN = re.compile(r"Finished XLA compilation of (?:jit\()?([^\s)]+)\)? in ([0-9.e-]+) sec")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.programs: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(record.getMessage())
        if match:
            self.programs.append((match.group(1), float(match.group(2))))

    def __enter__(self):
        import jax

        self._logger = logging.getLogger("jax")
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False
        # The global flag, not the `jax.log_compiles` context: a context is thread-local
        # and would miss programs compiled in background threads.
        self._flag = jax.config.jax_log_compiles
        jax.config.update("jax_log_compiles", True)
        return self

    def __exit__(self, *exc):
        import jax

        jax.config.update("jax_log_compiles", self._flag)
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
        return False


def by_program(programs: list[tuple[str, float]]) -> dict[str, list[float]]:
    """program name -> [count, seconds]; the small eager operations (the user's
    initialisation, run un-jitted as Optuna's example runs it) as "eager"."""
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for name, seconds in programs:
        known = name in ("update", "<lambda>", "pick", "take", "cat") or name.startswith(
            ("train_", "init_", "evaluate_"))
        entry = out[name if known else "eager"]
        entry[0] += 1
        entry[1] += seconds
    return dict(out)


def worker(method: str, trials: int, steps: int, every: int, seed: int,
           concurrent: int | None, chunk_form: str | None) -> dict:
    """One cold run: the figures of `method` at `trials` trials, seed `seed`."""
    import jax
    import optuna

    import jaxtune as jt

    data = jt.load_digits()
    jax.block_until_ready(jax.numpy.zeros(1) + 1)  # the backend started before the clock
    with CompileSeconds() as compiled:
        start = time.perf_counter()
        if method == "optuna":
            study, result = optuna_way(data, trials, steps, every, seed)
        else:
            study, result = jaxtune_way(data, trials, steps, every, seed, concurrent,
                                        chunk_form)
        seconds = time.perf_counter() - start
    states = [t.state for t in study.trials]
    out = {"method": method, "trials": trials, "seed": seed, "wall_s": seconds,
           "best": float(study.best_value), "best_params": study.best_params,
           "finished": len(states),
           "pruned": sum(s == optuna.trial.TrialState.PRUNED for s in states),
           "xla_compiles": len(compiled.programs),
           "xla_compile_s": sum(s for _, s in compiled.programs),
           "programs": by_program(compiled.programs),
           "static_groups": len({(t.params["width"], t.params["depth"]) for t in study.trials})}
    if result is not None:
        out["timing"] = dict(result.timing)
        out["member_steps"] = int(result.steps_trained.sum())
    return out


# -- the driver ----------------------------------------------------------------------------

def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=parse_ints, default=None,
                        help="trial counts, e.g. 16,64 (default; --quick: 8)")
    parser.add_argument("--seeds", "--repeats", dest="seeds", type=positive, default=None,
                        help="sampler seeds 0..N-1 per trial count (default 3; --quick: 1)")
    parser.add_argument("--steps", type=positive, default=None,
                        help="optimizer steps a trial (default 500; --quick: 200)")
    parser.add_argument("--report-every", type=positive, default=50,
                        help="steps between reports to the pruner (jaxtune's eval_every)")
    parser.add_argument("--concurrent", type=positive, default=None,
                        help="OptunaSearch's concurrent trials (default: its own, "
                             "ceil(sqrt(trials)))")
    parser.add_argument("--chunk-form", default=None,
                        help="jt.sweep's chunk_form for jaxtune (default: jt.sweep's own)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of optuna,jaxtune")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    args.trials = args.trials or ((8,) if args.quick else (16, 64))
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.steps = args.steps or (200 if args.quick else 500)
    args.methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"--methods: unknown {sorted(unknown)}; choose from {','.join(METHODS)}")
    if args.steps % args.report_every:
        parser.error(f"--steps ({args.steps}) must be a multiple of --report-every "
                     f"({args.report_every}), so both sides report at the same steps")
    return args


def measure(args: argparse.Namespace, method: str, trials: int, seed: int) -> dict:
    """One run in a fresh subprocess, the persistent compilation cache off."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", method,
               "--trials", str(trials), "--seed", str(seed), "--steps", str(args.steps),
               "--report-every", str(args.report_every)]
    if args.concurrent:
        command += ["--concurrent", str(args.concurrent)]
    if args.chunk_form:
        command += ["--chunk-form", args.chunk_form]
    previous = os.environ.get("JAXTUNE_COMPILATION_CACHE")
    os.environ["JAXTUNE_COMPILATION_CACHE"] = "0"  # inherited: every run compiles cold
    try:
        code, record = run_json_worker(command, MARK)
    finally:  # `run` may be called from another script (bench/workloads.py)
        if previous is None:
            del os.environ["JAXTUNE_COMPILATION_CACHE"]
        else:
            os.environ["JAXTUNE_COMPILATION_CACHE"] = previous
    if record is None:
        raise RuntimeError(f"the {method} run ({trials} trials, seed {seed}) failed "
                           f"with exit code {code}; run {' '.join(command)} to see why")
    return record


def summarise(runs: list[dict]) -> dict:
    """Means over seeds per (trials, method), the ratios and the target."""
    import numpy as np

    summary: dict[str, Any] = {}
    for trials in sorted({r["trials"] for r in runs}):
        row: dict[str, Any] = {}
        for method in METHODS:
            mine = [r for r in runs if r["trials"] == trials and r["method"] == method]
            if not mine:
                continue
            wall = float(np.mean([r["wall_s"] for r in mine]))
            row[method] = {
                "wall_s": wall, "trials_per_s": trials / wall,
                "best": float(np.mean([r["best"] for r in mine])),
                "best_std": float(np.std([r["best"] for r in mine])),
                "xla_compiles": float(np.mean([r["xla_compiles"] for r in mine])),
                "xla_compile_s": float(np.mean([r["xla_compile_s"] for r in mine])),
                "pruned": float(np.mean([r["pruned"] for r in mine])),
                "static_groups": float(np.mean([r["static_groups"] for r in mine])),
            }
            if method == "jaxtune":
                for key in ("compiles", "compile_s", "run_s", "compile_wait_s", "record_s",
                            "record_points"):  # the last three where jt.sweep reports them
                    if all(key in r["timing"] for r in mine):
                        row[method]["timing_" + key] = float(np.mean([r["timing"][key]
                                                                      for r in mine]))
        if len(row) == 2:
            row["speedup"] = row["optuna"]["wall_s"] / row["jaxtune"]["wall_s"]
            row["best_gain"] = row["jaxtune"]["best"] - row["optuna"]["best"]
            row["target"] = bool(row["speedup"] > 1.0 and row["best_gain"] >= 0)
        summary[str(trials)] = row
    return summary


def report(args: argparse.Namespace, runs: list[dict], summary: dict) -> None:
    """The tables on stdout."""
    rows = []
    for trials, row in summary.items():
        for method in METHODS:
            if method in row:
                s = row[method]
                compile_s = (f"{s['xla_compile_s']:.1f}" if method == "optuna" else
                             f"{s['xla_compile_s']:.1f} ({s['timing_compile_s']:.1f})")
                rows.append([f"{trials} {method}", f"{s['wall_s']:.1f}", f"{s['trials_per_s']:.2f}",
                             f"{s['best']:.4f} +- {s['best_std']:.4f}", f"{s['xla_compiles']:.0f}",
                             compile_s, f"{s['pruned']:.1f}", f"{s['static_groups']:.1f}"])
    print(table(f"W4 architecture search, {args.steps} steps a trial, reports every "
                f"{args.report_every}, means over {args.seeds} seed(s)",
                ["trials, method", "wall s", "trials/s", "best accuracy", "XLA compiles",
                 "compile s (timing)", "pruned", "(w, d) groups"], rows))
    programs: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for r in runs:
        for name, (count, seconds) in r["programs"].items():
            entry = programs[(f"{r['trials']} {r['method']}", name)]
            entry[0] += count / args.seeds
            entry[1] += seconds / args.seeds
    print(table("XLA compiles by program (mean per run): count, seconds",
                ["trials, method", "program", "compiles", "seconds"],
                [[k[0], k[1], f"{v[0]:.1f}", f"{v[1]:.2f}"] for k, v in sorted(programs.items())]))
    for trials, row in summary.items():
        if "speedup" in row:
            verdict = "PASS" if row["target"] else "MISS"
            print(f"target at {trials} trials (jaxtune faster, best >= optuna's): {verdict}: "
                  f"{row['speedup']:.2f}x the speed, best {row['best_gain']:+.4f}")


def run(argv: list[str]) -> dict:
    """Runs the benchmark with command-line arguments `argv`; returns its summary."""
    args = parse(argv)
    if args.worker:
        record = worker(args.worker, args.trials[0], args.steps, args.report_every,
                        args.seed, args.concurrent, args.chunk_form)
        print(MARK + json.dumps(record), flush=True)
        return record
    runs = []
    for trials in args.trials:
        for seed in range(args.seeds):
            for method in args.methods:
                log(f"{method}: {trials} trials, seed {seed}")
                runs.append(measure(args, method, trials, seed))
                log(f"  {runs[-1]['wall_s']:.1f} s, best {runs[-1]['best']:.4f}, "
                    f"{runs[-1]['xla_compiles']} XLA compiles")
    summary = summarise(runs)
    report(args, runs, summary)
    write_json(args.json, {"steps": args.steps, "report_every": args.report_every,
                           "seeds": args.seeds, "summary": summary, "runs": runs})
    return summary


def main() -> None:
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
