"""Parity of jaxtune's schedules with optax 0.2.8, the reference.

For every mirrored schedule, hypothesis draws concrete arguments that optax accepts (and
jaxtune too: the deliberate departures are tested in test_schedules.py) and compares the
values at every boundary, one step either side, a grid, and far past the end:

* plain: jaxtune with the same Python arguments, on an array of counts and a Python int;
* jitted: jaxtune under `jit` with every numeric argument passed as a traced array (one
  compilation per schedule, whatever the values).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import example, given, settings
from hypothesis import strategies as st

import jaxtune as jt

HYPOTHESIS = settings(max_examples=30, deadline=None, derandomize=True)
RTOL = 2e-5

finite = {"allow_nan": False, "allow_infinity": False}
values = st.floats(-2.0, 4.0, **finite)
positive_values = st.floats(0.01, 4.0, **finite)
step_counts = st.integers(1, 300)
offsets = st.integers(0, 100)
exponents = st.floats(0.0, 3.0, **finite)
rates = st.floats(0.01, 2.0, **finite)

GRID = np.arange(0, 600, 37)
FAR = [1_000, 12_345, 1_000_000]
MAX_BOUNDARIES = 6


def _counts(*boundaries) -> np.ndarray:
    """Each boundary, one step before and after (two after a fractional one), a grid and
    far past the end; always the same length, so eager operations compile once."""
    points = []
    for boundary in boundaries:
        whole = int(np.floor(boundary))
        points += [whole - 1, whole, whole + 1, whole + 2]
    points += [0] * (4 * MAX_BOUNDARIES - len(points))
    return np.concatenate([np.maximum(points, 0), GRID, FAR]).astype(np.int32)


def _close(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    actual, expected = np.broadcast_arrays(actual, expected)
    finite_values = np.abs(expected[np.isfinite(expected)])
    scale = max(float(np.max(finite_values, initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale)


@functools.partial(jax.jit, static_argnames=("name", "static"))
def _traced(name, static, numeric, counts):
    return getattr(jt, name)(**numeric, **dict(static))(counts)


def _check(name, counts, static=(), jit_numeric=None, **numeric):
    """Compares jaxtune with optax for `numeric` (+ `static`) arguments, plain and jitted."""
    kwargs = {**numeric, **dict(static)}
    reference = jax.vmap(getattr(optax, name)(**kwargs))(counts)
    mine = getattr(jt, name)(**kwargs)
    _close(mine(counts), reference)
    some_count = int(counts[1])
    _close(mine(some_count), getattr(optax, name)(**kwargs)(some_count))
    _close(_traced(name, tuple(static), numeric if jit_numeric is None else jit_numeric, counts),
           reference)


@HYPOTHESIS
@given(value=values)
def test_constant(value):
    _check("constant_schedule", _counts(), value=value)


@HYPOTHESIS
@given(init=values, end=values, steps=step_counts, begin=offsets)
def test_linear(init, end, steps, begin):
    _check("linear_schedule", _counts(begin, begin + steps), init_value=init, end_value=end,
           transition_steps=steps, transition_begin=begin)


@HYPOTHESIS
@given(init=values, end=values, power=exponents, steps=step_counts, begin=offsets)
def test_polynomial(init, end, power, steps, begin):
    _check("polynomial_schedule", _counts(begin, begin + steps), init_value=init,
           end_value=end, power=power, transition_steps=steps, transition_begin=begin)


@HYPOTHESIS
@given(init=values, steps=st.one_of(step_counts, st.floats(0.5, 300.0, **finite)),
       alpha=st.floats(-0.5, 1.5, **finite), exponent=exponents)
def test_cosine_decay(init, steps, alpha, exponent):
    _check("cosine_decay_schedule", _counts(steps), init_value=init, decay_steps=steps,
           alpha=alpha, exponent=exponent)


@HYPOTHESIS
@given(init=values, steps=st.integers(1, 100), rate=rates, begin=offsets,
       staircase=st.booleans(), end=st.one_of(st.none(), values))
def test_exponential_decay(init, steps, rate, begin, staircase, end):
    numeric = {"init_value": init, "transition_steps": steps, "decay_rate": rate,
               "transition_begin": begin}
    static = [("staircase", staircase)]
    if end is None:
        static.append(("end_value", None))
    else:
        numeric["end_value"] = end
    _check("exponential_decay", _counts(begin, begin + steps, begin + 5 * steps),
           static=tuple(static), **numeric)


# A few sizes only: each size is a new shape, and new shapes compile.
boundaries_and_scales = st.sampled_from([0, 1, 3, 5]).flatmap(lambda size: st.dictionaries(
    st.integers(0, 300), st.floats(0.0, 3.0, **finite), min_size=size, max_size=size))


def _as_arrays(table):
    """The dict form as the jit-friendly (boundaries, scales) array form."""
    keys = sorted(table)
    return (np.asarray(keys, np.int32), np.asarray([table[k] for k in keys], np.float32))


@HYPOTHESIS
@given(init=values, table=boundaries_and_scales)
def test_piecewise_constant(init, table):
    _check("piecewise_constant_schedule", _counts(*table), init_value=init,
           boundaries_and_scales=table,
           jit_numeric={"init_value": init, "boundaries_and_scales": _as_arrays(table)})


@HYPOTHESIS
@given(kind=st.sampled_from(["linear", "cosine"]), init=values, table=boundaries_and_scales)
def test_piecewise_interpolate(kind, init, table):
    _check("piecewise_interpolate_schedule", _counts(*table), static=(("interpolate_type", kind),),
           init_value=init, boundaries_and_scales=table,
           jit_numeric={"init_value": init, "boundaries_and_scales": _as_arrays(table)})


@HYPOTHESIS
@given(init=values, peak=values, warmup=st.integers(1, 200))
def test_warmup_constant(init, peak, warmup):
    _check("warmup_constant_schedule", _counts(warmup), init_value=init, peak_value=peak,
           warmup_steps=warmup)


@HYPOTHESIS
@given(init=values, peak=st.one_of(st.just(0.0), positive_values), warmup=st.integers(0, 200),
       decay=step_counts, end=values, exponent=exponents)
def test_warmup_cosine_decay(init, peak, warmup, decay, end, exponent):
    _check("warmup_cosine_decay_schedule", _counts(warmup, warmup + decay), init_value=init,
           peak_value=peak, warmup_steps=warmup, decay_steps=warmup + decay, end_value=end,
           exponent=exponent)


@HYPOTHESIS
@given(init=values, peak=values, warmup=st.integers(0, 200), steps=st.integers(1, 100),
       rate=rates, begin=offsets, staircase=st.booleans(), end=st.one_of(st.none(), values))
def test_warmup_exponential_decay(init, peak, warmup, steps, rate, begin, staircase, end):
    numeric = {"init_value": init, "peak_value": peak, "warmup_steps": warmup,
               "transition_steps": steps, "decay_rate": rate, "transition_begin": begin}
    static = [("staircase", staircase)]
    if end is None:
        static.append(("end_value", None))
    else:
        numeric["end_value"] = end
    _check("warmup_exponential_decay_schedule",
           _counts(warmup, warmup + begin, warmup + begin + steps), static=tuple(static),
           **numeric)


fractions = st.floats(0.0, 1.0, **finite)
divisors = st.floats(0.5, 100.0, **finite)


def _dyadic(fraction):
    """A nearby fraction whose product with an integer is exact in float32 and float64, so
    the traced trunc(pct * T) cannot differ from optax's int(pct * T) by rounding."""
    return round(fraction * 64) / 64


