"""Which numeric schedule arguments can be swept with `jit(vmap(...))`: optax vs jaxtune.

For each of the 14 schedules jaxtune mirrors from optax, and each numeric argument, the
same probe runs on both libraries:

    jit(vmap(lambda v: vmap(schedule(..., arg=v, ...))(counts)))(values)

with valid values (the inner vmap evaluates one scalar count at a time, which every optax
schedule supports), and is compared with the loop over the concrete values. An argument
is *sweepable* if the probe runs and matches the loop.

How arguments are counted: each numeric parameter of a signature counts once; for the
list-valued ones, `boundaries_and_scales` counts as two (its boundaries, its scales),
`sgdr_schedule`'s `cosine_kwargs` as the six numeric keys of a cycle (swept in the first
cycle), and `join_schedules`'s `boundaries` as one. Static arguments (`staircase`,
`interpolate_type`, the schedules given to `join_schedules`) are not counted.

optax takes boundaries only as dict keys, which cannot be traced; jaxtune's probe for
them uses its `(boundaries, scales)` array form.

Run: python bench/sweepable_args.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxtune

COUNTS = np.array([0, 1, 5, 9, 10, 11, 20, 29, 30, 31, 49, 50, 51, 85, 99, 100, 101, 150,
                   1_000, 100_000], np.int32)


class Probe(NamedTuple):
    schedule: str
    argument: str
    build: Callable[[Any, Any], Callable]  # (library, value) -> schedule
    values: list


def _kwargs_probes(name: str, base: dict, grid: dict) -> list[Probe]:
    def probe(arg, values):
        return Probe(name, arg, lambda lib, v: getattr(lib, name)(**{**base, arg: v}), values)
    return [probe(arg, values) for arg, values in grid.items()]


def _piecewise_probes(name: str, *prefix) -> list[Probe]:
    def fn(lib):
        return getattr(lib, name)

    def boundaries(lib, v):
        if lib is optax:  # optax's only form: boundaries are dict keys
            return fn(lib)(*prefix, 1.0, {v: 0.5, 50: 0.1})
        return fn(lib)(*prefix, 1.0, ((v, 50), (0.5, 0.1)))

    return [
        Probe(name, "init_value", lambda lib, v: fn(lib)(*prefix, v, {20: 0.5, 50: 0.1}),
              [0.5, 1.0, 2.0]),
        Probe(name, "boundaries_and_scales (boundaries)", boundaries, [10, 20, 30]),
        Probe(name, "boundaries_and_scales (scales)",
              lambda lib, v: fn(lib)(*prefix, 1.0, {20: v, 50: 0.1}), [0.0, 0.5, 2.0]),
    ]


CYCLE_0 = dict(init_value=0.1, peak_value=1.0, warmup_steps=5, decay_steps=40, end_value=0.01,
               exponent=1.0)
CYCLE_1 = dict(init_value=0.0, peak_value=0.5, warmup_steps=10, decay_steps=60)


def _sgdr(key):
    return lambda lib, v: lib.sgdr_schedule([dict(CYCLE_0, **{key: v}), CYCLE_1])


def _join(lib, v):
    schedules = [lib.linear_schedule(1.0, 0.5, 20), lib.cosine_decay_schedule(0.5, 50),
                 lib.constant_schedule(0.2)]
    return lib.join_schedules(schedules, jnp.stack([jnp.asarray(v), jnp.asarray(80)]))


PROBES: list[Probe] = [
    Probe("constant_schedule", "value", lambda lib, v: lib.constant_schedule(v), [0.1, 0.5]),
    *_kwargs_probes("linear_schedule", dict(
        init_value=1.0, end_value=0.1, transition_steps=50, transition_begin=10), dict(
        init_value=[0.5, 1.0], end_value=[0.0, 0.1], transition_steps=[30, 50],
        transition_begin=[0, 10])),
    *_kwargs_probes("polynomial_schedule", dict(
        init_value=1.0, end_value=0.1, power=2.0, transition_steps=50, transition_begin=10),
        dict(init_value=[0.5, 1.0], end_value=[0.0, 0.1], power=[1.0, 2.0],
             transition_steps=[30, 50], transition_begin=[0, 10])),
    *_kwargs_probes("cosine_decay_schedule", dict(
        init_value=1.0, decay_steps=50, alpha=0.1, exponent=1.0), dict(
        init_value=[0.5, 1.0], decay_steps=[30, 50], alpha=[0.0, 0.1], exponent=[1.0, 2.0])),
    *_kwargs_probes("exponential_decay", dict(
        init_value=1.0, transition_steps=5, decay_rate=0.8, transition_begin=10,
        end_value=0.1), dict(
        init_value=[0.5, 1.0], transition_steps=[5, 20], decay_rate=[0.5, 0.9],
        transition_begin=[0, 10], end_value=[0.05, 0.2])),
    *_piecewise_probes("piecewise_constant_schedule"),
    *_piecewise_probes("piecewise_interpolate_schedule", "linear"),
    *_kwargs_probes("warmup_constant_schedule", dict(
        init_value=0.1, peak_value=1.0, warmup_steps=10), dict(
        init_value=[0.0, 0.1], peak_value=[0.5, 1.0], warmup_steps=[10, 30])),
    *_kwargs_probes("warmup_cosine_decay_schedule", dict(
        init_value=0.1, peak_value=1.0, warmup_steps=10, decay_steps=100, end_value=0.05,
        exponent=1.0), dict(
        init_value=[0.0, 0.1], peak_value=[0.5, 1.0], warmup_steps=[10, 30],
        decay_steps=[60, 100], end_value=[0.0, 0.05], exponent=[1.0, 2.0])),
    *_kwargs_probes("warmup_exponential_decay_schedule", dict(
        init_value=0.1, peak_value=1.0, warmup_steps=10, transition_steps=5, decay_rate=0.8,
        transition_begin=5, end_value=0.1), dict(
        init_value=[0.0, 0.1], peak_value=[0.5, 1.0], warmup_steps=[10, 30],
        transition_steps=[5, 20], decay_rate=[0.5, 0.9], transition_begin=[0, 5],
        end_value=[0.05, 0.2])),
    *_kwargs_probes("linear_onecycle_schedule", dict(
        transition_steps=100, peak_value=1.0, pct_start=0.3, pct_final=0.85, div_factor=25.0,
        final_div_factor=1e4), dict(
        transition_steps=[50, 100], peak_value=[0.5, 1.0], pct_start=[0.25, 0.5],
        pct_final=[0.75, 0.85], div_factor=[10.0, 25.0], final_div_factor=[1e3, 1e4])),
    *_kwargs_probes("cosine_onecycle_schedule", dict(
        transition_steps=100, peak_value=1.0, pct_start=0.3, div_factor=25.0,
        final_div_factor=1e4), dict(
        transition_steps=[50, 100], peak_value=[0.5, 1.0], pct_start=[0.25, 0.5],
        div_factor=[10.0, 25.0], final_div_factor=[1e3, 1e4])),
    *[Probe("sgdr_schedule", f"cosine_kwargs[0]['{key}']", _sgdr(key), values)
      for key, values in [("init_value", [0.0, 0.1]), ("peak_value", [0.5, 1.0]),
                          ("warmup_steps", [5, 20]), ("decay_steps", [40, 90]),
                          ("end_value", [0.0, 0.01]), ("exponent", [1.0, 2.0])]],
    Probe("join_schedules", "boundaries", _join, [0, 20, 50]),
]


def sweepable(lib, probe: Probe) -> tuple[bool, str]:
    """Runs the probe on `lib`; returns (ok, why not)."""
    def run(v):
        # One scalar count at a time: optax's piecewise_interpolate_schedule (and the
        # one-cycle schedules built on it) take no arrays of counts.
        return jax.vmap(probe.build(lib, v))(COUNTS)

    try:
        swept = jax.jit(jax.vmap(run))(np.asarray(probe.values))
    except Exception as error:
        return False, type(error).__name__
    looped = np.stack([np.asarray(run(v)) for v in probe.values])
    if not np.allclose(swept, looped, rtol=1e-5, atol=1e-7):
        return False, "wrong values"
    return True, ""


def main() -> None:
    rows = []
    for probe in PROBES:
        rows.append((probe, sweepable(optax, probe), sweepable(jaxtune, probe)))
    width = max(len(p.schedule) for p in PROBES), max(len(p.argument) for p in PROBES)
    header = f"{'schedule':<{width[0]}}  {'argument':<{width[1]}}  {'optax':<36}  jaxtune"
    print(header)
    print("-" * len(header))
    for probe, (optax_ok, optax_why), (ours_ok, ours_why) in rows:
        optax_cell = "ok" if optax_ok else f"FAILS ({optax_why})"
        ours_cell = "ok" if ours_ok else f"FAILS ({ours_why})"
        print(f"{probe.schedule:<{width[0]}}  {probe.argument:<{width[1]}}  "
              f"{optax_cell:<36}  {ours_cell}")
    total = len(rows)
    optax_total = sum(ok for _, (ok, _), _ in rows)
    ours_total = sum(ok for _, _, (ok, _) in rows)
    print()
    print(f"optax: {optax_total}/{total} sweepable, jaxtune: {ours_total}/{total} "
          f"(optax {optax.__version__}, jax {jax.__version__})")


if __name__ == "__main__":
    main()
