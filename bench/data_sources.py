"""Member-steps/s for `data` in memory vs a traced `batch_fn` vs a host iterator.

Workload: MLP 64-128-128-10 on the digits training split, batch 128,
`optax.adam(learning_rate)`, N = 32 learning rates log-spaced in [1e-4, 1e-1], one
seed, one device; `--steps` steps trained in chunks of `--chunk` steps (one
`Trainer.train` call each, as a sweep trains between record points); compile
excluded (one warm-up run first). All three draw the same minibatches:

* in-memory arrays: the trainer gathers each step's rows of the device-resident
  training set inside the compiled step;
* `batch_fn`: gathers rows of the device-resident set by a precomputed index table,
  indexed by the traced step;
* host iterator: a Python generator gathers the rows in NumPy (as a DataLoader over
  in-memory data would); every chunk's batches are stacked and transferred once,
  with the next chunk read in a background thread (`prefetch`), or not.

    python bench/data_sources.py [--steps 500] [--chunk 50] [--members 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _cli import add_json_option, log, positive, table, write_json

import jaxtune as jt


def init_fn(key):
    sizes = (64, 128, 128, 10)
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) * np.sqrt(2 / a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def loss_fn(params, batch):
    x, y = batch
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_optimizer(learning_rate):
    return optax.adam(learning_rate)


def member_steps_per_s(make_trainer, hparams, steps, chunk, repeats) -> float:
    """Median member-steps/s of `steps` steps in chunks, from a fresh trainer each run."""
    times = []
    for repeat in range(repeats + 1):  # the first run compiles and warms up
        trainer = make_trainer()
        start = time.perf_counter()
        state = trainer.init(hparams)
        for _ in range(steps // chunk):
            state, _ = trainer.train(state, chunk)
        jax.block_until_ready(state)
        if repeat:
            times.append(time.perf_counter() - start)
    return len(hparams["learning_rate"]) * steps / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=positive, default=500)
    parser.add_argument("--chunk", type=positive, default=50)
    parser.add_argument("--members", type=positive, default=32)
    parser.add_argument("--repeats", type=positive, default=3)
    add_json_option(parser)
    args = parser.parse_args()
    steps = args.steps - args.steps % args.chunk
    data = jt.load_digits()
    hparams = {"learning_rate": np.geomspace(1e-4, 1e-1, args.members).astype(np.float32)}
    device = jax.devices()[:1]
    x_host, y_host = data.x_train, data.y_train

    def in_memory():
        return jt.Trainer(loss_fn, make_optimizer, init_params=init_fn,
                          data=(x_host, y_host), batch_size=128, devices=device)

    order = in_memory().minibatch_indices(0, 0, steps)
    x, y = jnp.asarray(x_host), jnp.asarray(y_host)
    table_order = jnp.asarray(order)

    def batch_fn(key, step):
        return x[table_order[step]], y[table_order[step]]

    def batches():
        for rows in order:
            yield x_host[rows], y_host[rows]

    def stream(prefetch):
        return lambda: jt.Trainer(loss_fn, make_optimizer, init_params=init_fn,
                                  data=jt.HostStream(batches(), prefetch=prefetch),
                                  devices=device)

    sources = {
        "in-memory arrays": in_memory,
        "batch_fn": lambda: jt.Trainer(loss_fn, make_optimizer, init_params=init_fn,
                                       data=batch_fn, devices=device),
        "host iterator": stream(True),
        "host iterator, no prefetch": stream(False),
    }
    rows = []
    for name, make in sources.items():
        log(f"{name} ...")
        rows.append((name, member_steps_per_s(make, hparams, steps, args.chunk, args.repeats)))
    base = rows[0][1]
    print(table(f"digits MLP, N={args.members}, {steps} steps in chunks of {args.chunk}, "
                f"batch 128, 1 {device[0].platform} device (median of {args.repeats})",
                ["data", "member-steps/s", "vs in-memory"],
                [(name, f"{rate:,.0f}", f"{rate / base:.2f}x") for name, rate in rows]))
    write_json(args.json, {"members": args.members, "steps": steps, "chunk": args.chunk,
                           "member_steps_per_s": dict(rows)})


if __name__ == "__main__":
    main()
