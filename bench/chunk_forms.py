"""How fast is each chunk form (`jaxtune.engine.forms`) on each kind of model?

Every form of `jt.Trainer(..., chunk_form=form)` trains the same members the same
steps; this times them side by side in one process, on four models:

  mlp      the digits-shaped MLP 64-128-128-10, batch 128, adam (no convolution);
  cnn      two 3x3 convolutions (16, 32 channels) + a linear layer on 8x8x1 images,
           batch 64, adam: the reproduction of jax-ml/jax#12868 in issue 19;
  nnx_cnn  the Flax NNX MNIST tutorial's CNN shape on 8x8 digits: Conv, BatchNorm,
           Dropout (model state and a per-step key), adamw;
  block    a decoder-only transformer block (d_model 64, 4 heads, context 32,
           characters), adam.

For each model, members N and form: *cold*, the first chunk of `--steps` steps
(compiling its programs included), and *warm*, the next chunk, in member-steps per
second, and each form's warm time as a ratio of scan+vmap's (below 1: faster). Also
what `chunk_form="auto"` chose. With `--devices 1,2` every row is measured on one
CPU device and on two (`jax_num_cpu_devices`): whether `jt.use_cpu_devices()` helps.

    python bench/chunk_forms.py                        # every model, N = 1, 8, 32
    python bench/chunk_forms.py --quick                # N = 1, 8, 20 steps
    python bench/chunk_forms.py --models cnn,mlp --devices 1,2 --forms loop+unroll,scan+vmap

The machine may be shared: compare only figures of one run (the ratios).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import jax
from _cli import add_json_option, log, parse_ints, table, write_json

FORMS = ("scan+vmap", "scan+unroll", "loop+vmap", "loop+unroll")


def mlp():
    import jax.numpy as jnp
    import optax

    def init(key):
        sizes, params = (64, 128, 128, 10), []
        for k, (a, b) in zip(jax.random.split(key, 3), zip(sizes, sizes[1:])):
            params.append((jax.random.normal(k, (a, b)) / a ** 0.5, jnp.zeros(b)))
        return params

    def loss(params, batch):
        x, y = batch
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        return optax.softmax_cross_entropy_with_integer_labels(
            x @ params[-1][0] + params[-1][1], y).mean()

    data = _images((64,), 10)
    return loss, init, lambda learning_rate: optax.adam(learning_rate), data, 128


def cnn():
    import optax

    dn = ("NHWC", "HWIO", "NHWC")

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"c1": jax.random.normal(k1, (3, 3, 1, 16)) * 0.1,
                "c2": jax.random.normal(k2, (3, 3, 16, 32)) * 0.1,
                "w": jax.random.normal(k3, (8 * 8 * 32, 10)) * 0.01}

    def loss(p, batch):
        x, y = batch
        h = jax.nn.relu(jax.lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME",
                                                     dimension_numbers=dn))
        h = jax.nn.relu(jax.lax.conv_general_dilated(h, p["c2"], (1, 1), "SAME",
                                                     dimension_numbers=dn))
        return optax.softmax_cross_entropy_with_integer_labels(
            h.reshape(h.shape[0], -1) @ p["w"], y).mean()

    return loss, init, lambda learning_rate: optax.adam(learning_rate), _images((8, 8, 1), 10), 64


def nnx_cnn():
    import optax
    from flax import nnx

    class CNN(nnx.Module):  # the tutorial's layers, sized for 8x8 digits
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
            self.bn1 = nnx.BatchNorm(16, rngs=rngs)
            self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=rngs)
            self.bn2 = nnx.BatchNorm(32, rngs=rngs)
            self.dropout = nnx.Dropout(0.1)  # its key comes with each step
            self.linear = nnx.Linear(4 * 4 * 32, 10, rngs=rngs)

        def __call__(self, x, rngs):
            x = nnx.relu(self.bn1(self.conv1(x)))
            x = nnx.avg_pool(nnx.relu(self.bn2(self.conv2(x))), (2, 2), (2, 2))
            return self.linear(self.dropout(x.reshape(x.shape[0], -1), rngs=rngs))

    graphdef, params, stats = nnx.split(CNN(nnx.Rngs(0)), nnx.Param, nnx.BatchStat)

    def loss(params, batch, key, *, model_state):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        x, y = batch
        logits = model(x, nnx.Rngs(dropout=key))
        out = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return out, (nnx.state(model, nnx.BatchStat), None)

    return (loss, (params, stats), lambda learning_rate: optax.adamw(learning_rate, 1e-4),
            _images((8, 8, 1), 10), 64)


def block():
    import jax.numpy as jnp
    import optax

    vocab, d, heads, context = 64, 64, 4, 32

    def init(key):
        k = jax.random.split(key, 6)
        n = lambda k, shape: jax.random.normal(k, shape) / shape[0] ** 0.5  # noqa: E731
        return {"embed": n(k[0], (vocab, d)), "pos": n(k[1], (context, d)) * 0.1,
                "qkv": n(k[2], (d, 3 * d)), "out": n(k[3], (d, d)),
                "up": n(k[4], (d, 4 * d)), "down": n(k[5], (4 * d, d))}

    def norm(x):
        return (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5)

    def loss(p, batch):
        tokens = batch[0]
        x = p["embed"][tokens[:, :-1]] + p["pos"][:context - 1]
        q, k, v = jnp.split(norm(x) @ p["qkv"], 3, axis=-1)
        split = lambda t: t.reshape(*t.shape[:2], heads, d // heads)  # noqa: E731
        mask = jnp.tril(jnp.ones((context - 1, context - 1), bool))
        attention = jax.nn.dot_product_attention(split(q), split(k), split(v), mask=mask)
        x = x + attention.reshape(x.shape) @ p["out"]
        x = x + jax.nn.gelu(norm(x) @ p["up"]) @ p["down"]
        logits = norm(x) @ p["embed"].T
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    import numpy as np
    text = np.frombuffer((open(os.__file__).read() * 2).encode()[:200_000], np.uint8) % vocab
    starts = np.arange(0, text.size - context, 7)
    tokens = np.stack([text[s:s + context] for s in starts]).astype(np.int32)
    return loss, init, lambda learning_rate: optax.adam(learning_rate), (tokens,), 32


def _images(shape, classes, n=1024):
    import numpy as np
    rng = np.random.default_rng(0)
    return (rng.random((n, *shape), np.float32), rng.integers(0, classes, n).astype(np.int32))


MODELS = {"mlp": mlp, "cnn": cnn, "nnx_cnn": nnx_cnn, "block": block}


def timed(model, members, form, steps, devices):
    """(cold seconds, warm seconds, the form run) of two chunks of `steps` steps."""
    import numpy as np

    from jaxtune.engine.trainer import Trainer

    loss, init, make_optimizer, data, batch_size = MODELS[model]()
    trainer = Trainer(loss, make_optimizer, init_params=init, data=data,
                      batch_size=batch_size, chunk_form=form, devices=jax.devices()[:devices])
    state = trainer.init({"learning_rate": np.geomspace(1e-4, 1e-2, members).astype(np.float32)})
    jax.block_until_ready(state)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        state, losses = trainer.train(state, steps, donate=True)
        jax.block_until_ready((state, losses))
        seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[1], trainer.chunk_form


@contextlib.contextmanager
def loop_steps(k):
    """Inside the block, the loop forms run `k` steps a program (None: jaxtune's own)."""
    from jaxtune.engine import forms

    kept = forms.LOOP_STEPS
    forms.LOOP_STEPS = kept if k is None else k
    try:
        yield
    finally:
        forms.LOOP_STEPS = kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--members", type=parse_ints, default=(1, 8, 32))
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--steps", type=int, default=50, help="steps per chunk")
    parser.add_argument("--devices", type=parse_ints, default=(1,),
                        help="CPU device counts to compare, e.g. 1,2")
    parser.add_argument("--loop-steps", type=parse_ints, default=None,
                        help="also time the loop forms with k steps per program, e.g. 1,5 "
                             "(default: jaxtune's own, forms.LOOP_STEPS)")
    parser.add_argument("--quick", action="store_true", help="N = 1, 8; 20 steps")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.steps = (1, 8), 20
    jax.config.update("jax_num_cpu_devices", max(args.devices))
    models, forms = args.models.split(","), args.forms.split(",")
    rows, records = [], []
    for model in models:
        for devices in args.devices:
            for members in args.members:
                if members % devices:
                    continue
                auto = timed(model, members, "auto", 2, devices)[2]
                results = {}
                for form in forms:
                    for k in (args.loop_steps or (None,)) if form.startswith("loop") else (None,):
                        name = form if k is None else f"{form} k={k}"
                        log(f"{model} N={members} devices={devices} {name}")
                        with loop_steps(k):
                            results[name] = timed(model, members, form, args.steps, devices)[:2]
                base = results.get("scan+vmap", next(iter(results.values())))
                for form, (cold, warm) in results.items():
                    work = members * args.steps
                    records.append(dict(model=model, members=members, devices=devices,
                                        form=form, steps=args.steps, cold_s=cold, warm_s=warm,
                                        auto=auto))
                    rows.append((model, members, devices, form + (" *" if form == auto else ""),
                                 f"{work / cold:,.0f}", f"{work / warm:,.0f}",
                                 f"{cold / base[0]:.2f}", f"{warm / base[1]:.2f}"))
                    log("  ".join(map(str, rows[-1])))
    print(table(f"Chunk forms: member-steps/s, {args.steps} steps a chunk (* = auto's choice); "
                "ratios: time / scan+vmap's (below 1: faster)",
                ["model", "N", "devices", "form", "cold", "warm", "cold ratio", "warm ratio"],
                rows))
    write_json(args.json, records)


if __name__ == "__main__":
    sys.exit(main())
