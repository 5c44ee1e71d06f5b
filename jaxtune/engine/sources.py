"""Where a population's minibatches come from: three forms of `data`, one protocol.

`data=` (of `jt.sweep`, `jt.Trainer`, `jt.lr_find`) takes one of three forms:

  * **arrays**: a pytree of arrays with a common leading example axis, e.g.
    `data=(x_train, y_train)`, placed once on the devices and drawn in minibatches
    of `batch_size`. A member's minibatch at step t is a function of (seed, t) only
    (one permutation of the examples per epoch), so it depends neither on the other
    members, nor on the chunking, nor on the device count.
  * **a function** `batch_fn(key, step) -> batch`, traced inside the compiled step,
    with `key` a PRNG key of (seed, step) and `step` the member's int32 step: members
    of one seed see the same batches. It must build the batch with `jnp`.
  * **an iterable of batches** read on the host (a generator, a PyTorch
    `DataLoader`, grain, `tf.data` as NumPy; see `jaxtune.stream`), batch k feeding
    step k of every member. `batch_size` is then the batches' own size.

Each form is a `BatchSource`, in the spirit of optax's `GradientTransformation(init,
update)`: a host-side `prepare`, which turns the members' steps into the device
arguments of one training call, and a traced `positions` / `batch` pair, which picks
each member's batch at each step of the chunk. The trainer never asks which form it
holds. A new form is one `from_*` function below and one line in `FORMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxtune._checks import check_in_range, positive_int
from jaxtune.devices import MEMBER_AXIS
from jaxtune.distributed import gather, place
from jaxtune.engine.contract import check_positional, read_signature, user_call
from jaxtune.engine.state import PopulationState, is_array, path_name
from jaxtune.stream import HostStream, is_stream

DATA_FORMS = (
    "a pytree of arrays with a common leading example axis, e.g. `data=(x_train, y_train)`",
    "a function `batch_fn(key, step) -> batch`, traced inside the compiled step (`key` is a "
    "PRNG key of (seed, step), `step` the member's int32 step)",
    "an iterable of batches (a generator, a PyTorch DataLoader, grain, tf.data as NumPy), "
    "batch k feeding step k of every member",
)

_MSG_NOT_A_FORM = "`data` leaf {where} is a {kind}, not an array; `data` must be {forms}."

_MSG_BATCH_SIZE_REQUIRED = (
    "`batch_size` is required when `data` holds arrays; pass the number of examples per "
    "step, e.g. `batch_size=128`.")

_MSG_STREAM_BATCH_SIZE = (
    "`batch_size`={given!r}, but the batches of `data` hold {held} examples; leave "
    "`batch_size` out with an iterable of batches.")

_MSG_BATCH_FN_LEAF = (
    "`batch_fn` must return a pytree of JAX arrays, got leaf {where} of type {kind}; build "
    "the batch with `jnp` (NumPy arrays cannot be indexed by the traced `step`: wrap them in "
    "`jnp.asarray` once, outside `batch_fn`).")


class Prepared(NamedTuple):
    """What one training call takes from its source, prepared on the host."""

    arguments: tuple  # device arrays the compiled program takes
    specs: tuple  # their partition specs: P() replicated, P(MEMBER_AXIS) split by member
    aligned: bool  # static: every member that matters is at one step (a cheaper program)
    member_steps: np.ndarray | None  # int64 [M]: each member's step, -1 for a free slot
    limit: int | None = None  # the most steps one call may run (None: any); past it, the
    #   trainer runs the steps as several calls


class BatchSource(NamedTuple):
    """One form of `data`, as the trainer's programs use it (see the module docstring)."""

    key: Hashable  # what the traced code depends on beside its arguments' shapes
    batch_size: int | None  # examples per batch; None when a `batch_fn` decides
    shapes: Callable[[jax.ShapeDtypeStruct], Any]  # (step key's shape) -> one batch's shapes
    prepare: Callable[..., Prepared]  # host: (state.step, member_steps, steps, aligned)
    positions: Callable[..., tuple[jax.Array, bool]]  # traced: (arguments, keys, population,
    #   steps, aligned) -> (each member's position at each step [M, steps], shared by all)
    batch: Callable[..., Any]  # traced: (arguments, keys, member, position) -> its batch
    data: Any = None  # the arrays on the devices, which another trainer may share
    stream: HostStream | None = None  # the host reader, whose old batches may be released
    order: Callable[..., jax.Array] | None = None  # (keys, seeds, start, steps) -> example
    #   indices [seeds, steps, batch_size]; for arrays only


