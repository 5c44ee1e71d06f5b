"""The workloads of `bench/workloads.py`: models, data, and each tutorial's own training loop.

Each workload is written the way its library's tutorial writes it, on data that ships
with a package, and comes in the two forms the benchmark needs:

  * the user's own code: a train step jitted once and called from a Python loop, the
    optimizer built from Python floats (`tutorial_loop`), as the JAX and Flax NNX
    tutorials write it;
  * the functional form a sweep takes: `loss_fn(params, batch, ...)`,
    `make_optimizer(**hparams)`, the initial parameters (and model state) and a
    `jt.Space`, shared by `jt.sweep` and the hand-written `jit(vmap(...))`.

The defaults (steps, batch size, ranges) are stated here, at the top, per workload:

  W1  the digits MLP 64-128-128-10 of `jaxtune.demo` on `jt.load_digits()`,
      `optax.adam(learning_rate)`; learning rate log-spaced in [1e-3, 1e-2].
  W2  Flax NNX's MNIST-tutorial CNN shape scaled to the 8x8 digits: Conv(1->32, 3x3)
      BatchNorm relu avg_pool, Conv(32->64) BatchNorm relu avg_pool, Linear(256->128)
      relu Dropout, Linear(128->10); `nnx.Optimizer(model, optax.adamw(lr,
      weight_decay=wd))`; learning rate x weight decay x dropout rate, the dropout rate
      static (`nnx.Dropout` takes a Python float), every other configuration
      dropout-free so the same-work check compares them exactly.
  W3  a decoder-only character language model in Flax NNX: 2 pre-LayerNorm blocks,
      d_model 64, 4 heads, context 64, on the text of `pydoc_data.topics` (the help
      topics that ship with Python); `optax.adamw` under a linear warmup + cosine
      decay; learning rate x weight decay.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxtune as jt
from jaxtune.demo import cross_entropy, mlp_init

SEED = 0

# W1: the digits MLP
W1 = dict(steps=500, quick_steps=100, batch_size=128, lr=(1e-3, 1e-2))
# W2: the CNN with BatchNorm and Dropout
W2 = dict(steps=200, quick_steps=50, batch_size=32, lr=(1e-3, 1e-2), weight_decay=(1e-4, 1e-2),
          dropout=(0.0, 0.25))
# W3: the character transformer
W3 = dict(steps=100, quick_steps=30, batch_size=16, lr=(1e-3, 5e-3), weight_decay=(1e-4, 1e-1),
          warmup_fraction=0.1, context=64, d_model=64, heads=4, layers=2)


@dataclasses.dataclass
class Workload:
    """One workload, in every form the benchmark runs it.

    Attributes:
      name, steps, batch_size: what it trains and for how long.
      data: `(x, y)` host arrays with a leading example axis.
      params, model_state: the initial parameters (and model state, or None) every way
        starts from.
      loss_fn, make_optimizer, space: the sweep's form (see `jt.sweep`).
      static: the name of the static hyperparameter, or None.
      configs: `configs(n)`, n configurations as a list of dicts of Python values.
      tutorial_loop: `tutorial_loop(config, indices, record)`: the tutorial's own
        training of one configuration on the minibatches `indices` [steps, batch];
        returns the losses of its last `record` steps (device arrays, not read back).
      exact: `exact(config)`: whether every way computes the same losses for config
        up to rounding (False where dropout draws different masks in each way).
    """

    name: str
    steps: int
    batch_size: int
    data: tuple[np.ndarray, np.ndarray]
    params: Any
    model_state: Any
    loss_fn: Callable
    make_optimizer: Callable
    space: jt.Space
    static: str | None
    configs: Callable[[int], list[dict]]
    tutorial_loop: Callable
    exact: Callable[[dict], bool] = lambda config: True


def grid(n: int, **columns: Any) -> list[dict]:
    """n configurations: the last column cycles fastest; a `(low, high)` tuple given as
    `log=` is spread log-evenly over as many values as the others leave room for."""
    fixed = {k: v for k, v in columns.items() if not isinstance(v, dict)}
    (spread_name, spread), = ((k, v) for k, v in columns.items() if isinstance(v, dict))
    cycle = math.prod(len(v) for v in fixed.values())
    values = np.geomspace(*spread["log"], max(1, -(-n // cycle)))
    if len(values) == 1:
        values = np.array([math.sqrt(spread["log"][0] * spread["log"][1])])
    configs = []
    for i in range(n):
        config, rest = {spread_name: float(values[i // cycle])}, i
        for name in reversed(fixed):
            config[name] = fixed[name][rest % len(fixed[name])]
            rest //= len(fixed[name])
        configs.append(config)
    return configs


def _host_batch(data, rows):
    return tuple(a[rows] for a in data)


# ------------------------------------------------------------------------------ W1


def digits_mlp(steps: int) -> Workload:
    """W1: `jaxtune.demo`'s MLP, trained the way `bench/sweep_speed.py`'s loop A trains it."""
    data = jt.load_digits()
    params = mlp_init(jax.random.key(SEED))

    def tutorial_loop(config, indices, record):
        optimizer = optax.adam(config["learning_rate"])

        @jax.jit
        def step(params, opt_state, batch):
            loss, grads = jax.value_and_grad(cross_entropy)(params, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        p, opt_state, tail = params, optimizer.init(params), []
        for t, rows in enumerate(indices):
            p, opt_state, loss = step(p, opt_state, _host_batch((data.x_train, data.y_train), rows))
            if t >= len(indices) - record:
                tail.append(loss)
        return tail

    return Workload(
        "W1", steps, W1["batch_size"], (data.x_train, data.y_train), params, None,
        loss_fn=cross_entropy, make_optimizer=lambda learning_rate: optax.adam(learning_rate),
        space=jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1)), static=None,
        configs=lambda n: grid(n, learning_rate={"log": W1["lr"]}), tutorial_loop=tutorial_loop)


# ------------------------------------------------------------------------------ W2


class CNN(nnx.Module):
    """The MNIST tutorial's CNN shape for 8x8 images (see the module docstring)."""

    def __init__(self, dropout: float, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.linear1 = nnx.Linear(2 * 2 * 64, 128, rngs=rngs)
        self.dropout = nnx.Dropout(rate=dropout, rngs=rngs)
        self.linear2 = nnx.Linear(128, 10, rngs=rngs)
        self.pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))

    def __call__(self, x, rngs=None):
        x = self.pool(nnx.relu(self.norm1(self.conv1(x))))
        x = self.pool(nnx.relu(self.norm2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(nnx.relu(self.linear1(x)), rngs=rngs)
        return self.linear2(x)


def _nnx_loss(model, batch):
    logits = model(batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()


@nnx.jit
def nnx_train_step(model, optimizer, batch):
    """The Flax NNX tutorials' train step: gradients of the model, an in-place update."""
    loss, grads = nnx.value_and_grad(_nnx_loss)(model, batch)
    optimizer.update(model, grads)
    return loss


def _nnx_tutorial_loop(build: Callable[[dict], nnx.Module], data) -> Callable:
    """The tutorial loop of an NNX model: `nnx.Optimizer(adamw)` and `nnx_train_step`."""

    def tutorial_loop(config, indices, record):
        model = build(config)
        model.train()
        optimizer = nnx.Optimizer(
            model, optax.adamw(config["learning_rate"], weight_decay=config["weight_decay"]),
            wrt=nnx.Param)
        tail = []
        for t, rows in enumerate(indices):
            loss = nnx_train_step(model, optimizer, _host_batch(data, rows))
            if t >= len(indices) - record:
                tail.append(loss)
        return tail

    return tutorial_loop


def _cnn_graphdef(dropout: float):
    """The CNN in training mode, split: (graphdef, params, batch statistics, the rest)."""
    model = CNN(dropout, rngs=nnx.Rngs(SEED))
    model.train()
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def digits_cnn(steps: int) -> Workload:
    """W2: the CNN with BatchNorm and Dropout on the digits as 8x8 images."""
    digits = jt.load_digits()
    data = (digits.x_train.reshape(-1, 8, 8, 1), digits.y_train)
    splits = {rate: _cnn_graphdef(rate) for rate in W2["dropout"]}
    _, params, stats, _ = splits[W2["dropout"][0]]

    def loss_fn(params, batch, key, *, model_state, dropout):
        graphdef, _, _, rest = splits[dropout]
        model = nnx.merge(graphdef, params, model_state, rest, copy=True)
        logits = model(batch[0], rngs=key)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
        return loss, (nnx.state(model, nnx.BatchStat), None)

    def make_optimizer(learning_rate, weight_decay):
        return optax.adamw(learning_rate, weight_decay=weight_decay)

    return Workload(
        "W2", steps, W2["batch_size"], data, params, stats, loss_fn, make_optimizer,
        space=jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1), weight_decay=jt.loguniform(1e-5, 1.0),
                       dropout=jt.choice(list(W2["dropout"]), static=True)),
        static="dropout",
        configs=lambda n: grid(n, learning_rate={"log": W2["lr"]},
                               weight_decay=list(W2["weight_decay"]), dropout=list(W2["dropout"])),
        tutorial_loop=_nnx_tutorial_loop(lambda c: CNN(c["dropout"], rngs=nnx.Rngs(SEED)), data),
        exact=lambda config: config["dropout"] == 0.0)


# ------------------------------------------------------------------------------ W3


class Block(nnx.Module):
    """A pre-LayerNorm transformer block: causal self-attention, then a 4x MLP."""

    def __init__(self, d_model: int, heads: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, d_model, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.up = nnx.Linear(d_model, 4 * d_model, rngs=rngs)
        self.down = nnx.Linear(4 * d_model, d_model, rngs=rngs)

    def __call__(self, x, mask):
        x = x + self.attention(self.norm1(x), mask=mask)
        return x + self.down(nnx.gelu(self.up(self.norm2(x))))


class CharTransformer(nnx.Module):
    """A decoder-only language model over characters: token + position embeddings,
    `layers` blocks, a final LayerNorm and a linear head."""

    def __init__(self, vocab: int, *, rngs: nnx.Rngs):
        d_model = W3["d_model"]
        self.tokens = nnx.Embed(vocab, d_model, rngs=rngs)
        self.positions = nnx.Embed(W3["context"], d_model, rngs=rngs)
        self.blocks = nnx.List([Block(d_model, W3["heads"], rngs=rngs) for _ in range(W3["layers"])])
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, vocab, rngs=rngs)

    def __call__(self, tokens):
        x = self.tokens(tokens) + self.positions(jnp.arange(tokens.shape[-1]))
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


def char_corpus(context: int) -> tuple[np.ndarray, np.ndarray, int]:
    """`(x, y, vocab)`: non-overlapping windows of `context + 1` characters of the help
    topics that ship with Python (`pydoc_data.topics`), y being x shifted by one."""
    from pydoc_data.topics import topics

    text = "".join(topics[name] for name in sorted(topics))
    alphabet = sorted(set(text))
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    lookup = np.searchsorted(np.array([ord(c) for c in alphabet], np.uint32), codes).astype(np.int32)
    windows = lookup[: len(lookup) // (context + 1) * (context + 1)].reshape(-1, context + 1)
    return windows[:, :-1].copy(), windows[:, 1:].copy(), len(alphabet)


def _schedule(learning_rate, steps: int, schedules=optax):
    """Linear warmup over the first tenth of the steps, then cosine decay to 0: `optax`'s
    schedule for the tutorial's Python floats, `jt`'s (same values, traced arguments) in
    the sweep's form."""
    return schedules.warmup_cosine_decay_schedule(
        0.0, learning_rate, max(1, int(W3["warmup_fraction"] * steps)), steps)


def char_transformer(steps: int) -> Workload:
    """W3: the character transformer, `optax.adamw` under warmup + cosine decay."""
    x, y, vocab = char_corpus(W3["context"])
    graphdef, params = nnx.split(CharTransformer(vocab, rngs=nnx.Rngs(SEED)))

    def loss_fn(params, batch):
        logits = nnx.merge(graphdef, params)(batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

    def make_optimizer(learning_rate, weight_decay):
        return optax.adamw(_schedule(learning_rate, steps, jt), weight_decay=weight_decay)

    def build(config):
        return CharTransformer(vocab, rngs=nnx.Rngs(SEED))

    def tutorial_loop(config, indices, record):
        config = dict(config, learning_rate=_schedule(config["learning_rate"], steps))
        return _nnx_tutorial_loop(build, (x, y))(config, indices, record)

    return Workload(
        "W3", steps, W3["batch_size"], (x, y), params, None, loss_fn, make_optimizer,
        space=jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1), weight_decay=jt.loguniform(1e-5, 1.0)),
        static=None,
        configs=lambda n: grid(n, learning_rate={"log": W3["lr"]}, weight_decay=list(W3["weight_decay"])),
        tutorial_loop=tutorial_loop)


WORKLOADS: dict[str, Callable[[int], Workload]] = {"W1": digits_mlp, "W2": digits_cnn, "W3": char_transformer}
DEFAULTS = {"W1": W1, "W2": W2, "W3": W3}
