"""Schedules: trace-safety of every numeric argument, no recompilation, properties,
hand-checked values of the schedules optax lacks, and every error path.

Parity with optax lives in test_schedules_parity.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxtune as jt

# Steps around every boundary used by the registry below (±1), and far past the end.
COUNTS = np.array(
    [0, 1, 2, 4, 5, 6, 9, 10, 11, 15, 19, 20, 21, 25, 29, 30, 31, 39, 40, 41, 49, 50, 51,
     59, 60, 61, 79, 80, 81, 84, 85, 86, 99, 100, 101, 109, 110, 111, 150, 199, 200, 201,
     1_000, 100_000],
    np.int32,
)
HYPOTHESIS = settings(max_examples=25, deadline=None, derandomize=True)


def _close(actual, expected, rtol=2e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    finite_values = np.abs(expected[np.isfinite(expected)])
    scale = max(float(np.max(finite_values, initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------ the registry


class Sweep(NamedTuple):
    """One numeric argument of one schedule: `build(v)` is the schedule at value v."""

    name: str
    build: Callable[[Any], Callable]
    values: list


def _kwargs_sweeps(fn, base: dict, grid: dict, label: str | None = None) -> list[Sweep]:
    sweeps = []
    for arg, values in grid.items():
        def build(v, arg=arg):
            return fn(**{**base, arg: v})
        sweeps.append(Sweep(f"{label or fn.__name__}.{arg}", build, values))
    return sweeps


INIT = [0.5, 1.0, 2.0]
END = [0.0, 0.1, 0.3]

LINEAR = {"init_value": 1.0, "end_value": 0.1, "transition_steps": 50, "transition_begin": 10}
POLY = dict(LINEAR, power=2.0)
COSINE = {"init_value": 1.0, "decay_steps": 50, "alpha": 0.1, "exponent": 1.0}
EXPONENTIAL = {"init_value": 1.0, "transition_steps": 5, "decay_rate": 0.8,
               "transition_begin": 10, "end_value": 0.1}
WARMUP_CONSTANT = {"init_value": 0.1, "peak_value": 1.0, "warmup_steps": 10}
WARMUP_COSINE = {"init_value": 0.1, "peak_value": 1.0, "warmup_steps": 10, "decay_steps": 100,
                 "end_value": 0.05, "exponent": 1.0}
WARMUP_EXPONENTIAL = {"init_value": 0.1, "peak_value": 1.0, "warmup_steps": 10,
                      "transition_steps": 5, "decay_rate": 0.8, "transition_begin": 5,
                      "end_value": 0.1}
LINEAR_ONECYCLE = {"transition_steps": 100, "peak_value": 1.0, "pct_start": 0.3,
                   "pct_final": 0.85, "div_factor": 25.0, "final_div_factor": 1e4}
COSINE_ONECYCLE = {"transition_steps": 100, "peak_value": 1.0, "pct_start": 0.3,
                   "div_factor": 25.0, "final_div_factor": 1e4}
CYCLE_0 = {"init_value": 0.1, "peak_value": 1.0, "warmup_steps": 5, "decay_steps": 40,
           "end_value": 0.01, "exponent": 1.0}
CYCLE_1 = {"init_value": 0.0, "peak_value": 0.5, "warmup_steps": 10, "decay_steps": 60,
           "end_value": 0.0, "exponent": 2.0}
WSD = {"init_value": 0.1, "peak_value": 1.0, "warmup_steps": 10, "stable_steps": 20,
       "decay_steps": 40, "end_value": 0.05}
INVERSE_SQRT = {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 10}
CYCLIC = {"base_value": 0.1, "max_value": 1.0, "step_size": 10, "mode": "exp_range",
          "gamma": 0.99}

STEP_SIZES = [0, 1, 30, 50, 80]  # 0 included: the degenerate case must agree too


def _join_three(boundaries):
    return jt.join_schedules(
        [jt.linear_schedule(1.0, 0.5, 20), jt.cosine_decay_schedule(0.5, 50),
         jt.constant_schedule(0.2)],
        boundaries,
    )


def _piecewise_sweeps(label: str, fn) -> list[Sweep]:
    return [
        Sweep(f"{label}.init_value", lambda v: fn(v, {20: 0.5, 50: 0.1}), INIT),
        Sweep(f"{label}.dict_scale", lambda v: fn(1.0, {20: v, 50: 0.1}), [0.0, 0.5, 2.0]),
        Sweep(f"{label}.boundaries_array",
              lambda b: fn(1.0, (b, [0.5, 0.1])),
              [np.array([20, 50]), np.array([10, 100]), np.array([0, 30]),
               np.array([40, 40])]),
        Sweep(f"{label}.boundary_scalar",
              lambda v: fn(1.0, ([10, v, 80], [0.5, 2.0, 0.1])), [10, 30, 50, 80]),
        Sweep(f"{label}.scales_array",
              lambda s: fn(1.0, ([20, 50], s)),
              [np.array([0.5, 0.1]), np.array([2.0, 0.0]), np.array([1.0, 1.0])]),
    ]


REGISTRY: list[Sweep] = [
    Sweep("constant_schedule.value", jt.constant_schedule, [0.1, 0.5, 1.0]),
    *_kwargs_sweeps(jt.linear_schedule, LINEAR, {
        "init_value": INIT, "end_value": END, "transition_steps": STEP_SIZES,
        "transition_begin": [0, 10, 30]}),
    *_kwargs_sweeps(jt.polynomial_schedule, POLY, {
        "init_value": INIT, "end_value": END, "power": [0.0, 0.5, 1.0, 3.0],
        "transition_steps": STEP_SIZES, "transition_begin": [0, 10, 30]}),
    *_kwargs_sweeps(jt.cosine_decay_schedule, COSINE, {
        "init_value": INIT, "decay_steps": [1, 30, 100], "alpha": [0.0, 0.1, 0.5],
        "exponent": [0.0, 0.5, 1.0, 2.0]}),
    *_kwargs_sweeps(jt.exponential_decay, EXPONENTIAL, {
        "init_value": INIT, "transition_steps": [1, 5, 20], "decay_rate": [0.5, 0.9, 1.0, 1.1],
        "transition_begin": [0, 5, 20], "end_value": [0.05, 0.2, 0.4]}),
    *_kwargs_sweeps(jt.exponential_decay, dict(EXPONENTIAL, staircase=True, end_value=None),
                    {"transition_steps": [1, 5, 20], "decay_rate": [0.5, 1.5]},
                    label="exponential_decay[staircase]"),
    *_piecewise_sweeps("piecewise_constant_schedule", jt.piecewise_constant_schedule),
    *_piecewise_sweeps(
        "piecewise_interpolate_schedule[linear]",
        lambda init, bas: jt.piecewise_interpolate_schedule("linear", init, bas)),
    *_piecewise_sweeps(
        "piecewise_interpolate_schedule[cosine]",
        lambda init, bas: jt.piecewise_interpolate_schedule("cosine", init, bas)),
    *_kwargs_sweeps(jt.warmup_constant_schedule, WARMUP_CONSTANT, {
        "init_value": INIT, "peak_value": INIT, "warmup_steps": [0, 1, 10, 30]}),
    *_kwargs_sweeps(jt.warmup_cosine_decay_schedule, WARMUP_COSINE, {
        "init_value": [0.0, 0.1, 0.5], "peak_value": [0.0, 0.5, 1.0],
        "warmup_steps": [0, 10, 30], "decay_steps": [40, 100, 150],
        "end_value": [0.0, 0.05, 0.2], "exponent": [0.5, 1.0, 2.0]}),
    *_kwargs_sweeps(jt.warmup_exponential_decay_schedule, WARMUP_EXPONENTIAL, {
        "init_value": [0.0, 0.1, 0.5], "peak_value": INIT, "warmup_steps": [0, 10, 30],
        "transition_steps": [1, 5, 20], "decay_rate": [0.5, 0.9, 1.1],
        "transition_begin": [0, 5, 20], "end_value": [0.05, 0.2]}),
    *_kwargs_sweeps(jt.linear_onecycle_schedule, LINEAR_ONECYCLE, {
        "transition_steps": [50, 100, 200], "peak_value": INIT, "pct_start": [0.25, 0.3, 0.5],
        "pct_final": [0.5, 0.85, 1.0], "div_factor": [10.0, 25.0, 50.0],
        "final_div_factor": [10.0, 1e3, 1e4]}),
    *_kwargs_sweeps(jt.linear_onecycle_schedule, dict(LINEAR_ONECYCLE, transition_steps=10),
                    {"pct_final": [0.3, 0.35, 0.9]},  # 0.3, 0.35: boundaries coincide
                    label="linear_onecycle_schedule[collisions]"),
    *_kwargs_sweeps(jt.cosine_onecycle_schedule, COSINE_ONECYCLE, {
        "transition_steps": [50, 100, 200], "peak_value": INIT,
        "pct_start": [0.25, 0.3, 0.5, 1.0], "div_factor": [10.0, 25.0, 50.0],
        "final_div_factor": [10.0, 1e3, 1e4]}),
    *[
        Sweep(f"sgdr_schedule.cosine_kwargs[{i}].{key}",
              lambda v, i=i, key=key: jt.sgdr_schedule(
                  [dict(cycle, **({key: v} if j == i else {}))
                   for j, cycle in enumerate([CYCLE_0, CYCLE_1])]),
              values)
        for i, key, values in [
            (0, "init_value", [0.0, 0.1, 0.5]), (0, "peak_value", [0.0, 0.5, 1.0]),
            (0, "warmup_steps", [0, 5, 20]), (0, "decay_steps", [30, 40, 90]),
            (0, "end_value", [0.0, 0.01, 0.2]), (0, "exponent", [0.5, 1.0, 2.0]),
            (1, "decay_steps", [20, 60, 100]),
        ]
    ],
    Sweep("join_schedules.boundaries_array", _join_three,
          [np.array([20, 80]), np.array([0, 50]), np.array([30, 30]), np.array([0, 0])]),
    Sweep("join_schedules.boundary_scalar", lambda v: _join_three([v, 80]), [0, 20, 50, 80]),
    *_kwargs_sweeps(jt.warmup_stable_decay_schedule, WSD, {
        "init_value": [0.0, 0.1, 0.5], "peak_value": INIT, "warmup_steps": [0, 1, 10, 25],
        "stable_steps": [0, 20, 50], "decay_steps": [0, 10, 40],
        "end_value": [0.0, 0.05, 0.3]}),
    *[
        sweep
        for decay_type in ("cosine", "sqrt")
        for sweep in _kwargs_sweeps(
            jt.warmup_stable_decay_schedule, dict(WSD, decay_type=decay_type),
            {"warmup_steps": [0, 10, 25], "stable_steps": [0, 20], "decay_steps": [0, 10, 40],
             "end_value": [0.0, 0.3]},
            label=f"warmup_stable_decay_schedule[{decay_type}]")
    ],
    *_kwargs_sweeps(jt.warmup_inverse_sqrt_schedule, INVERSE_SQRT, {
        "init_value": [0.0, 0.1, 0.5], "peak_value": INIT, "warmup_steps": [0, 1, 4, 10, 50]}),
    *_kwargs_sweeps(jt.cyclic_schedule, CYCLIC, {
        "base_value": [0.0, 0.1, 0.3], "max_value": [0.5, 1.0, 2.0], "step_size": [5, 10, 25],
        "gamma": [0.9, 0.99, 1.0]}),
    *_kwargs_sweeps(jt.cyclic_schedule, dict(CYCLIC, mode="triangular2"),
                    {"step_size": [5, 10, 25], "max_value": [0.5, 2.0]},
                    label="cyclic_schedule[triangular2]"),
    *_kwargs_sweeps(jt.cyclic_schedule, dict(CYCLIC, mode="triangular"),
                    {"step_size": [5, 10, 25], "base_value": [0.0, 0.3]},
                    label="cyclic_schedule[triangular]"),
]

PUBLIC_SCHEDULES = list(jt.schedules.__all__)


def test_registry_covers_every_numeric_argument():
    """Every numeric parameter of every public schedule has a sweep in the registry."""
    static = {"interpolate_type", "staircase", "decay_type", "mode", "schedules",
              "boundaries_and_scales", "cosine_kwargs", "boundaries"}
    covered = {sweep.name.split(".", 1)[0].split("[")[0] + "." + sweep.name.split(".")[-1]
               for sweep in REGISTRY}
    missing = []
    for name in PUBLIC_SCHEDULES:
        for param in inspect.signature(getattr(jt, name)).parameters:
            if param not in static and f"{name}.{param}" not in covered:
                missing.append(f"{name}.{param}")
    assert not missing
    # The list-valued arguments are covered through their parts.
    names = {sweep.name for sweep in REGISTRY}
    for structured in ("piecewise_constant_schedule.boundaries_array",
                       "piecewise_constant_schedule.scales_array",
                       "piecewise_interpolate_schedule[linear].boundaries_array",
                       "join_schedules.boundaries_array",
                       "sgdr_schedule.cosine_kwargs[0].decay_steps"):
        assert structured in names


# Gradients are checked within the schedules' horizon: far out, unbounded exponential
# growth overflows, and so does its gradient.
GRAD_COUNTS = COUNTS[COUNTS <= 201]


@pytest.mark.parametrize("sweep", REGISTRY, ids=lambda sweep: sweep.name)
def test_vmap_over_each_argument_equals_the_loop(sweep):
    values = np.asarray(sweep.values)
    member_counts = COUNTS[np.linspace(0, len(COUNTS) - 1, len(values)).astype(int)]
    scalar = values.ndim == 1

    def total(v):
        return jnp.sum(jnp.broadcast_to(sweep.build(v)(GRAD_COUNTS), GRAD_COUNTS.shape))

    @jax.jit  # one compilation for the three checks
    def swept(values, member_counts, float_values):
        every_count = jax.vmap(
            lambda v: jnp.broadcast_to(sweep.build(v)(COUNTS), COUNTS.shape))(values)
        # The count may be traced and batched along with the argument.
        own_count = jax.vmap(lambda v, count: sweep.build(v)(count))(values, member_counts)
        grads = jax.vmap(jax.grad(total))(float_values) if scalar else None
        return every_count, own_count, grads

    every_count, own_count, grads = swept(values, member_counts, values.astype(np.float32))
    looped = [np.broadcast_to(np.asarray(sweep.build(v)(COUNTS)), COUNTS.shape)
              for v in sweep.values]
    _close(every_count, np.stack(looped))
    looped = [np.asarray(sweep.build(v)(count)) for v, count in zip(sweep.values, member_counts)]
    _close(own_count, np.stack(looped))
    if scalar:
        assert np.all(np.isfinite(grads)), grads


def test_grad_matches_finite_differences():
    """d value / d peak_value and d value / d warmup_steps of the warm-up cosine schedule."""
    count = 25.0

    def value(peak, warmup):
        return jt.warmup_cosine_decay_schedule(0.0, peak, warmup, 100.0, 0.0)(count)

    d_peak, d_warmup = jax.grad(value, argnums=(0, 1))(0.8, 10.0)
    # value = peak * 0.5 * (1 + cos(pi * (count - w) / (100 - w)))
    def reference(peak, w):
        return peak * 0.5 * (1 + np.cos(np.pi * (count - w) / (100 - w)))

    eps = 1e-4
    np.testing.assert_allclose(d_peak, (reference(0.8 + eps, 10) - reference(0.8 - eps, 10))
                               / (2 * eps), rtol=1e-3)
    np.testing.assert_allclose(d_warmup, (reference(0.8, 10 + eps) - reference(0.8, 10 - eps))
                               / (2 * eps), rtol=1e-3)


# ------------------------------------------------------------- no recompilation

ALL_ARRAYS = {
    "constant_schedule": (jt.constant_schedule, [{"value": 0.1}, {"value": 0.3}]),
    "linear_schedule": (jt.linear_schedule, [LINEAR, dict(LINEAR, transition_steps=0,
                                                          transition_begin=3)]),
    "polynomial_schedule": (jt.polynomial_schedule, [POLY, dict(POLY, power=0.5,
                                                               transition_steps=7)]),
    "cosine_decay_schedule": (jt.cosine_decay_schedule, [COSINE, dict(COSINE, decay_steps=7,
                                                                     exponent=3.0)]),
    "exponential_decay": (jt.exponential_decay, [EXPONENTIAL, dict(EXPONENTIAL, decay_rate=1.2,
                                                                 end_value=2.0)]),
    "warmup_constant_schedule": (jt.warmup_constant_schedule,
                                 [WARMUP_CONSTANT, dict(WARMUP_CONSTANT, warmup_steps=0)]),
    "warmup_cosine_decay_schedule": (jt.warmup_cosine_decay_schedule,
                                     [WARMUP_COSINE, dict(WARMUP_COSINE, warmup_steps=0,
                                                          peak_value=0.0)]),
    "warmup_exponential_decay_schedule": (
        jt.warmup_exponential_decay_schedule,
        [WARMUP_EXPONENTIAL, dict(WARMUP_EXPONENTIAL, warmup_steps=30, decay_rate=0.5)]),
    "linear_onecycle_schedule": (jt.linear_onecycle_schedule,
                                 [LINEAR_ONECYCLE, dict(LINEAR_ONECYCLE, transition_steps=200,
                                                        pct_start=0.5, pct_final=1.0)]),
    "cosine_onecycle_schedule": (jt.cosine_onecycle_schedule,
                                 [COSINE_ONECYCLE, dict(COSINE_ONECYCLE, pct_start=0.5)]),
    "warmup_stable_decay_schedule": (jt.warmup_stable_decay_schedule,
                                     [WSD, dict(WSD, stable_steps=0, decay_steps=70)]),
    "warmup_inverse_sqrt_schedule": (jt.warmup_inverse_sqrt_schedule,
                                     [INVERSE_SQRT, dict(INVERSE_SQRT, warmup_steps=0)]),
    "cyclic_schedule": (jt.cyclic_schedule, [CYCLIC, dict(CYCLIC, step_size=25, gamma=0.9)]),
}


def _split_static(kwargs):
    numeric = {k: v for k, v in kwargs.items() if isinstance(v, (int, float))}
    static = {k: v for k, v in kwargs.items() if k not in numeric}
    return numeric, static


@pytest.mark.parametrize("name", sorted(ALL_ARRAYS))
def test_new_values_as_arrays_never_retrace(name):
    fn, settings_list = ALL_ARRAYS[name]
    _, static = _split_static(settings_list[0])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(numeric, counts):
        return fn(**numeric, **static)(counts)

    chex.clear_trace_counter()
    for kwargs in settings_list + settings_list[:1]:
        numeric, _ = _split_static(kwargs)
        arrays = {k: jnp.asarray(v, jnp.float32) for k, v in numeric.items()}
        _close(jnp.broadcast_to(run(arrays, COUNTS), COUNTS.shape),
               np.broadcast_to(np.asarray(fn(**kwargs)(COUNTS)), COUNTS.shape))


def test_structured_arguments_never_retrace():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(boundaries, scales, cycle_steps, join_at, counts):
        piecewise = jt.piecewise_interpolate_schedule("cosine", 1.0, (boundaries, scales))
        sgdr = jt.sgdr_schedule([dict(CYCLE_0, decay_steps=cycle_steps), CYCLE_1])
        joined = jt.join_schedules([piecewise, sgdr], join_at)
        return joined(counts)

    chex.clear_trace_counter()
    for boundaries, scales, cycle_steps, join_at in [
        ([20, 50], [0.5, 0.1], 40, [30]), ([10, 90], [2.0, 0.0], 25, [0]),
        ([5, 5], [0.3, 0.3], 80, [100]),
    ]:
        expected = jt.join_schedules(
            [jt.piecewise_interpolate_schedule("cosine", 1.0, (np.array(boundaries),
                                                               np.array(scales))),
             jt.sgdr_schedule([dict(CYCLE_0, decay_steps=cycle_steps), CYCLE_1])],
            join_at,
        )(COUNTS)
        _close(run(jnp.array(boundaries), jnp.array(scales), jnp.array(cycle_steps),
                   jnp.array(join_at), COUNTS), expected)


# --------------------------------------------------------- deliberate decisions


def test_zero_transition_steps_jumps_at_transition_begin():
    schedule = jt.linear_schedule(1.0, 0.2, transition_steps=0, transition_begin=10)
    _close(schedule(np.array([0, 9, 10, 11, 1000])), [1.0, 1.0, 0.2, 0.2, 0.2])
    # optax holds init_value forever instead (documented departure).
    assert float(optax.linear_schedule(1.0, 0.2, 0, 10)(11)) == 1.0
    poly = jt.polynomial_schedule(1.0, 0.2, power=2.0, transition_steps=0)
    _close(poly(np.array([0, 1, 50])), [0.2, 0.2, 0.2])


def test_warmup_steps_zero_means_no_warmup():
    counts = np.array([0, 1, 50, 99, 100, 500])
    _close(jt.warmup_constant_schedule(0.0, 1.0, 0)(counts), np.ones(6))
    for fn, kwargs in [
        (jt.warmup_cosine_decay_schedule,
         {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 0, "decay_steps": 100,
          "end_value": 0.1}),
        (jt.warmup_exponential_decay_schedule,
         {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 0, "transition_steps": 10,
          "decay_rate": 0.5}),
    ]:
        values = np.asarray(fn(**kwargs)(counts))
        assert values[0] == pytest.approx(1.0)
        _close(values, jax.vmap(getattr(optax, fn.__name__)(**kwargs))(counts))
    wsd = jt.warmup_stable_decay_schedule(0.0, 1.0, 0, 10, 10)
    assert float(wsd(0)) == 1.0
    inverse_sqrt = jt.warmup_inverse_sqrt_schedule(0.0, 1.0, 0)
    _close(inverse_sqrt(np.array([0, 1, 4, 100])), [1.0, 1.0, 0.5, 0.1])


def test_traced_degenerate_values():
    counts = np.array([0, 5, 10, 11, 100])

    def traced(fn, **kwargs):
        return jax.jit(lambda kw: fn(**kw)(counts))(
            {k: jnp.asarray(v) for k, v in kwargs.items()})

    # Negative step counts count as 0.
    _close(traced(jt.linear_schedule, init_value=1.0, end_value=0.0, transition_steps=10,
                  transition_begin=-5),
           jt.linear_schedule(1.0, 0.0, 10, 0)(counts))
    _close(traced(jt.warmup_cosine_decay_schedule, init_value=0.0, peak_value=1.0,
                  warmup_steps=-3, decay_steps=10.0),
           jt.warmup_cosine_decay_schedule(0.0, 1.0, 0, 10)(counts))
    # Exponential decay without a positive transition_steps or decay_rate: init_value.
    for bad in [{"transition_steps": 0.0, "decay_rate": 0.5},
                {"transition_steps": 5.0, "decay_rate": 0.0}]:
        _close(traced(jt.exponential_decay, init_value=0.7, end_value=0.1, **bad),
               np.full(5, 0.7))
    # Cosine decay of length <= 0: init_value at step 0, then alpha * init_value.
    _close(traced(jt.cosine_decay_schedule, init_value=2.0, decay_steps=0.0, alpha=0.1),
           [2.0, 0.2, 0.2, 0.2, 0.2])
    # decay_steps == warmup_steps: peak at the end of the warm-up, then end_value.
    _close(traced(jt.warmup_cosine_decay_schedule, init_value=0.0, peak_value=1.0,
                  warmup_steps=10, decay_steps=10, end_value=0.3),
           [0.0, 0.5, 1.0, 0.3, 0.3])
    # One-cycle of length <= 0: the final value throughout.
    final = 1.0 / (25.0 * 1e4)
    _close(traced(jt.linear_onecycle_schedule, transition_steps=0, peak_value=1.0),
           np.full(5, final))
    _close(traced(jt.cosine_onecycle_schedule, transition_steps=-4, peak_value=1.0),
           np.full(5, final))
    # Cyclic with step_size <= 0: base_value.
    _close(traced(jt.cyclic_schedule, base_value=0.2, max_value=1.0, step_size=0.0),
           np.full(5, 0.2))
    # Unsorted and negative traced boundaries are sorted and clipped at 0.
    swept = jax.jit(lambda b: jt.piecewise_interpolate_schedule(
        "linear", 1.0, (b, jnp.array([0.5, 0.1])))(counts))(jnp.array([10, -5]))
    _close(swept, jt.piecewise_interpolate_schedule("linear", 1.0, {0: 0.1, 10: 0.5})(counts))


def test_onecycle_boundaries_follow_python_int_when_concrete():
    """int(0.29 * 100) is 28 in float64 (optax), 29 in float32: concrete arguments follow
    optax, even when the schedule is built inside jit."""
    counts = np.arange(25, 35)
    expected_linear = jax.vmap(optax.linear_onecycle_schedule(100, 1.0, 0.29, 0.85))(counts)
    expected_cosine = jax.vmap(optax.cosine_onecycle_schedule(100, 1.0, 0.29))(counts)
    assert np.argmax(expected_linear) == 28 - 25
    for expected, build in [
        (expected_linear, lambda c: jt.linear_onecycle_schedule(100, 1.0, 0.29, 0.85)(c)),
        (expected_cosine, lambda c: jt.cosine_onecycle_schedule(100, 1.0, 0.29)(c)),
    ]:
        _close(build(counts), expected)
        _close(jax.jit(build)(counts), expected)


def test_array_forms_equal_the_dict_form():
    counts = COUNTS
    as_dict = {10: 0.5, 40: 3.0, 100: 0.1}
    as_arrays = (np.array([10, 40, 100]), np.array([0.5, 3.0, 0.1]))
    as_lists = ([10, 40, 100], [0.5, 3.0, 0.1])
    for fn in (jt.piecewise_constant_schedule,
               lambda i, b: jt.piecewise_interpolate_schedule("cosine", i, b)):
        reference = fn(2.0, as_dict)(counts)
        _close(fn(2.0, as_arrays)(counts), reference)
        _close(fn(2.0, as_lists)(counts), reference)
    # Repeated boundaries in the array form apply both scales.
    _close(jt.piecewise_constant_schedule(1.0, ([10, 10], [0.5, 0.2]))(np.array([9, 10])),
           [1.0, 0.1])


def test_empty_piecewise_is_constant():
    counts = np.array([0, 10, 1000])
    assert jt.piecewise_constant_schedule(0.3)(5) == 0.3
    assert jt.piecewise_constant_schedule(0.3, {})(5) == 0.3
    _close(jt.piecewise_constant_schedule(0.3, ([], []))(counts) * np.ones(3), np.full(3, 0.3))
    _close(jt.piecewise_interpolate_schedule("linear", 0.3, {})(counts), np.full(3, 0.3))


def test_output_dtypes_follow_optax():
    count = jnp.asarray(7, jnp.int32)
    cases = [
        (jt.linear_schedule(1.0, 0.0, 10), optax.linear_schedule(1.0, 0.0, 10)),
        (jt.cosine_decay_schedule(1.0, 10), optax.cosine_decay_schedule(1.0, 10)),
        (jt.exponential_decay(1.0, 10, 0.5), optax.exponential_decay(1.0, 10, 0.5)),
        (jt.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20),
         optax.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20)),
        (jt.piecewise_interpolate_schedule("linear", 1.0, {5: 0.5}),
         optax.piecewise_interpolate_schedule("linear", 1.0, {5: 0.5})),
        (jt.linear_onecycle_schedule(10, 1.0), optax.linear_onecycle_schedule(10, 1.0)),
    ]
    for mine, theirs in cases:
        assert jnp.asarray(mine(count)).dtype == jnp.asarray(theirs(count)).dtype == jnp.float32
    for new in (jt.warmup_stable_decay_schedule(0.0, 1.0, 5, 5, 5),
                jt.warmup_inverse_sqrt_schedule(0.0, 1.0, 5), jt.cyclic_schedule(0.1, 1.0, 5)):
        assert new(count).dtype == jnp.float32


def test_works_inside_optax_optimizers():
    """A swept schedule drives optax.adam inside jit(vmap(...))."""
    def final_params(learning_rate, warmup_steps):
        schedule = jt.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, 20)
        optimizer = optax.adam(schedule)
        params = jnp.array([1.0, -2.0])
        state = optimizer.init(params)

        def step(carry, _):
            params, state = carry
            updates, state = optimizer.update(2 * params, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, state), None, length=20)
        return params

    learning_rates = jnp.array([0.01, 0.1])
    warmups = jnp.array([0, 5])
    swept = jax.jit(jax.vmap(final_params))(learning_rates, warmups)
    for i in range(2):
        _close(swept[i], final_params(float(learning_rates[i]), int(warmups[i])))


# ----------------------------------------------------------------- properties

finite = {"allow_nan": False, "allow_infinity": False}
# One shape for every example, so eager execution compiles each operation once.
STEPS = np.arange(0, 512)
values_st = st.floats(0.0, 5.0, **finite)
steps_st = st.integers(1, 150)


def _decreasing_and_bounded(values, high, low, rtol=1e-5):
    values = np.asarray(values, np.float64)
    tol = rtol * max(abs(high), abs(low), 1e-6)
    assert np.all(np.diff(values) <= tol), "not non-increasing"
    assert np.all(values <= high + tol) and np.all(values >= low - tol), "out of bounds"


@HYPOTHESIS
@given(init=values_st, end=values_st, power=st.floats(0.1, 4.0, **finite), steps=steps_st,
       begin=st.integers(0, 50))
def test_polynomial_decays_monotonically_and_holds_end(init, end, power, steps, begin):
    init, end = max(init, end), min(init, end)
    values = np.asarray(jt.polynomial_schedule(init, end, power, steps, begin)(STEPS))
    _decreasing_and_bounded(values, init, end)
    np.testing.assert_allclose(values[: begin + 1], init, rtol=1e-6)
    np.testing.assert_allclose(values[begin + steps:], end, rtol=1e-5, atol=1e-6)


@HYPOTHESIS
@given(init=st.floats(0.01, 5.0, **finite), steps=steps_st, alpha=st.floats(0.0, 1.0, **finite),
       exponent=st.floats(0.1, 3.0, **finite))
def test_cosine_decays_to_alpha_and_holds(init, steps, alpha, exponent):
    values = np.asarray(jt.cosine_decay_schedule(init, steps, alpha, exponent)(STEPS))
    _decreasing_and_bounded(values, init, alpha * init)
    assert values[0] == pytest.approx(init, rel=1e-6)
    np.testing.assert_allclose(values[steps:], alpha * init, rtol=1e-5, atol=1e-6 * init)


@HYPOTHESIS
@given(init=st.floats(0.01, 5.0, **finite), steps=st.integers(1, 12),
       rate=st.floats(0.05, 0.99, **finite), end_fraction=st.floats(0.0, 1.0, **finite),
       staircase=st.booleans())
def test_exponential_decays_to_its_floor(init, steps, rate, end_fraction, staircase):
    end = init * end_fraction
    values = np.asarray(jt.exponential_decay(init, steps, rate, 0, staircase, end)(STEPS))
    _decreasing_and_bounded(values, init, end)
    exponent = np.floor(STEPS / steps) if staircase else STEPS / steps
    np.testing.assert_allclose(values, np.maximum(init * rate**exponent, end), rtol=1e-4,
                               atol=1e-7)


@HYPOTHESIS
@given(init=values_st, peak=st.floats(0.1, 5.0, **finite), warmup=st.integers(0, 100),
       decay=steps_st, end_fraction=st.floats(0.0, 1.0, **finite))
def test_warmup_cosine_peaks_then_decays_to_end(init, peak, warmup, decay, end_fraction):
    end = peak * end_fraction
    schedule = jt.warmup_cosine_decay_schedule(init, peak, warmup, warmup + decay, end)
    values = np.asarray(schedule(STEPS))
    assert values[warmup] == pytest.approx(peak, rel=1e-5)
    _decreasing_and_bounded(values[warmup:], peak, end)
    np.testing.assert_allclose(values[warmup + decay:], end, rtol=1e-5, atol=1e-6 * peak)
    warmup_part = values[: warmup + 1]
    assert np.all(np.diff(warmup_part) * np.sign(peak - init) >= -1e-6)


@HYPOTHESIS
@given(init=values_st, peak=st.floats(0.1, 5.0, **finite), warmup=st.integers(0, 60),
       stable=st.integers(0, 60), decay=st.integers(0, 60),
       end_fraction=st.floats(0.0, 1.0, **finite),
       decay_type=st.sampled_from(["linear", "cosine", "sqrt"]))
def test_wsd_phases(init, peak, warmup, stable, decay, end_fraction, decay_type):
    end = peak * end_fraction
    schedule = jt.warmup_stable_decay_schedule(init, peak, warmup, stable, decay, end,
                                               decay_type)
    values = np.asarray(schedule(STEPS))
    if warmup:
        assert values[0] == pytest.approx(init, rel=1e-6, abs=1e-7)
        assert np.all(np.diff(values[:warmup]) * np.sign(peak - init) >= -1e-6)
    # Peak through the stable phase (and at the first decay step, where tau = 0).
    decay_begin = warmup + stable
    np.testing.assert_allclose(values[warmup: decay_begin + (1 if decay else 0)], peak,
                               rtol=1e-6)
    _decreasing_and_bounded(values[warmup:], peak, end)
    np.testing.assert_allclose(values[decay_begin + decay:], end, rtol=1e-5, atol=1e-6 * peak)


@HYPOTHESIS
@given(peak=st.floats(0.1, 5.0, **finite), transition=st.integers(10, 400),
       pct_start=st.floats(0.1, 0.45, **finite), pct_final=st.floats(0.5, 0.95, **finite),
       div=st.floats(1.5, 100.0, **finite), final_div=st.floats(1.5, 1e4, **finite))
def test_onecycle_peaks_then_reaches_final(peak, transition, pct_start, pct_final, div,
                                           final_div):
    top = int(pct_start * transition)  # >= 1
    for schedule in [
        jt.linear_onecycle_schedule(transition, peak, pct_start, pct_final, div, final_div),
        jt.cosine_onecycle_schedule(transition, peak, pct_start, div, final_div),
    ]:
        values = np.asarray(schedule(STEPS))
        assert values[0] == pytest.approx(peak / div, rel=1e-5)
        assert values.max() == pytest.approx(peak, rel=1e-5)
        assert values[top] == pytest.approx(peak, rel=1e-5)
        assert np.all(np.diff(values[: top + 1]) >= -1e-6 * peak)
        assert np.all(np.diff(values[top:]) <= 1e-6 * peak)
        np.testing.assert_allclose(values[transition:], peak / (div * final_div), rtol=1e-5)


# ------------------------------------------------- hand-checked new schedules


def _wsd_reference(count, init, peak, warmup, stable, decay, end, decay_type):
    """The WSD definition, written directly, one step at a time."""
    if count < warmup:
        return init + (peak - init) * count / warmup
    if count < warmup + stable:
        return peak
    if count >= warmup + stable + decay:
        return end
    tau = (count - warmup - stable) / decay
    shape = {"linear": 1 - tau, "cosine": 0.5 * (1 + np.cos(np.pi * tau)),
             "sqrt": 1 - np.sqrt(tau)}[decay_type]
    return end + (peak - end) * shape


@pytest.mark.parametrize("decay_type", ["linear", "cosine", "sqrt"])
def test_wsd_against_its_definition(decay_type):
    args = (0.05, 2.0, 10, 30, 40, 0.2, decay_type)
    counts = np.arange(0, 100)
    expected = [_wsd_reference(int(c), *args) for c in counts]
    _close(jt.warmup_stable_decay_schedule(*args)(counts), expected, rtol=1e-5)


def test_wsd_hand_values():
    linear = jt.warmup_stable_decay_schedule(0.0, 1.0, 10, 20, 40, end_value=0.2)
    _close(linear(np.array([0, 5, 10, 29, 30, 50, 70, 500])),
           [0.0, 0.5, 1.0, 1.0, 1.0, 0.6, 0.2, 0.2])
    sqrt = jt.warmup_stable_decay_schedule(0.0, 1.0, 0, 0, 100, decay_type="sqrt")
    _close(sqrt(np.array([0, 25, 64, 100])), [1.0, 0.5, 0.2, 0.0])
    cosine = jt.warmup_stable_decay_schedule(0.0, 1.0, 0, 0, 100, decay_type="cosine")
    _close(cosine(np.array([0, 50, 100])), [1.0, 0.5, 0.0])
    no_decay = jt.warmup_stable_decay_schedule(0.0, 1.0, 4, 6, 0, end_value=0.1)
    _close(no_decay(np.array([2, 9, 10, 11])), [0.5, 1.0, 0.1, 0.1])


def test_inverse_sqrt_hand_values():
    schedule = jt.warmup_inverse_sqrt_schedule(0.2, 1.0, 4)
    _close(schedule(np.array([0, 1, 2, 4, 16, 64, 400])),
           [0.2, 0.4, 0.6, 1.0, 0.5, 0.25, 0.1])
    noam = jt.warmup_inverse_sqrt_schedule(0.0, 2.0, 100)
    # Vaswani et al.: lr proportional to min(t / w, sqrt(w / t)).
    counts = np.arange(1, 1000, 7)
    _close(noam(counts), 2.0 * np.minimum(counts / 100, np.sqrt(100 / counts)))


def _smith_clr(iteration, base, top, stepsize, mode, gamma=1.0):
    """Smith (2017), section 3.1, as printed in the paper."""
    cycle = np.floor(1 + iteration / (2 * stepsize))
    x = np.abs(iteration / stepsize - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / (2.0 ** (cycle - 1)),
             "exp_range": gamma ** iteration}[mode]
    return base + (top - base) * np.maximum(0, 1 - x) * scale


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_against_smith(mode):
    counts = np.arange(0, 200)
    expected = _smith_clr(counts, 0.01, 0.3, 15, mode, gamma=0.995)
    _close(jt.cyclic_schedule(0.01, 0.3, 15, mode, 0.995)(counts), expected, rtol=1e-5)


def test_cyclic_hand_values():
    triangular = jt.cyclic_schedule(0.1, 1.0, 10)
    _close(triangular(np.array([0, 5, 10, 15, 20, 30, 40])),
           [0.1, 0.55, 1.0, 0.55, 0.1, 1.0, 0.1])
    halving = jt.cyclic_schedule(0.1, 1.0, 10, "triangular2")
    _close(halving(np.array([10, 30, 50])), [1.0, 0.55, 0.325])
    exp_range = jt.cyclic_schedule(0.0, 1.0, 10, "exp_range", gamma=0.5)
    _close(exp_range(np.array([1, 2, 10])), [0.05, 0.05, 2.0 ** -10])


# ------------------------------------------------------------------ errors

ERRORS = [
    # Step counts and offsets.
    (lambda: jt.linear_schedule(1.0, 0.0, -1), ValueError,
     r"`transition_steps` must be non-negative, got transition_steps=-1\. Use `constant"),
    (lambda: jt.linear_schedule(1.0, 0.0, 10, -2), ValueError,
     r"`transition_begin` must be non-negative, got transition_begin=-2"),
    (lambda: jt.polynomial_schedule(1.0, 0.0, 2.0, -5), ValueError,
     r"`transition_steps` must be non-negative, got transition_steps=-5"),
    (lambda: jt.polynomial_schedule(1.0, 0.0, -1.0, 5), ValueError,
     r"`power` must be non-negative, got power=-1\.0\. A negative power"),
    (lambda: jt.polynomial_schedule(1.0, 0.0, 1.0, 5, -1), ValueError, r"`transition_begin`"),
    (lambda: jt.cosine_decay_schedule(1.0, 0), ValueError,
     r"`decay_steps` must be positive, got decay_steps=0\. Use `constant_schedule`"),
    (lambda: jt.cosine_decay_schedule(1.0, 10, exponent=-1.0), ValueError,
     r"`exponent` must be non-negative, got exponent=-1\.0"),
    (lambda: jt.cosine_decay_schedule(1.0, 10, alpha=np.inf), ValueError,
     r"`alpha` must be finite, got alpha=inf"),
    (lambda: jt.exponential_decay(1.0, 0, 0.5), ValueError,
     r"`transition_steps` must be positive, got transition_steps=0\. Use `constant_schedule`"),
    (lambda: jt.exponential_decay(1.0, 10, 0.0), ValueError,
     r"`decay_rate` must be positive, got decay_rate=0\.0"),
    (lambda: jt.exponential_decay(1.0, 10, -0.5), ValueError, r"`decay_rate` must be positive"),
    (lambda: jt.exponential_decay(1.0, 10, 0.5, -3), ValueError,
     r"`transition_begin` must be non-negative, got transition_begin=-3"),
    (lambda: jt.exponential_decay(1.0, 10, 0.5, end_value=np.nan), ValueError,
     r"`end_value` must be finite, got end_value=nan\. Pass `end_value=None`"),
    (lambda: jt.warmup_constant_schedule(0.0, 1.0, -1), ValueError,
     r"`warmup_steps` must be non-negative, got warmup_steps=-1"),
    (lambda: jt.warmup_cosine_decay_schedule(0.0, 1.0, -1, 100), ValueError,
     r"`warmup_steps` must be non-negative"),
    (lambda: jt.warmup_cosine_decay_schedule(0.0, 1.0, 100, 100), ValueError,
     (r"`decay_steps` must exceed `warmup_steps`, got decay_steps=100 and warmup_steps=100\. "
      r"`decay_steps` is the total length, warm-up included")),
    (lambda: jt.warmup_cosine_decay_schedule(0.0, 1.0, 0, 100, exponent=-2.0), ValueError,
     r"`exponent` must be non-negative"),
    (lambda: jt.warmup_exponential_decay_schedule(0.0, 1.0, 10, 0, 0.5), ValueError,
     r"`transition_steps` must be positive, got transition_steps=0\. Use `warmup_constant"),
    (lambda: jt.warmup_exponential_decay_schedule(0.0, 1.0, 10, 5, 0.0), ValueError,
     r"`decay_rate` must be positive, got decay_rate=0\.0"),
    (lambda: jt.warmup_exponential_decay_schedule(0.0, 1.0, -10, 5, 0.5), ValueError,
     r"`warmup_steps` must be non-negative"),
    (lambda: jt.warmup_exponential_decay_schedule(0.0, 1.0, 10, 5, 0.5, -1), ValueError,
     r"`transition_begin` must be non-negative"),
    # Values.
    (lambda: jt.constant_schedule(np.nan), ValueError, r"`value` must be finite, got value=nan"),
    (lambda: jt.linear_schedule(np.inf, 0.0, 10), ValueError, r"`init_value` must be finite"),
    (lambda: jt.warmup_cosine_decay_schedule(0.0, np.nan, 1, 10), ValueError,
     r"`peak_value` must be finite"),
    # One-cycle.
    (lambda: jt.linear_onecycle_schedule(0, 1.0), ValueError,
     r"`transition_steps` must be positive, got transition_steps=0"),
    (lambda: jt.cosine_onecycle_schedule(-10, 1.0), ValueError,
     r"`transition_steps` must be positive, got transition_steps=-10"),
    (lambda: jt.linear_onecycle_schedule(100, 1.0, pct_start=1.5), ValueError,
     r"`pct_start` must lie in \[0\.0, 1\.0\], got pct_start=1\.5\. It is the fraction"),
    (lambda: jt.cosine_onecycle_schedule(100, 1.0, pct_start=-0.1), ValueError,
     r"`pct_start` must lie in \[0\.0, 1\.0\], got pct_start=-0\.1"),
    (lambda: jt.linear_onecycle_schedule(100, 1.0, pct_final=1.2), ValueError,
     r"`pct_final` must lie in \[0\.0, 1\.0\], got pct_final=1\.2"),
    (lambda: jt.linear_onecycle_schedule(100, 1.0, pct_start=0.6, pct_final=0.5), ValueError,
     (r"`pct_final` must be at least `pct_start`, got pct_final=0\.5 and pct_start=0\.6\. "
      r"Phase 2")),
    (lambda: jt.linear_onecycle_schedule(100, 1.0, div_factor=0.0), ValueError,
     r"`div_factor` must be positive, got div_factor=0\.0\. The initial value"),
    (lambda: jt.cosine_onecycle_schedule(100, 1.0, final_div_factor=-1.0), ValueError,
     r"`final_div_factor` must be positive, got final_div_factor=-1\.0"),
    # Piecewise.
    (lambda: jt.piecewise_constant_schedule(1.0, {10: -0.5}), ValueError,
     r"`boundaries_and_scales\[10\]` must be non-negative, got boundaries_and_scales\[10\]=-0\.5"),
    (lambda: jt.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5, 20: -1.0}), ValueError,
     r"`boundaries_and_scales\[20\]` must be non-negative"),
    (lambda: jt.piecewise_constant_schedule(1.0, {-10: 0.5}), ValueError,
     r"`boundaries_and_scales` keys must be non-negative step numbers, got the key -10"),
    (lambda: jt.piecewise_constant_schedule(1.0, {"10": 0.5}), TypeError,
     r"`boundaries_and_scales` keys must be step numbers, got str '10'\. To sweep boundaries"),
    (lambda: jt.piecewise_constant_schedule(1.0, ([20, 10], [0.5, 0.5])), ValueError,
     (r"`boundaries_and_scales\[0\]` must be non-decreasing, got "
      r"boundaries_and_scales\[0\]=\[20 10\]; sort them")),
    (lambda: jt.piecewise_constant_schedule(1.0, (np.array([-1, 10]), [0.5, 0.5])), ValueError,
     r"`boundaries_and_scales\[0\]` must be non-negative"),
    (lambda: jt.piecewise_constant_schedule(1.0, ([10, 20], [0.5])), ValueError,
     (r"`boundaries_and_scales` must hold as many boundaries as scales, got 2 boundaries and "
      r"1 scales")),
    (lambda: jt.piecewise_interpolate_schedule("linear", 1.0, ([10], [-0.5])), ValueError,
     r"`boundaries_and_scales\[1\]\[0\]` must be non-negative"),
    (lambda: jt.piecewise_constant_schedule(1.0, (np.ones((2, 2)), np.ones(2))), ValueError,
     r"`boundaries_and_scales\[0\]` must be one-dimensional, got an array of shape \(2, 2\)"),
    (lambda: jt.piecewise_constant_schedule(1.0, [(10, 0.5)]), TypeError,
     r"`boundaries_and_scales` must be a dict `\{step: scale\}`, a tuple"),
    (lambda: jt.piecewise_constant_schedule(1.0, ("10", [0.5])), TypeError,
     r"`boundaries_and_scales\[0\]` must be a 1-D array or a sequence of numbers, got str"),
    (lambda: jt.piecewise_interpolate_schedule("quadratic", 1.0), ValueError,
     r"`interpolate_type` must be one of 'linear', 'cosine', got interpolate_type='quadratic'"),
    (lambda: jt.piecewise_interpolate_schedule(None, 1.0), TypeError,
     (r"`interpolate_type` must be a string, one of 'linear', 'cosine' \(it is static\), "
      r"got NoneType")),
    # Join and SGDR.
    (lambda: jt.join_schedules([], []), ValueError, r"`schedules` must hold at least one"),
    (lambda: jt.join_schedules(jt.constant_schedule(1.0), []), TypeError,
     r"`schedules` must be a sequence of schedules, got function"),
    (lambda: jt.join_schedules([jt.constant_schedule(1.0), 0.5], [10]), TypeError,
     r"`schedules\[1\]` must be a schedule \(a callable count -> value\), got float 0\.5"),
    (lambda: jt.join_schedules([jt.constant_schedule(1.0)] * 2, [10, 20]), ValueError,
     r"`boundaries` must hold one step per switch, len\(schedules\) - 1 = 1, got 2"),
    (lambda: jt.join_schedules([jt.constant_schedule(1.0)] * 3, [20, 10]), ValueError,
     r"`boundaries` must be non-decreasing, got boundaries=\[20 10\]"),
    (lambda: jt.join_schedules([jt.constant_schedule(1.0)] * 2, [-5]), ValueError,
     r"`boundaries\[0\]` must be non-negative, got boundaries\[0\]=-5"),
    (lambda: jt.join_schedules([jt.constant_schedule(1.0)] * 2, [True]), TypeError,
     r"`boundaries\[0\]` must be a number or an array, got the bool True"),
    (lambda: jt.join_schedules([jt.constant_schedule(1.0)] * 2, 10), TypeError,
     r"`boundaries` must be a 1-D array or a sequence of numbers, got int 10"),
    (lambda: jt.join_schedules([jt.constant_schedule(1.0)] * 2, [np.array([1, 2])]), ValueError,
     r"`boundaries\[0\]` must be a scalar, got an array of shape \(2,\)"),
    (lambda: jt.sgdr_schedule([]), ValueError, r"`cosine_kwargs` must hold at least one cycle"),
    (lambda: jt.sgdr_schedule({"decay_steps": 10}), TypeError,
     r"`cosine_kwargs` must be an iterable of dicts \(one per cycle\), got dict"),
    (lambda: jt.sgdr_schedule([CYCLE_0, 3]), TypeError,
     r"`cosine_kwargs\[1\]` must be a dict of `warmup_cosine_decay_schedule` arguments, got int"),
    (lambda: jt.sgdr_schedule([CYCLE_0, dict(CYCLE_1, decay_steps=5)]), ValueError,
     (r"`cosine_kwargs\[1\]`: `decay_steps` must exceed `warmup_steps`, got decay_steps=5 and "
      r"warmup_steps=10")),
    (lambda: jt.sgdr_schedule([{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 0}]),
     TypeError,
     r"`cosine_kwargs\[0\]`: .*decay_steps"),
    # New schedules.
    (lambda: jt.warmup_stable_decay_schedule(0.0, 1.0, 10, -1, 10), ValueError,
     r"`stable_steps` must be non-negative, got stable_steps=-1"),
    (lambda: jt.warmup_stable_decay_schedule(0.0, 1.0, 10, 10, -10), ValueError,
     r"`decay_steps` must be non-negative, got decay_steps=-10"),
    (lambda: jt.warmup_stable_decay_schedule(0.0, 1.0, -1, 10, 10), ValueError,
     r"`warmup_steps` must be non-negative"),
    (lambda: jt.warmup_stable_decay_schedule(0.0, 1.0, 1, 1, 1, decay_type="exp"), ValueError,
     r"`decay_type` must be one of 'linear', 'cosine', 'sqrt', got decay_type='exp'"),
    (lambda: jt.warmup_stable_decay_schedule(0.0, 1.0, 1, 1, 1, decay_type=1), TypeError,
     r"`decay_type` must be a string"),
    (lambda: jt.warmup_inverse_sqrt_schedule(0.0, 1.0, -4), ValueError,
     r"`warmup_steps` must be non-negative, got warmup_steps=-4"),
    (lambda: jt.cyclic_schedule(0.1, 1.0, 0), ValueError,
     r"`step_size` must be positive, got step_size=0\. It is half a cycle"),
    (lambda: jt.cyclic_schedule(0.1, 1.0, 10, mode="triangular3"), ValueError,
     r"`mode` must be one of 'triangular', 'triangular2', 'exp_range', got mode='triangular3'"),
    (lambda: jt.cyclic_schedule(0.1, 1.0, 10, mode=2), TypeError, r"`mode` must be a string"),
    (lambda: jt.cyclic_schedule(0.1, 1.0, 10, "exp_range", gamma=1.5), ValueError,
     r"`gamma` must lie in \(0\.0, 1\.0\], got gamma=1\.5\. It scales the amplitude"),
    (lambda: jt.cyclic_schedule(0.1, 1.0, 10, "exp_range", gamma=0.0), ValueError,
     r"`gamma` must lie in \(0\.0, 1\.0\], got gamma=0\.0"),
    # Wrong kinds.
    (lambda: jt.linear_schedule("1.0", 0.0, 10), TypeError,
     r"`init_value` must be a number or an array, got str '1\.0'"),
    (lambda: jt.cosine_decay_schedule(1.0, None), TypeError,
     r"`decay_steps` must be a number or an array, got NoneType"),
    (lambda: jt.warmup_cosine_decay_schedule(0.0, 1.0, True, 10), TypeError,
     r"`warmup_steps` must be a number or an array, got the bool True"),
    (lambda: jt.exponential_decay(1.0, 10, 0.5, staircase="yes"), TypeError,
     r"`staircase` must be a bool \(it is static\), got str 'yes'"),
    (lambda: jt.warmup_exponential_decay_schedule(0.0, 1.0, 1, 1, 0.5, staircase=1), TypeError,
     r"`staircase` must be a bool"),
    (lambda: jt.cyclic_schedule(0.1, [1.0], 10), TypeError, r"`max_value` must be a number"),
]


@pytest.mark.parametrize("make, error, message", ERRORS,
                         ids=[f"error{i}" for i in range(len(ERRORS))])
def test_bad_arguments_raise(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_concrete_arrays_are_validated_too():
    with pytest.raises(ValueError, match=r"`warmup_steps` must be non-negative, got "
                                         r"warmup_steps=\[ 5 -1\]"):
        jt.warmup_constant_schedule(0.0, 1.0, jnp.array([5, -1]))
    # Under tracing the same value is not checked (it counts as 0).
    values = jax.jit(lambda w: jt.warmup_constant_schedule(0.0, 1.0, w)(0))(jnp.array(-1))
    assert float(values) == 1.0


# ------------------------------------------------------------ step counts beyond int32

BIG = 10**10  # past int32 (2**31 - 1 ~ 2.1e9), as in runs that count tokens
BIG_COUNTS = [0, 10**9, 2 * 10**10, 25 * 10**9]


# name -> (lib, s) -> the schedule of `lib` (jaxtune or optax), step arguments made of `s`
BIG_CASES = {
    "constant_schedule": lambda lib, s: lib.constant_schedule(0.5),
    "cosine_decay_schedule": lambda lib, s: lib.cosine_decay_schedule(1.0, 3 * s, alpha=0.1),
    "exponential_decay": lambda lib, s: lib.exponential_decay(
        1.0, s, 0.5, transition_begin=s // 2, end_value=0.2),
    "linear_schedule": lambda lib, s: lib.linear_schedule(1.0, 0.1, 2 * s, s // 2),
    "polynomial_schedule": lambda lib, s: lib.polynomial_schedule(1.0, 0.1, 2.0, 2 * s, s // 2),
    "piecewise_constant_schedule": lambda lib, s: lib.piecewise_constant_schedule(
        1.0, {s // 2: 0.5, 3 * s // 2: 0.1}),
    "piecewise_interpolate_schedule": lambda lib, s: lib.piecewise_interpolate_schedule(
        "cosine", 1.0, {s // 2: 0.5, 3 * s: 0.1}),
    "warmup_constant_schedule": lambda lib, s: lib.warmup_constant_schedule(0.0, 1.0, 2 * s),
    "warmup_cosine_decay_schedule": lambda lib, s: lib.warmup_cosine_decay_schedule(
        0.0, 1.0, s, 3 * s, end_value=0.1),
    "warmup_exponential_decay_schedule": lambda lib, s: lib.warmup_exponential_decay_schedule(
        0.0, 1.0, s, s, 0.5, transition_begin=s // 2),
    "sgdr_schedule": lambda lib, s: lib.sgdr_schedule(
        [{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": s // 2, "decay_steps": 2 * s},
         {"init_value": 0.5, "peak_value": 1.0, "warmup_steps": 0, "decay_steps": s}]),
    "join_schedules": lambda lib, s: lib.join_schedules(
        [lib.linear_schedule(1.0, 0.5, s), lib.cosine_decay_schedule(0.5, 2 * s)], [s]),
    # optax's one-cycle schedules take int(pct * T) and fail past int32 even for a float
    # T; they are compared with optax at T / 1000 and counts / 1000 (same boundaries).
    "linear_onecycle_schedule": lambda lib, s: lib.linear_onecycle_schedule(3 * s, 1.0),
    "cosine_onecycle_schedule": lambda lib, s: lib.cosine_onecycle_schedule(3 * s, 1.0),
    "warmup_stable_decay_schedule": lambda lib, s: lib.warmup_stable_decay_schedule(
        0.0, 1.0, s, s, 2 * s, end_value=0.1),
    "warmup_inverse_sqrt_schedule": lambda lib, s: lib.warmup_inverse_sqrt_schedule(0.1, 1.0, s),
    "cyclic_schedule": lambda lib, s: lib.cyclic_schedule(0.1, 1.0, s, mode="triangular2"),
}


def _big_reference(name: str, counts: np.ndarray) -> np.ndarray:
    """Values at float32 `counts` from optax (step arguments as floats: optax overflows on
    Python ints past int32), or, for the schedules optax lacks, from the formulas in
    float64."""
    if name in ("linear_onecycle_schedule", "cosine_onecycle_schedule"):
        schedule = getattr(optax, name)(3 * BIG // 1000, 1.0)
        return jax.vmap(schedule)(counts / 1000)
    if hasattr(optax, name):
        return jax.vmap(BIG_CASES[name](optax, float(BIG)))(counts)
    t, s = counts.astype(np.float64), float(BIG)
    if name == "warmup_stable_decay_schedule":
        tau = np.clip((t - 2 * s) / (2 * s), 0, 1)
        return np.where(t < s, t / s, 0.1 + 0.9 * (1 - tau))
    if name == "warmup_inverse_sqrt_schedule":
        return np.where(t < s, 0.1 + 0.9 * t / s, np.sqrt(s / np.maximum(t, s)))
    if name == "cyclic_schedule":
        cycle = np.floor(1 + t / (2 * s))
        x = np.abs(t / s - 2 * cycle + 1)
        return 0.1 + 0.9 * np.maximum(0, 1 - x) / 2 ** (cycle - 1)
    raise AssertionError(f"no reference for {name}")


def test_every_schedule_takes_step_counts_beyond_int32():
    names = [name for name in jt.__all__ if name.endswith("schedule")
             or name == "exponential_decay"] + ["join_schedules"]
    assert sorted(BIG_CASES) == sorted(names)  # a new schedule joins this test
    counts = np.float32(BIG_COUNTS)
    for name in names:
        build = BIG_CASES[name]
        expected = _big_reference(name, counts)
        assert np.all(np.isfinite(expected)), name
        eager = [build(jt, BIG)(count) for count in BIG_COUNTS]
        numpy_steps = build(jt, np.int64(BIG))(np.array(BIG_COUNTS, np.int64))
        closed = jax.jit(lambda build=build: [build(jt, BIG)(c) for c in BIG_COUNTS])()
        traced = jax.jit(build(jt, BIG))(counts)
        for how, values in [("eager", eager), ("numpy int64", numpy_steps),
                            ("jit, closed over", closed), ("jit, traced count", traced)]:
            values = np.broadcast_to(np.asarray(values, np.float64), counts.shape)
            assert np.all(np.isfinite(values)), (name, how, values)
            try:
                _close(values, expected, rtol=1e-5)
            except AssertionError as error:
                raise AssertionError(f"{name} ({how})") from error


def test_concrete_step_sums_and_numpy_int64_do_not_wrap():
    # 2e9 + 2e9 fits no int32: the decay starts at 4e9, half done at 5e9.
    wsd = jt.warmup_stable_decay_schedule(0.0, 1.0, 2 * 10**9, 2 * 10**9, 2 * 10**9)
    _close(wsd(np.float32([3e9, 5e9])), [1.0, 0.5])
    _close(jax.jit(wsd)(np.float32([3e9, 5e9])), [1.0, 0.5])
    # NumPy int64 boundaries past int32 would wrap to 1410065408 if handed to JAX as ints.
    steps = jt.piecewise_constant_schedule(1.0, (np.array([BIG]), np.array([0.1])))
    _close(steps(np.float32([2e9, 1.1e10])), [1.0, 0.1])
    # Sums of SGDR cycle lengths: 2e9 + 2e9 past int32 again.
    cycle = {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 0, "decay_steps": 2 * 10**9}
    sgdr = jt.sgdr_schedule([cycle, cycle, cycle])
    _close(sgdr(np.float32([4e9, 5e9])), [1.0, 0.5])