# How `epoch_orders` shuffles, in a sweep's fingerprint: a checkpoint written by a jaxtune
# that shuffled otherwise is refused, since its resumed members would see other batches.
ORDER_ALGORITHM = "lowbias32 keyed sort"


def _mix(x: jax.Array) -> jax.Array:
    """A bijection of uint32 with full avalanche (C. Wellons' "lowbias32")."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def epoch_orders(key: jax.Array, seed: jax.Array, epochs: jax.Array, num_examples: int
                 ) -> jax.Array:
    """[len(epochs), num_examples]: the order of the examples in each epoch of `seed`.

    Each order sorts the examples by a keyed hash of their index (`_mix` of the index
    and a salt drawn from the key's words, the seed and the epoch): distinct salts give
    orders as unrelated as `jax.random.permutation`'s (`tests/test_population.py`
    checks positions and consecutive epochs). Not `jax.random.permutation` itself: its
    threefry lowers on XLA:CPU to rolled loops that take about 0.5 s to trace and
    compile, a quarter of a small sweep's first call, in every process; this program
    takes 0.1 s.
    """
    words = jax.random.key_data(key).reshape(-1) if jax.dtypes.issubdtype(
        key.dtype, jax.dtypes.prng_key) else key.reshape(-1)
    salt = _mix(jnp.asarray(seed).astype(jnp.uint32) + jnp.uint32(0x9E3779B9))
    for word in words:  # static: two words for threefry keys
        salt = _mix(salt ^ word.astype(jnp.uint32))
    salts = _mix(salt ^ _mix(epochs.astype(jnp.uint32) * jnp.uint32(0x85EBCA6B) + 1))[:, None]
    index = jnp.arange(num_examples, dtype=jnp.uint32)[None, :]
    scores = _mix(_mix(index + salts) ^ (salts * jnp.uint32(0xC2B2AE35)))  # distinct per row
    return jnp.argsort(scores, axis=1, stable=True).astype(jnp.int32)


def from_arrays(data: Any, batch_size: int | None, mesh: Mesh, num_seeds: int) -> BatchSource:
    """Minibatches of `batch_size` drawn from arrays with a leading example axis."""
    num_examples = leading_length("data", data)
    if batch_size is None:
        raise TypeError(_MSG_BATCH_SIZE_REQUIRED)
    batch_size = positive_int("batch_size", batch_size)
    check_in_range("batch_size", batch_size, 1, num_examples,
                   hint=f"`data` holds {num_examples} examples.")
    replicated = NamedSharding(mesh, P())
    data = place(data, replicated)
    per_epoch = num_examples // batch_size

    def order(keys, seeds, start, steps):
        """Minibatch indices [len(seeds), steps, batch_size] from step `start` on.

        Each epoch is a fresh permutation of the examples, a function of (seed,
        epoch) only, so a member's batches depend on nothing but its seed and step.
        """
        first_epoch = start // per_epoch
        epochs = first_epoch + jnp.arange(steps // per_epoch + 2)  # those `steps` can touch
        orders = jax.vmap(lambda seed: epoch_orders(keys[1], seed, epochs, num_examples))(
            seeds)  # [seeds, epochs, examples]
        t = start + jnp.arange(steps)
        epoch = t // per_epoch - first_epoch
        columns = (t % per_epoch)[:, None] * batch_size + jnp.arange(batch_size)
        return orders[:, epoch[:, None], columns]

    def shapes(step_key):
        return jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct((batch_size,) + np.shape(a)[1:], jnp.result_type(a)),
            data)

    def prepare(state_step, member_steps, steps, aligned):
        member_steps = _host_steps(member_steps, state_step, aligned is not False)
        starts = _starts(member_steps)
        aligned = aligned is not False and starts is not None and starts.size == 1
        start = int(starts[0]) if starts is not None else 0
        return Prepared((data, place(np.int32(start), replicated)), (P(), P()), aligned,
                        member_steps)

    def positions(arguments, keys, population: PopulationState, steps, aligned):
        """Example indices of every member, and whether every member shares them.

        Aligned (every member at step `start`): the orders are drawn once per seed;
        with a single seed every member shares one [steps, batch_size] array, so the
        minibatch gather and the first layer's input stay unbatched under `vmap`
        (one matmul against every member's weights). Otherwise each member draws its
        own [steps, batch_size] from its own step.

        The trainer draws the aligned orders in a program of their own, shared by every
        static group on these data (`engine.programs.order_program`: a sort per epoch, which
        would otherwise be compiled into every group's training program), and passes
        them as a third argument; without it they are drawn here.
        """
        if aligned:
            shared = (arguments[2] if len(arguments) > 2
                      else order(keys, jnp.arange(num_seeds), arguments[1], steps))
            if num_seeds == 1:
                return shared[0], True
            return shared[population.seed], False
        indices = jax.vmap(lambda s, t: order(keys, s[None], t, steps)[0])(
            population.seed, population.step)
        return indices, False

    return BatchSource(("arrays", batch_size, num_examples), batch_size, shapes, prepare,
                       positions, _rows, data=data, order=order)


def from_batch_fn(batch_fn: Callable, batch_size: int | None, mesh: Mesh, num_seeds: int
                  ) -> BatchSource:
    """Batches built inside the compiled step by `batch_fn(key, step)`."""
    check_positional(read_signature(batch_fn, "batch_fn", 2), "data", 2, "(key, step)")
    if batch_size is not None:
        batch_size = positive_int("batch_size", batch_size)

    def shapes(step_key):
        def probe(key, step):
            batch = user_call("batch_fn", batch_fn, key, step)
            for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
                if not isinstance(leaf, jax.Array):
                    raise TypeError(_MSG_BATCH_FN_LEAF.format(
                        where=path_name(path, "batch"), kind=type(leaf).__name__))
            return batch

        return jax.eval_shape(probe, step_key, jax.ShapeDtypeStruct((), jnp.int32))

    def prepare(state_step, member_steps, steps, aligned):
        member_steps = None if member_steps is None else np.asarray(member_steps, np.int64)
        return Prepared((), (), False, member_steps)  # the step number picks the batch

    def positions(arguments, keys, population: PopulationState, steps, aligned):
        return jnp.zeros((population.step.shape[0], steps), jnp.int32), False

    def batch(arguments, keys, member: PopulationState, position):
        key = jax.random.fold_in(jax.random.fold_in(keys[1], member.seed), member.step)
        return batch_fn(key, member.step)

    return BatchSource(("batch_fn", batch_fn), batch_size, shapes, prepare, positions, batch)


def from_stream(data: Any, batch_size: int | None, mesh: Mesh, num_seeds: int) -> BatchSource:
    """Batches read on the host from an iterable, batch k feeding step k (`HostStream`).

    Each call stacks the batches of every distinct member step once, a window of
    [starts * steps, batch_size, ...] on the devices (`HostStream.window`); a member
    reads the rows of its own step.
    """
    stream = data if isinstance(data, HostStream) else HostStream(data)
    if batch_size is not None and batch_size != stream.batch_size:
        raise ValueError(_MSG_STREAM_BATCH_SIZE.format(given=batch_size, held=stream.batch_size))
    replicated = NamedSharding(mesh, P())
    by_member = NamedSharding(mesh, P(MEMBER_AXIS))

    def shapes(step_key):
        return stream.batch_shapes()

    def prepare(state_step, member_steps, steps, aligned):
        member_steps = _host_steps(member_steps, state_step, True)
        starts = _starts(member_steps)
        aligned = aligned is not False and starts.size == 1
        count = 1 << (starts.size - 1).bit_length()  # few shapes: powers of two
        limit = stream.steps_per_chunk(count)
        if steps > limit:
            return Prepared((), (), aligned, member_steps, limit)
        padded = np.concatenate([starts, np.repeat(starts[-1:], count - starts.size)])
        window = stream.window(padded, steps, replicated)
        if aligned:
            return Prepared((window,), (P(),), True, member_steps)
        offsets = np.searchsorted(starts, np.maximum(member_steps, 0)) * steps
        return Prepared((window, place(offsets.astype(np.int32), by_member)),
                        (P(), P(MEMBER_AXIS)), False, member_steps)

    def positions(arguments, keys, population: PopulationState, steps, aligned):
        if aligned:  # rows of the window
            return jnp.arange(steps), True
        return arguments[1][:, None] + jnp.arange(steps), False

    return BatchSource(("stream", stream.treedef, tuple(stream.spec)), stream.batch_size,
                       shapes, prepare, positions, _rows, stream=stream)


def _rows(arguments, keys, member, position):
    """Row `position` of the stacked arrays `arguments[0]`."""
    return jax.tree_util.tree_map(lambda a: a[position], arguments[0])


def _host_steps(member_steps: Any, state_step: jax.Array, needed: bool) -> np.ndarray | None:
    """The members' steps on the host: as given, else read from the devices when `needed`."""
    if member_steps is None and needed:
        member_steps = gather(state_step)
    return None if member_steps is None else np.asarray(member_steps, np.int64)


def _starts(member_steps: np.ndarray | None) -> np.ndarray | None:
    """The distinct steps of the members that matter (step >= 0), at least one."""
    if member_steps is None:
        return None
    starts = np.unique(member_steps[member_steps >= 0])
    return starts if starts.size else np.zeros(1, np.int64)


def _is_batch_fn(data: Any) -> bool:
    return callable(data) and not any(is_array(leaf) for leaf in jax.tree_util.tree_leaves(data))


def _is_arrays(data: Any) -> bool:
    return _not_an_array(data) is None


# The forms of `data`, tried in order: (recognizes, builds its source).
FORMS: tuple[tuple[Callable[[Any], bool], Callable[..., BatchSource]], ...] = (
    (_is_batch_fn, from_batch_fn),
    (is_stream, from_stream),
    (_is_arrays, from_arrays),
)


def _form(data: Any) -> Callable[..., BatchSource]:
    """The `from_*` function of `data`'s form; TypeError naming the leaf of no form."""
    for recognizes, build in FORMS:
        if recognizes(data):
            return build
    path, leaf = _not_an_array(data)
    raise TypeError(_MSG_NOT_A_FORM.format(where=path_name(path, "data"),
                                           kind=type(leaf).__name__,
                                           forms="; or ".join(DATA_FORMS)))


def source_of(data: Any, batch_size: int | None, mesh: Mesh, num_seeds: int) -> BatchSource:
    """The `BatchSource` of `data` in whichever form it is, placed on `mesh`'s devices.

    Args:
      data: arrays, a `batch_fn` or an iterable of batches (see the module docstring).
      batch_size: static; examples per step (required with arrays; with an iterable,
        None or the batches' size; ignored by a `batch_fn`).
      mesh: the devices the members are sharded over.
      num_seeds: static; how many seed indices members may carry.
    """
    return _form(data)(data, batch_size, mesh, num_seeds)


def check_data_form(data: Any) -> Callable | None:
    """The `batch_fn` when `data` is one, None for arrays or a stream; TypeError otherwise."""
    return data if _form(data) is from_batch_fn else None


def _not_an_array(data: Any) -> tuple[Any, Any] | None:
    """`(path, leaf)` of the first leaf of `data` that is no array, or None."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        if not (is_array(leaf) or isinstance(leaf, int | float | bool)
                or type(leaf).__module__.split(".")[0] == "pandas"):
            return path, leaf
    return None


def leading_length(name: str, tree: Any) -> int:
    """The common leading dimension of every leaf of `tree` (numeric arrays only)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValueError(f"`{name}` holds no arrays; pass e.g. `{name}=(x, y)`.")
    lengths = {}
    for path, leaf in leaves:
        check_numeric_leaf(name, path, leaf)
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(
                f"`{name}` leaf {path_name(path, name)} is a scalar; every array in `{name}` "
                "needs a leading example axis."
            )
        lengths[path_name(path, name)] = shape[0]
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise ValueError(
            f"every array in `{name}` must have the same number of examples (leading axis), "
            f"got {shown}."
        )
    return next(iter(lengths.values()))


def check_numeric_leaf(name: str, path: Any, leaf: Any) -> None:
    """Raises TypeError unless `leaf` is a numeric array (not a DataFrame, not objects)."""
    where = path_name(path, name)
    kind = type(leaf).__module__.split(".")[0]
    if kind == "pandas":
        raise TypeError(
            f"`{name}` leaf {where} is a pandas {type(leaf).__name__}; pass its values as a "
            "NumPy array, e.g. `df.to_numpy(dtype=np.float32)`."
        )
    if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float, bool)):
        raise TypeError(
            f"`{name}` leaf {where} is a {type(leaf).__name__}, not an array; `{name}` must be "
            "a pytree (tuple, dict ...) of NumPy or JAX arrays."
        )
    dtype = np.asarray(leaf).dtype if not isinstance(leaf, jax.Array) else leaf.dtype
    if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
        raise TypeError(
            f"`{name}` leaf {where} has dtype {dtype}, which JAX cannot hold; convert it to a "
            "numeric dtype (e.g. `.astype(np.float32)`)."
        )


def check_finite_leaves(name: str, tree: Any) -> None:
    """Raises ValueError naming the first floating array of `tree` holding a NaN or inf.

    Only arrays are checked: other leaves (an Equinox max-pool's Python float `-inf`)
    are held as they are, never trained or carried per member.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not is_array(leaf):
            continue
        array = np.asarray(leaf)
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.isfinite(array).sum())
            fix = ("fix how that leaf is initialized" if name == "init_params" else
                   f"clean the {name} first (e.g. `np.nan_to_num`, or drop those rows)")
            raise ValueError(
                f"`{name}` leaf {path_name(path, name)} holds {bad} non-finite value(s) (NaN or "
                f"inf); {fix}: every member would diverge on them."
            )
