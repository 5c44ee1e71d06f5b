"""The demo workload: an MLP on scikit-learn's bundled digits, Adam(W) swept.

Used by `jaxtune demo`, the example notebook and the benchmark, so all three
train exactly the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxtune import metrics
from jaxtune.data import load_digits
from jaxtune.results import SweepResult
from jaxtune.schedules import cosine_decay_schedule
from jaxtune.space import Space, choice, loguniform
from jaxtune.sweep import sweep

LAYER_SIZES = (64, 128, 128, 10)


def mlp_init(key: jax.Array, sizes: Sequence[int] = LAYER_SIZES) -> list[dict[str, jax.Array]]:
    """He-initialised dense layers: a list of {"w": [in, out], "b": [out]}."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def mlp_apply(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    """Logits of a ReLU MLP."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def cross_entropy(params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Mean softmax cross-entropy of the MLP on a batch `(x, labels)`."""
    x, labels = batch
    logits = mlp_apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def evaluate(params: Any, data: tuple[jax.Array, jax.Array]) -> dict[str, jax.Array]:
    """Validation loss, accuracy and macro F1."""
    x, labels = data
    logits = mlp_apply(params, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    scores = metrics.classification_metrics(labels, logits, metrics=("accuracy", "f1_macro"))
    return {"eval_loss": loss, **scores}


def digits_space() -> Space:
    """The demo's search space: Adam learning rate and decoupled weight decay."""
    return Space(
        learning_rate=loguniform(1e-4, 1e-1),
        weight_decay=choice([0.0, 1e-4, 1e-3, 1e-2]),
    )


def digits_sweep(
    *,
    trials: int = 32,
    seeds: int = 2,
    steps: int = 500,
    batch_size: int = 128,
    sampler: str = "sobol",
    seed: int = 0,
    progress: bool = True,
    **sweep_kwargs: Any,
) -> SweepResult:
    """Sweeps AdamW with a cosine-decayed learning rate on the digits MLP.

    Args:
      trials: configurations drawn from `digits_space()`.
      seeds: seeds per configuration.
      steps: optimizer steps per member.
      batch_size: examples per step.
      sampler: "random", "sobol", "halton" or "grid".
      seed: root seed of the sweep.
      progress: draw a progress bar.
      **sweep_kwargs: passed on to `jaxtune.sweep`.

    Returns:
      The `SweepResult`, ranked by validation accuracy.
    """
    data = load_digits()

    def make_optimizer(learning_rate, weight_decay):
        schedule = cosine_decay_schedule(learning_rate, decay_steps=steps)
        return optax.adamw(schedule, weight_decay=weight_decay)

    return sweep(
        cross_entropy,
        mlp_init,
        make_optimizer,
        digits_space(),
        data=(data.x_train, data.y_train),
        eval_data=(data.x_valid, data.y_valid),
        eval_fn=evaluate,
        batch_size=batch_size,
        steps=steps,
        trials=None if sampler == "grid" else trials,
        sampler=sampler,
        seeds=seeds,
        seed=seed,
        metric="accuracy",
        mode="max",
        progress=progress,
        **sweep_kwargs,
    )