@HYPOTHESIS
@given(steps=st.one_of(st.integers(1, 500), st.floats(1.0, 500.0, **finite)), peak=values,
       pcts=st.tuples(fractions, fractions).map(sorted), div=divisors,
       final_div=st.floats(0.5, 1e5, **finite))
# Coinciding phase boundaries, where optax's dict keeps the later entry.
@example(steps=100, peak=1.0, pcts=[0.3, 0.3], div=25.0, final_div=1e4)
@example(steps=100, peak=1.0, pcts=[0.5, 1.0], div=25.0, final_div=1e4)
@example(steps=5, peak=1.0, pcts=[0.3, 0.35], div=25.0, final_div=1e4)
def test_linear_onecycle(steps, peak, pcts, div, final_div):
    pct_start, pct_final = pcts
    kwargs = {"transition_steps": steps, "peak_value": peak, "div_factor": div,
              "final_div_factor": final_div}
    counts = _counts(pct_start * steps, pct_final * steps, steps)
    reference = jax.vmap(optax.linear_onecycle_schedule(
        **kwargs, pct_start=pct_start, pct_final=pct_final))(counts)
    _close(jt.linear_onecycle_schedule(**kwargs, pct_start=pct_start, pct_final=pct_final)(
        counts), reference)
    # Traced: every argument an array, the fractions on a float-exact grid.
    dyadic = dict(kwargs, transition_steps=int(steps), pct_start=_dyadic(pct_start),
                  pct_final=_dyadic(pct_final))
    counts = _counts(dyadic["pct_start"] * int(steps), dyadic["pct_final"] * int(steps), steps)
    _check("linear_onecycle_schedule", counts, **dyadic)


