"""How a chunk of training runs: the chunk forms, and which one a compiled program uses.

A chunk is `steps` optimizer steps of every member of a population, between two
record points. It can run in several *forms*, each giving the same training (up to
floating-point reassociation) at a very different speed:

  * along the steps, `"scan"`: one `lax.scan` over the steps inside one program (the
    host waits once); or `"loop"`: a host loop dispatching a compiled program of
    `loop_steps(steps)` steps asynchronously, nothing read back until the chunk's end;
  * along the members (of one device), `"vmap"`: the step vmapped over the members;
    or `"unroll"`: a Python loop over the members inside the program, each member
    unbatched, at most `UNROLL_GROUPS` copies of the step (past that, each copy is
    vmapped over its share of the members, so compile time stays bounded).

A form is named `"<steps>+<members>"`, e.g. `"scan+vmap"` (the only form before
chunk forms existed) or `"loop+unroll"`.

Why: XLA:CPU runs a convolution inside a `while` loop (a `lax.scan`) far slower than
the same convolution dispatched from the host (jax-ml/jax#12868), and a convolution
vmapped over the members' weights slower than the members' convolutions one after
another. Measured with `bench/chunk_forms.py`'s CNN (two 3x3 convs + linear, batch
64, adam; 8 members, a warm chunk of 20 steps, one core of a shared machine, medians
of 3): scan+vmap 62.0 s, scan+unroll 11.7 s, loop+vmap 4.10 s, loop+unroll 0.83 s.
For a model without convolution (an MLP, a transformer block) the forms ran within
noise of each other, and the single scanned, vmapped program dispatches least; the
figures are in docs/guide/devices.md ("How a chunk runs").

`chunk_form=` (of `jt.sweep` and `jt.Trainer`) takes:

  * `"auto"` (the default): `auto_form`, a rule read from the traced step: on the CPU
    backend a step holding a convolution runs `"loop+unroll"`, anything else, and every
    step on a GPU or TPU, `"scan+vmap"`;
  * `"measure"`: every form is compiled and timed on the first chunk of a program
    shape (from the same start state, nothing donated), the fastest kept and its result
    used as that chunk's; the choice is remembered for the life of the process
    (`measured`/`remember`), so later chunks and later sweeps reuse it;
  * one of `FORMS`, which overrides both.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

FORMS = ("scan+vmap", "scan+unroll", "loop+vmap", "loop+unroll")
CHUNK_FORMS = ("auto", "measure", *FORMS)  # what `chunk_form=` accepts
DEFAULT = "scan+vmap"

# The most copies of the step one program holds in the "unroll" form. Past it the
# members are split into this many groups, each vmapped over its share: the program
# grows with the copies (its compile time too), not with the members.
UNROLL_GROUPS = 8

# Steps per dispatched program in the "loop" form: the largest divisor of the chunk
# up to this. See `loop_steps`.
LOOP_STEPS = 1

_MEASURED: dict[Hashable, str] = {}  # program shape -> the fastest form measured
_CONVOLUTION: dict[Hashable, concurrent.futures.Future] = {}  # program shape -> whether its
#   step convolves (a bool, once known)
_CONVOLUTION_LOCK = threading.Lock()


def check_chunk_form(chunk_form: Any) -> str:
    """`chunk_form` if it is one of `CHUNK_FORMS`; ValueError naming the valid ones."""
    if not isinstance(chunk_form, str) or chunk_form not in CHUNK_FORMS:
        raise ValueError(
            f"`chunk_form` must be one of {', '.join(map(repr, CHUNK_FORMS))}, got "
            f"chunk_form={chunk_form!r}.")
    return chunk_form


def split(form: str) -> tuple[str, str]:
    """`(along the steps, along the members)` of a form, e.g. ("loop", "unroll")."""
    steps, members = form.split("+")
    return steps, members


def loop_steps(steps: int) -> int:
    """Steps per program in the "loop" form: the largest divisor of `steps` <= LOOP_STEPS.

    One step per program: on the two-conv CNN of `bench/chunk_forms.py` (8 members,
    20-step chunks, one core) a 5-step program ran a warm chunk as fast as a 1-step one
    (0.268 s vs 0.272 s, medians of 3), but its first chunk, compiling included, took
    8.70 s against 3.63 s: the program holds 5 x the members' copies of the step.
    """
    return max(k for k in range(1, min(LOOP_STEPS, steps) + 1) if steps % k == 0)


def member_groups(count: int) -> list[tuple[int, int]]:
    """`(start, size)` of the member groups of the "unroll" form: at most UNROLL_GROUPS,
    sizes differing by at most one."""
    groups = min(count, UNROLL_GROUPS)
    base, extra = divmod(count, groups)
    sizes = [base + (g < extra) for g in range(groups)]
    starts = [sum(sizes[:g]) for g in range(groups)]
    return list(zip(starts, sizes))


def map_members(fn: Callable, members: str, in_axes: Sequence[int | None], *args: Any) -> Any:
    """`fn` of one member over the members of `args` (leading axis where `in_axes` is 0).

    `members` is "vmap" (one vmapped call) or "unroll" (`member_groups`: a member alone
    runs unbatched, a larger group vmapped; the outputs concatenated in order).
    """
    if members == "vmap":
        return jax.vmap(fn, in_axes=tuple(in_axes))(*args)
    count = next(jax.tree_util.tree_leaves(a)[0].shape[0] for a, axis in zip(args, in_axes)
                 if axis == 0)
    outs = []
    for start, size in member_groups(count):
        if size == 1:
            one = [_rows(a, start, None) if axis == 0 else a for a, axis in zip(args, in_axes)]
            outs.append(jax.tree_util.tree_map(lambda x: x[None], fn(*one)))
        else:
            part = [_rows(a, start, size) if axis == 0 else a for a, axis in zip(args, in_axes)]
            outs.append(jax.vmap(fn, in_axes=tuple(in_axes))(*part))
    if len(outs) == 1:
        return outs[0]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *outs)


def _rows(tree: Any, start: int, size: int | None) -> Any:
    """Member `start` of every leaf (size None), or members start ... start + size - 1."""
    if size is None:
        return jax.tree_util.tree_map(lambda a: a[start], tree)
    return jax.tree_util.tree_map(lambda a: a[start:start + size], tree)


def has_convolution(jaxpr: Any) -> bool:
    """Whether a (closed) jaxpr, or any jaxpr inside it, holds `conv_general_dilated`."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(inner, "eqns") or hasattr(getattr(inner, "jaxpr", None), "eqns"):
                    if has_convolution(inner):
                        return True
    return False


