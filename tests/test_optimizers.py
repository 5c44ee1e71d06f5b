"""optax's own optimizers are sweepable as they stand: every numeric argument traced.

One registry of (optimizer, argument, values) drives the checks: for each entry, a
`jit(vmap(...))` over the values, run for many steps, equals the loop over the
optax optimizer built with Python floats. A second registry does the same with
jaxtune schedules (traced `warmup_steps` / `transition_steps`) as `learning_rate`,
against the optax optimizer with optax's schedule. All of sgd (momentum,
nesterov), adam, adamw, rmsprop (momentum, centered), adagrad and lion pass, so
jaxtune needs no optimizer constructors of its own (optax 0.2.8).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rounding

import jaxtune as jt

STEPS = 40

# A small least-squares problem with a matrix and a vector leaf, so the gradients
# change from step to step and every moment estimate matters.
_RNG = np.random.default_rng(0)
_X = jnp.asarray(_RNG.normal(size=(16, 3)), jnp.float32)
_Y = jnp.asarray(_RNG.normal(size=(16, 2)), jnp.float32)
PARAMS = {"w": jnp.asarray(_RNG.normal(size=(3, 2)), jnp.float32),
          "b": jnp.zeros(2, jnp.float32)}


def loss_fn(params):
    return jnp.mean((_X @ params["w"] + params["b"] - _Y) ** 2)


def train(optimizer, steps=STEPS):
    """Runs `steps` steps of `optimizer` from PARAMS; returns params and losses."""

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = jax.lax.scan(step, (PARAMS, optimizer.init(PARAMS)), None,
                                       length=steps)
    return params, losses


def assert_members_equal_references(batched, references):
    """Each vmapped member equals its own run; the swept value changes the result."""
    batched_params, batched_losses = batched
    for member, (params, losses) in enumerate(references):
        member_params = jax.tree.map(lambda x, m=member: x[m], batched_params)
        chex.assert_trees_all_close(member_params, params, **rounding(STEPS))
        np.testing.assert_allclose(batched_losses[member], losses, **rounding(STEPS))
    finals = np.asarray(batched_losses[:, -1])
    assert np.ptp(finals) > 1e-6 * np.abs(finals).max(), finals


@dataclasses.dataclass(frozen=True)
class Case:
    """An optimizer, the argument swept, its values and the arguments held fixed."""

    optimizer: Callable[..., optax.GradientTransformation]
    argument: str
    values: tuple[float, ...]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.fixed.items() if k != "learning_rate")
        return f"{self.optimizer.__name__}-{self.argument}" + (f"[{extra}]" if extra else "")

    def build(self, value):
        kwargs = {"learning_rate": 0.05, **self.fixed, self.argument: value}
        return self.optimizer(**kwargs)


LR = (0.01, 0.05, 0.2)
RMS = {"learning_rate": 0.003}  # larger steps make rmsprop chaotic on this problem
REGISTRY = [
    Case(optax.sgd, "learning_rate", LR),
    Case(optax.sgd, "learning_rate", LR, {"momentum": 0.9}),
    Case(optax.sgd, "momentum", (0.0, 0.5, 0.9)),
    Case(optax.sgd, "momentum", (0.0, 0.5, 0.9), {"nesterov": True}),
    Case(optax.adam, "learning_rate", LR),
    Case(optax.adam, "b1", (0.0, 0.5, 0.9)),
    Case(optax.adam, "b2", (0.9, 0.99, 0.999)),
    Case(optax.adam, "eps", (1e-8, 1e-3, 0.1)),
    Case(optax.adam, "eps_root", (0.0, 1e-6, 1e-2)),
    Case(optax.adam, "b1", (0.0, 0.5, 0.9), {"nesterov": True}),
    Case(optax.adamw, "learning_rate", LR),
    Case(optax.adamw, "b1", (0.0, 0.5, 0.9)),
    Case(optax.adamw, "b2", (0.9, 0.99, 0.999)),
    Case(optax.adamw, "eps", (1e-8, 1e-3, 0.1)),
    Case(optax.adamw, "weight_decay", (0.0, 0.1, 1.0)),
    Case(optax.adamw, "weight_decay", (0.0, 0.1, 1.0), {"mask": {"w": True, "b": False}}),
    Case(optax.rmsprop, "learning_rate", (0.001, 0.003, 0.01)),
    Case(optax.rmsprop, "decay", (0.5, 0.9, 0.99), RMS),
    Case(optax.rmsprop, "eps", (1e-8, 1e-3, 0.1), RMS),
    Case(optax.rmsprop, "eps", (1e-8, 1e-3, 0.1), {**RMS, "eps_in_sqrt": False}),
    Case(optax.rmsprop, "initial_scale", (0.0, 0.1, 1.0), RMS),
    Case(optax.rmsprop, "decay", (0.5, 0.9, 0.99), {**RMS, "bias_correction": True}),
    Case(optax.rmsprop, "momentum", (0.0, 0.5, 0.9), RMS),
    Case(optax.rmsprop, "momentum", (0.0, 0.5, 0.9), {**RMS, "nesterov": True}),
    Case(optax.rmsprop, "decay", (0.5, 0.9, 0.99), {**RMS, "centered": True}),
    Case(optax.rmsprop, "eps", (1e-8, 1e-3, 0.1), {**RMS, "centered": True}),
    Case(optax.rmsprop, "momentum", (0.0, 0.5, 0.9), {**RMS, "centered": True}),
    Case(optax.adagrad, "learning_rate", LR),
    Case(optax.adagrad, "initial_accumulator_value", (0.0, 0.1, 1.0)),
    Case(optax.adagrad, "eps", (1e-7, 1e-3, 0.1)),
    Case(optax.lion, "learning_rate", (0.001, 0.005, 0.02)),
    Case(optax.lion, "b1", (0.0, 0.5, 0.9), {"learning_rate": 0.005}),
    Case(optax.lion, "b2", (0.5, 0.9, 0.99), {"learning_rate": 0.005}),
    Case(optax.lion, "weight_decay", (0.0, 0.1, 1.0), {"learning_rate": 0.005}),
]


@pytest.mark.parametrize("case", REGISTRY, ids=lambda case: case.id)
def test_traced_hyperparameter_vmap_equals_optax_with_python_floats(case):
    # The reference: optax built with Python floats (the float32 values the members
    # get, so that e.g. `1 - b2` is the same number), closed over at trace time.
    # Both sides go into one jitted function: one compilation per case.
    floats = [float(np.float32(value)) for value in case.values]

    @jax.jit
    def run(values):
        batched = jax.vmap(lambda value: train(case.build(value)))(values)
        return batched, [train(case.build(value)) for value in floats]

    assert_members_equal_references(*run(jnp.asarray(floats, jnp.float32)))


# --------------------------------------------------------------------------- #
# jaxtune schedules (traced step-count arguments) as learning rates
# --------------------------------------------------------------------------- #

OPTIMIZERS = {
    "sgd": lambda lr: optax.sgd(lr),
    "sgd-momentum-nesterov": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    "adam": lambda lr: optax.adam(lr),
    "adamw": lambda lr: optax.adamw(lr, weight_decay=0.1),
    "rmsprop-centered-momentum": lambda lr: optax.rmsprop(lr, centered=True, momentum=0.5),
    "adagrad": lambda lr: optax.adagrad(lr),
    "lion": lambda lr: optax.lion(lr),
}
PEAK = {"lion": 0.01, "rmsprop-centered-momentum": 0.003}
STEP_VALUES = (1, 6, 15)
SCHEDULES = {
    # name: (jaxtune schedule of the traced steps, optax schedule of the int steps)
    "warmup_cosine_decay": (
        lambda peak, steps: jt.warmup_cosine_decay_schedule(0.0, peak, steps, 30, 0.1 * peak),
        lambda peak, steps: optax.warmup_cosine_decay_schedule(0.0, peak, steps, 30,
                                                               0.1 * peak),
    ),
    "linear": (
        lambda peak, steps: jt.linear_schedule(peak, 0.1 * peak, steps, 3),
        lambda peak, steps: optax.linear_schedule(peak, 0.1 * peak, steps, 3),
    ),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_jaxtune_schedule_with_traced_steps_as_learning_rate(name, schedule):
    make_optimizer, peak = OPTIMIZERS[name], PEAK.get(name, 0.1)
    ours, theirs = SCHEDULES[schedule]
    @jax.jit
    def run(step_values):
        batched = jax.vmap(lambda steps: train(make_optimizer(ours(peak, steps))))(step_values)
        return batched, [train(make_optimizer(theirs(peak, steps))) for steps in STEP_VALUES]

    assert_members_equal_references(*run(jnp.asarray(STEP_VALUES)))


# --------------------------------------------------------------------------- #
# No recompilation: hyperparameters as arrays
# --------------------------------------------------------------------------- #

FAMILIES = {
    # name: (optimizer from a dict of arrays, three configurations)
    "sgd": (lambda h: optax.sgd(h["learning_rate"], momentum=h["momentum"], nesterov=True),
            [dict(learning_rate=0.1, momentum=0.9), dict(learning_rate=0.01, momentum=0.0),
             dict(learning_rate=0.05, momentum=0.5)]),
    "adamw": (lambda h: optax.adamw(jt.warmup_cosine_decay_schedule(
                  0.0, h["learning_rate"], h["warmup_steps"], 50), h["b1"], h["b2"], h["eps"],
                  weight_decay=h["weight_decay"]),
              [dict(learning_rate=0.1, warmup_steps=5, b1=0.9, b2=0.999, eps=1e-8,
                    weight_decay=1e-4),
               dict(learning_rate=0.01, warmup_steps=0, b1=0.5, b2=0.99, eps=1e-3,
                    weight_decay=0.1),
               dict(learning_rate=0.03, warmup_steps=10, b1=0.0, b2=0.9, eps=1e-6,
                    weight_decay=0.0)]),
    "rmsprop": (lambda h: optax.rmsprop(h["learning_rate"], h["decay"], h["eps"],
                                        h["initial_scale"], centered=True,
                                        momentum=h["momentum"]),
                [dict(learning_rate=0.01, decay=0.9, eps=1e-8, initial_scale=0.0, momentum=0.9),
                 dict(learning_rate=0.001, decay=0.99, eps=1e-4, initial_scale=1.0,
                      momentum=0.0),
                 dict(learning_rate=0.02, decay=0.5, eps=1e-6, initial_scale=0.1,
                      momentum=0.5)]),
    "adagrad": (lambda h: optax.adagrad(h["learning_rate"], h["initial_accumulator_value"],
                                        h["eps"]),
                [dict(learning_rate=0.1, initial_accumulator_value=0.1, eps=1e-7),
                 dict(learning_rate=0.5, initial_accumulator_value=0.0, eps=1e-3),
                 dict(learning_rate=0.01, initial_accumulator_value=1.0, eps=1e-5)]),
    "lion": (lambda h: optax.lion(jt.linear_schedule(h["learning_rate"], 0.0,
                                                     h["transition_steps"]),
                                  h["b1"], h["b2"], weight_decay=h["weight_decay"]),
             [dict(learning_rate=0.01, transition_steps=20, b1=0.9, b2=0.99, weight_decay=0.0),
              dict(learning_rate=0.001, transition_steps=5, b1=0.5, b2=0.9, weight_decay=0.1),
              dict(learning_rate=0.005, transition_steps=50, b1=0.0, b2=0.5,
                   weight_decay=1.0)]),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_jitted_train_step_compiles_once_across_hyperparameters(name):
    make_optimizer, configurations = FAMILIES[name]

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train_step(params, state, hyper):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = make_optimizer(hyper).update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    chex.clear_trace_counter()
    finals = []
    for configuration in configurations:
        # Hyperparameters as arrays with fixed dtypes: new values, same trace.
        hyper = {k: jnp.asarray(v, jnp.int32 if k.endswith("_steps") else jnp.float32)
                 for k, v in configuration.items()}
        params, state = PARAMS, make_optimizer(hyper).init(PARAMS)
        for _ in range(6):
            params, state, loss = train_step(params, state, hyper)
        finals.append(float(loss))
    assert len(set(finals)) == len(configurations)
