"""Adaptive strategies against the plain full-budget random search, on the digits MLP.

For each of `--repeats` root seeds, the demo's space (AdamW learning rate x weight
decay, cosine-decayed) is searched with the same trial count by: the plain sweep,
SuccessiveHalving, Hyperband and PBT; then `lr_find`'s suggestion is trained for the
full budget. Printed side by side: best validation accuracy (mean ± std over
repeats), member-steps and wall-clock relative to the plain search, and PBT's winner's
learning-rate schedule.

Each method first runs once, outside the table, on another seed (its "cold" run: it
compiles the program shapes it uses that the methods before it did not, a repack's
smaller slices included); the
repeats then run warm, so the wall-clock column compares running, not who compiled
first. The cold runs' wall-clock fractions are printed apart, with each method's
record-point cost (`result.timing["record_s"]` per record point: read-back, recording,
decision, repack outside its compiles, checkpoint) and its compile seconds.

    python bench/strategies.py --quick     # 27 trials x 270 steps, 3 repeats
    python bench/strategies.py             # 81 trials x 810 steps, 3 repeats
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import optax
from _cli import add_json_option, write_json

import jaxtune as jt
from jaxtune.demo import cross_entropy, digits_space, evaluate, mlp_init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args()
    trials, steps, eval_every = (27, 270, 10) if args.quick else (81, 810, 30)
    data = jt.load_digits()

    def make_optimizer(learning_rate, weight_decay):
        return optax.adamw(jt.cosine_decay_schedule(learning_rate, decay_steps=steps),
                           weight_decay=weight_decay)

    def search(strategy, seed, **kwargs):
        options = {"data": (data.x_train, data.y_train), "eval_data": (data.x_valid, data.y_valid),
                   "eval_fn": evaluate, "batch_size": 128, "steps": steps, "trials": trials,
                   "seed": seed, "eval_every": eval_every, "metric": "accuracy", "mode": "max",
                   "progress": False, "keep_params": False, "strategy": strategy}
        options.update(kwargs)
        start = time.perf_counter()
        result = jt.sweep(cross_entropy, mlp_init, make_optimizer, digits_space(), **options)
        return result, time.perf_counter() - start

    def best_accuracy(result):
        final = result.final("accuracy")
        done = result.steps_trained == steps
        return float(np.nanmax(np.where(done, final, np.nan)))

    methods = {
        "plain": lambda: None,
        # Rungs at R/9, R/3, R: the first rung long enough to rank learning rates.
        "successive halving": lambda: jt.SuccessiveHalving(eta=3, min_steps=steps // 9),
        "hyperband": lambda: jt.Hyperband(eta=3, min_steps=steps // 27),
        "pbt": lambda: jt.PBT(ready=steps // 9, fraction=0.25),
    }
    rows = {name: {"accuracy": [], "member_steps": [], "seconds": [], "record_s": [],
                   "record_points": []} for name in methods}
    cold = {}
    for name, make in methods.items():  # compiles every shape the method uses
        result, seconds = search(make(), 1000)
        cold[name] = {"seconds": seconds, "compile_s": result.timing["compile_s"],
                      "member_steps": int(result.steps_trained.sum())}
    schedules, plain_rates = [], []
    for repeat in range(args.repeats):
        for name, make in methods.items():
            result, seconds = search(make(), repeat)
            rows[name]["accuracy"].append(best_accuracy(result))
            rows[name]["member_steps"].append(int(result.steps_trained.sum()))
            rows[name]["seconds"].append(seconds)
            rows[name]["record_s"].append(result.timing.get("record_s", np.nan))
            rows[name]["record_points"].append(result.timing.get("record_points", np.nan))
            if name == "plain":
                plain_rates.append(result.best.hparams["learning_rate"])
            if name == "pbt":
                schedules.append(result.hparam_schedule())

    found_rates, found_accuracy = [], []
    for repeat in range(args.repeats):
        found = jt.lr_find(cross_entropy, mlp_init,
                           lambda learning_rate: optax.adamw(learning_rate, weight_decay=1e-4),
                           data=(data.x_train, data.y_train), batch_size=128, min_lr=1e-5,
                           max_lr=1.0, steps=100, seeds=3, seed=repeat)
        rate = min(found.suggestion("valley"), 0.1)
        found_rates.append(rate)
        result, _ = search(None, repeat, trials=None,
                           configs={"learning_rate": [rate], "weight_decay": [1e-4]}, seeds=3)
        found_accuracy.append(float(np.nanmean(result.final("accuracy"))))

    plain = rows["plain"]
    print(f"digits MLP, {trials} trials x {steps} steps, {args.repeats} repeats "
          f"(best validation accuracy among members that trained the full budget)")
    print(f"{'method':<20}{'best accuracy':>18}{'member-steps':>16}{'wall-clock':>12}")
    for name, row in rows.items():
        acc = np.array(row["accuracy"])
        steps_ratio = np.mean(row["member_steps"]) / np.mean(plain["member_steps"])
        wall_ratio = np.mean(row["seconds"]) / np.mean(plain["seconds"])
        print(f"{name:<20}{acc.mean():>11.4f} ± {acc.std():.4f}{steps_ratio:>15.2f}x"
              f"{wall_ratio:>11.2f}x")
    print("\nfirst run of each method (seed 1000, in this order: compiling the shapes the "
          "methods before it had not), wall-clock fraction and compile seconds; warm "
          "repeats: seconds at record points outside training and compiling")
    print(f"{'method':<20}{'member-steps':>14}{'cold wall':>11}{'compile s':>11}"
          f"{'record s':>10}{'ms/point':>10}")
    for name, row in rows.items():
        steps_ratio = cold[name]["member_steps"] / cold["plain"]["member_steps"]
        cold_ratio = cold[name]["seconds"] / cold["plain"]["seconds"]
        record = np.mean(row["record_s"])
        per_point = 1e3 * np.sum(row["record_s"]) / np.sum(row["record_points"])
        print(f"{name:<20}{steps_ratio:>13.2f}x{cold_ratio:>10.2f}x"
              f"{cold[name]['compile_s']:>11.2f}{record:>10.3f}{per_point:>10.2f}")
    print(f"lr_find (valley)    {np.mean(found_accuracy):>11.4f} ± {np.std(found_accuracy):.4f}"
          f"  suggested lr {', '.join(f'{r:.2g}' for r in found_rates)} (3 seeds, full budget)")
    print(f"plain search's best lr: {', '.join(f'{r:.2g}' for r in plain_rates)}")
    print("PBT winner's learning-rate schedule (repeat 0):")
    schedule = schedules[0]
    print("  " + ", ".join(f"{s}: {lr:.2g}" for s, lr in zip(schedule["step"],
                                                          schedule["learning_rate"])))
    write_json(args.json, {"trials": trials, "steps": steps, "repeats": args.repeats, "methods": rows,
                           "cold": cold,
                           "lr_find": {"rates": found_rates, "accuracy": found_accuracy}})


if __name__ == "__main__":
    main()