@HYPOTHESIS
@given(steps=st.one_of(st.integers(1, 500), st.floats(1.0, 500.0, **finite)), peak=values,
       pct_start=fractions, div=divisors, final_div=st.floats(0.5, 1e5, **finite))
@example(steps=100, peak=1.0, pct_start=1.0, div=25.0, final_div=1e4)  # coinciding boundaries
@example(steps=7, peak=1.0, pct_start=0.0, div=25.0, final_div=1e4)
def test_cosine_onecycle(steps, peak, pct_start, div, final_div):
    kwargs = {"transition_steps": steps, "peak_value": peak, "div_factor": div,
              "final_div_factor": final_div}
    counts = _counts(pct_start * steps, steps)
    reference = jax.vmap(optax.cosine_onecycle_schedule(**kwargs, pct_start=pct_start))(counts)
    _close(jt.cosine_onecycle_schedule(**kwargs, pct_start=pct_start)(counts), reference)
    dyadic = dict(kwargs, transition_steps=int(steps), pct_start=_dyadic(pct_start))
    _check("cosine_onecycle_schedule", _counts(dyadic["pct_start"] * int(steps), steps),
           **dyadic)


cycles = st.fixed_dictionaries({
    "init_value": values, "peak_value": st.one_of(st.just(0.0), positive_values),
    "warmup_steps": st.integers(0, 50), "decay_steps": st.integers(1, 100), "end_value": values,
    "exponent": exponents,
}).map(lambda cycle: dict(cycle, decay_steps=cycle["warmup_steps"] + cycle["decay_steps"]))


@HYPOTHESIS
@given(cosine_kwargs=st.lists(cycles, min_size=1, max_size=3))
def test_sgdr(cosine_kwargs):
    ends = np.cumsum([cycle["decay_steps"] for cycle in cosine_kwargs])
    starts = np.concatenate([[0], ends[:-1]])
    warmups = starts + np.array([cycle["warmup_steps"] for cycle in cosine_kwargs])
    _check("sgdr_schedule", _counts(*ends, *warmups), cosine_kwargs=cosine_kwargs)


def _three(lib):
    return [lib.linear_schedule(1.0, 0.2, 30), lib.cosine_decay_schedule(0.5, 40, 0.1),
            lib.exponential_decay(0.3, 10, 0.7)]


@jax.jit
def _joined(boundaries, counts):
    return jt.join_schedules(_three(jt), boundaries)(counts)


@HYPOTHESIS
@given(boundaries=st.lists(st.integers(0, 300), min_size=2, max_size=2).map(sorted))
def test_join_schedules(boundaries):
    counts = _counts(*boundaries)
    reference = jax.vmap(optax.join_schedules(_three(optax), boundaries))(counts)
    _close(jt.join_schedules(_three(jt), boundaries)(counts), reference)
    _close(_joined(jnp.asarray(boundaries), counts), reference)
