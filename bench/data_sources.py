"""Member-steps/s for `data` in memory vs a traced `batch_fn`, on the digits MLP.

Workload: MLP 64-128-128-10 on the digits training split, batch 128,
`optax.adam(learning_rate)`, N = 32 learning rates log-spaced in [1e-4, 1e-1], one
seed, one device, `--steps` steps in one `Trainer.train` call (compile excluded:
one warm-up call first). Both draw the same minibatches: the `batch_fn` gathers
rows of the device-resident training set by the indices the in-memory trainer
uses for seed 0, so the difference is where the gather happens (a per-member
index array vs one shared table indexed by the traced step), not the data.

    python bench/data_sources.py [--steps 500] [--members 32] [--repeats 3]

A host iterator (batches from a Python generator, stacked per chunk) is not
implemented yet, so it is not measured.

Measured (2-core machine shared with other jobs, so +-20%; `--steps 200`):
in-memory arrays 1,425 member-steps/s, batch_fn 1,814 member-steps/s. The
in-memory path draws and gathers each member's epoch permutation inside the step;
the batch_fn here only indexes a precomputed table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

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


def member_steps_per_s(trainer, hparams, steps, repeats) -> float:
    state = trainer.init(hparams)
    jax.block_until_ready(trainer.train(state, steps))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(trainer.train(state, steps))
        times.append(time.perf_counter() - start)
    return len(hparams["learning_rate"]) * steps / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = jt.load_digits()
    hparams = {"learning_rate": np.geomspace(1e-4, 1e-1, args.members).astype(np.float32)}
    device = jax.devices()[:1]
    in_memory = jt.Trainer(loss_fn, make_optimizer, init_params=init_fn,
                           data=(data.x_train, data.y_train), batch_size=128, devices=device)
    order = jnp.asarray(in_memory.minibatch_indices(0, 0, args.steps))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def batch_fn(key, step):
        return x[order[step]], y[order[step]]

    traced = jt.Trainer(loss_fn, make_optimizer, init_params=init_fn, data=batch_fn,
                        devices=device)
    print(f"digits MLP, N={args.members}, {args.steps} steps, batch 128, 1 {device[0].platform}"
          " device")
    for name, trainer in (("in-memory arrays", in_memory), ("batch_fn", traced)):
        rate = member_steps_per_s(trainer, hparams, args.steps, args.repeats)
        print(f"  {name:<18} {rate:>10,.0f} member-steps/s")


if __name__ == "__main__":
    main()
