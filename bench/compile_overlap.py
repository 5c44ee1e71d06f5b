"""Static groups compiled ahead in background threads against compiled on first use.

An architecture search: the digits MLP with its hidden width a static dimension
(`--widths`, one compiled group per width) and the AdamW learning rate, `--trials`
configurations, each group's slices compiled either in the sweep's thread as the round
first needs them (`JAXTUNE_COMPILE_AHEAD=0`) or ahead of need in a thread pool
(`jaxtune.runner.ahead`, the default). Each sweep runs in a fresh process with the
persistent compilation cache off, so every program compiles; the two ways alternate
over `--repeats`. Printed: wall time, seconds compiling (summed over threads), seconds
the sweep's thread waited for compiles, compiles, and the medians' ratio.

    python bench/compile_overlap.py --quick     # 8 widths x 2 trials, 60 steps, 2 repeats
    python bench/compile_overlap.py             # 8 widths x 4 trials, 200 steps, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MARK = "compile_overlap:"


def worker(widths: tuple[int, ...], trials: int, steps: int) -> dict:
    """One sweep in this process: its wall time and `result.timing`."""
    import optax

    import jaxtune as jt
    from jaxtune.demo import cross_entropy, evaluate, mlp_init

    data = jt.load_digits()

    def init_fn(key, width):
        return mlp_init(key, (64, width, width, 10))

    def make_optimizer(learning_rate):
        return optax.adamw(learning_rate, weight_decay=1e-4)

    space = jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1),
                     width=jt.choice(list(widths), static=True))
    configs = {"learning_rate": [10 ** (-3 + 2 * i / max(trials - 1, 1)) for i in range(trials)]
               * len(widths), "width": [w for w in widths for _ in range(trials)]}
    start = time.perf_counter()
    result = jt.sweep(cross_entropy, init_fn, make_optimizer, space,
                      data=(data.x_train, data.y_train), eval_data=(data.x_valid, data.y_valid),
                      eval_fn=evaluate, batch_size=128, steps=steps, configs=configs,
                      eval_every=steps // 2, metric="accuracy", mode="max", progress=False)
    wall = time.perf_counter() - start
    return {"wall_s": wall, **{k: v for k, v in result.timing.items() if not isinstance(v, str)}}


def run(ahead: bool, args: argparse.Namespace) -> dict:
    """`worker` in a fresh process, compiling ahead or not, with no persistent cache."""
    env = {**os.environ, "JAXTUNE_COMPILE_AHEAD": "1" if ahead else "0",
           "JAXTUNE_COMPILATION_CACHE": "0"}
    command = [sys.executable, __file__, "--worker", "--widths", args.widths,
               "--trials", str(args.trials), "--steps", str(args.steps)]
    out = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith(MARK))
    return json.loads(line[len(MARK):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--widths", default="16,24,32,48,64,96,128,192")
    parser.add_argument("--trials", type=int, default=None, help="configurations per width")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    sys.path.insert(0, os.path.dirname(__file__))
    from _cli import add_json_option, log, table, write_json

    add_json_option(parser)
    args = parser.parse_args()
    args.trials = args.trials or (2 if args.quick else 4)
    args.steps = args.steps or (60 if args.quick else 200)
    repeats = args.repeats or (2 if args.quick else 3)
    if args.worker:
        widths = tuple(int(w) for w in args.widths.split(","))
        print(MARK + json.dumps(worker(widths, args.trials, args.steps)), flush=True)
        return
    runs: dict[str, list[dict]] = {"first use": [], "ahead": []}
    for repeat in range(repeats):
        for name in (("first use", "ahead") if repeat % 2 == 0 else ("ahead", "first use")):
            log(f"repeat {repeat + 1}/{repeats}: {name}")
            runs[name].append(run(name == "ahead", args))
    rows, medians = [], {}
    for name, records in runs.items():
        med = {k: statistics.median(r[k] for r in records)
               for k in ("wall_s", "compile_s", "compile_wait_s", "compiles")}
        medians[name] = med
        rows.append([name, f"{med['wall_s']:.2f}", f"{med['compile_s']:.2f}",
                     f"{med['compile_wait_s']:.2f}", f"{med['compiles']:.0f}"])
    widths = args.widths.split(",")
    print(table(f"architecture search: {len(widths)} widths x {args.trials} trials, {args.steps} "
                f"steps, median of {repeats} fresh processes each",
                ["compiled", "wall s", "compile s", "waited s", "compiles"], rows))
    ratio = medians["ahead"]["wall_s"] / medians["first use"]["wall_s"]
    print(f"wall time, ahead / first use: {ratio:.2f}x")
    write_json(args.json, {"widths": widths, "trials": args.trials, "steps": args.steps,
                           "repeats": repeats, "runs": runs, "medians": medians,
                           "wall_ratio": ratio})


if __name__ == "__main__":
    main()