def convolves(key: Hashable, trace: Callable[[], Any]) -> bool:
    """`has_convolution(trace())`, traced once per process for each `key`: a thread that
    asks while another traces waits for its answer (a group's first chunk is traced
    ahead of need in another thread, `runner.ahead`; tracing twice at once only slows
    both, under Python's lock)."""
    with _CONVOLUTION_LOCK:
        known = _CONVOLUTION.get(key)
        if known is None:
            _CONVOLUTION[key] = known = concurrent.futures.Future()
            owner = True
        else:
            owner = False
    if owner:
        try:
            known.set_result(has_convolution(trace()))
        except BaseException as error:
            with _CONVOLUTION_LOCK:
                del _CONVOLUTION[key]  # the next to ask traces again
            known.set_exception(error)
            raise
    return known.result()


def auto_form(platform: str, convolution: bool) -> str:
    """The form `chunk_form="auto"` runs: "loop+unroll" for a convolution on the CPU
    backend, else "scan+vmap" (the figures are in the module docstring and
    docs/guide/devices.md)."""
    if platform == "cpu" and convolution:
        return "loop+unroll"
    return DEFAULT


def measured(key: Hashable) -> str | None:
    """The form measured fastest for this program shape in this process, or None."""
    return _MEASURED.get(key)


def fastest(run: Callable[[str], Any], compile_form: Callable[[str], None],
            candidates: Sequence[str] = FORMS) -> tuple[str, Any, dict[str, float] | None]:
    """Times `run(form)` for each candidate (compiled first, by `compile_form(form)`).

    Returns `(the fastest form, its result, seconds per form)`; seconds None when the
    programs returned abstract values (compiled ahead of need: every candidate compiled). `run` must leave its
    input intact (no donation), since every candidate starts from it.
    """
    seconds, results = {}, {}
    for form in candidates:
        compile_form(form)
        start = time.perf_counter()
        results[form] = jax.block_until_ready(run(form))
        seconds[form] = time.perf_counter() - start
        if not all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(results[form])):
            for other in candidates:  # compiled ahead of need: nothing ran, nothing to time
                compile_form(other)
            return form, results[form], None
        for other in list(results):  # keep only the fastest result so far in memory
            if seconds[other] > min(seconds.values()):
                del results[other]
    best = min(seconds, key=seconds.get)
    return best, results[best], seconds


def remember(key: Hashable, form: str) -> None:
    """Keeps `form` as this program shape's measured choice for the life of the process."""
    _MEASURED[key] = form
