"""The population trainer: many configurations x seeds in one compiled program.

A population is a pytree whose every leaf has a leading *member* axis. Each member
is one configuration (a row of dynamic hyperparameters) trained from one seed, and
carries its own step count: members of one population may be at different steps.
`Trainer` turns a loss function and an optimizer factory into compiled programs
over a population:

  * `init(hparams, seed)`: parameters (shared, or `init_fn(key)` per seed) and
    optimizer state, built from each member's own hyperparameters;
  * `train(state, steps)`: `steps` optimizer steps as one `lax.scan`, vmapped over
    the members and sharded over devices (`shard_map` over a 1-D mesh);
  * `evaluate(state)`: `eval_fn` on the validation data for every member.

Programs are cached for the life of the process, keyed on the user functions, the
static hyperparameters, the shapes, dtypes and shardings of their arguments and the
chunk length: a second `Trainer` (or a second `sweep`) built from the same functions
compiles nothing. Data, keys and shared initial parameters are arguments of the
programs, never constants baked into them.

The optimizer is built *inside* the traced step, `make_optimizer(**hparams)`, so
every hyperparameter is an array and new values never recompile. The optimizer's
`update` receives the minibatch loss as `value=` when it accepts extra arguments
(`optax.GradientTransformationExtraArgs`), which is what `reduce_on_plateau` needs.

Members with the same seed draw the same minibatches: a member's minibatch at step
t is a function of (seed, t) only (one permutation of the examples per epoch), so
it does not depend on the other members, the chunking or the device count. A
member whose loss or parameters become non-finite during a `train` call is rolled
back to its state at the start of that call, frozen there and flagged with the
step it diverged at; nothing spreads to the other members.

Routing: each hyperparameter is passed, by keyword, to every one of
`make_optimizer`, `loss_fn(params, batch, ...)`, `init_fn(key, ...)` and
`eval_fn(params, data, ...)` whose signature names it (or that takes `**kwargs`;
`loss_fn` and `eval_fn` only by name). A `loss_fn` with a `key` parameter gets a
PRNG key per step (e.g. for dropout); `key` is therefore never a hyperparameter. An
`eval_fn` with a `step` parameter gets the member's steps trained (int32, traced).

What `loss_fn` may return:
  * `loss`, a float scalar;
  * `(loss, aux)`: when `aux` is a dict, each entry must be a scalar and is a
    *training metric*, recorded at every record point as its mean over the steps
    since the previous one (a curve in `SweepResult.metrics`, beside the eval
    metrics, whose names it must not reuse). Any other `aux` is ignored.

Model state (BatchNorm statistics, EMA copies, counters): when `loss_fn` has a
parameter named `model_state`, the initial parameters (or `init_fn`'s result) are
the pair `(params, model_state)`, and `loss_fn(params, batch, model_state=...)`
returns `(loss, (new_model_state, metrics))`, `metrics` a dict of scalars or None.
The state lives in `PopulationState.model_state`, is carried from step to step,
rolled back with the parameters when a member diverges, checkpointed, returned
as `SweepResult.model_state`, passed to
`eval_fn` when it names `model_state`, and never reaches the optimizer (weight
decay never touches it). For Flax NNX: `graphdef, params, stats = nnx.split(model,
nnx.Param, nnx.BatchStat)`, then `nnx.merge(graphdef, params, model_state,
copy=True)` inside `loss_fn` and `nnx.state(model, nnx.BatchStat)` as the new
state. Flax Linen: `(variables["params"], variables["batch_stats"])` and
`model.apply(..., mutable=["batch_stats"])`. Equinox: `eqx.nn.make_with_state`.

Parameters as the libraries make them (an Equinox module, an NNX state, a Linen
variable dict): only inexact (floating, complex) arrays are trained. Integer and
bool arrays are carried unchanged, per member; leaves that are not arrays (an
Equinox module's activation function, a flag) are held once by the trainer and put
back before every call of the user's functions. Random-number-generator state in
the parameters (NNX `Rngs` inside `nnx.Dropout`) is refused with the fix: split it
off and use `loss_fn`'s `key`. `SweepResult.params` holds the arrays only (None
where a non-array leaf was): `eqx.combine` them with the model's other leaves.

Data: `data` is either a pytree of arrays with a leading example axis, drawn in
minibatches of `batch_size`, or a function `batch_fn(key, step) -> batch` traced
inside the compiled step, with `key` a PRNG key of (seed, step) and `step` the
member's int32 step (members of one seed see the same batches), or an iterable
of batches read on the host, batch k feeding step k of every member (see
`jaxtune.stream`).
"""

from __future__ import annotations

import collections
import functools
import inspect
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxtune._checks import positive_int
from jaxtune.devices import MEMBER_AXIS, member_mesh
from jaxtune.distributed import gather, place
from jaxtune.stream import HostStream, is_stream


class PopulationState(NamedTuple):
    """Every member's training state; each leaf has a leading member axis [M]."""

    params: Any  # model parameters, each leaf [M, ...]
    opt_state: Any  # optimizer state built from the member's hyperparameters
    hparams: dict[str, jax.Array]  # dynamic hyperparameters, each [M] float32/int32
    seed: jax.Array  # int32 [M]: seed index; picks the init, minibatch order and keys
    step: jax.Array  # int32 [M]: training steps run so far (frozen members count too)
    alive: jax.Array  # bool [M]: False once the member diverged (frozen since)
    diverged_step: jax.Array  # int32 [M]: first step with a non-finite loss, -1 if none
    model_state: Any = None  # model state beside the parameters (BatchNorm statistics ...),
    #   each leaf [M, ...]; None when `loss_fn` takes no `model_state`


class _Signature(NamedTuple):
    """Which hyperparameter names a user function accepts."""

    names: frozenset[str]  # parameters it takes by keyword
    var_keyword: bool  # has **kwargs
    required: tuple[str, ...]  # keyword parameters without a default
    positional: int  # how many parameters it can take positionally (-1: any number)
    text: str  # how to show it in an error


def _signature(fn: Callable, role: str, positional: int) -> _Signature:
    """Reads `fn`'s keyword parameters after its first `positional` ones."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and some C callables
        return _Signature(frozenset(), True, (), -1, f"{role}(...)")
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    leading = [p for p in parameters if p.kind != inspect.Parameter.KEYWORD_ONLY][:positional]
    rest = [p for p in parameters if p not in leading and p.kind in kinds]
    var_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
    takes = -1 if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters) else len(
        [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                             inspect.Parameter.POSITIONAL_OR_KEYWORD)])
    required = tuple(p.name for p in rest if p.default is inspect.Parameter.empty)
    shown = ", ".join(p.name for p in parameters)
    return _Signature(frozenset(p.name for p in rest), var_keyword, required, takes,
                      f"{role}({shown})")


def _select(values: Mapping[str, Any], signature: _Signature, use_var_keyword: bool) -> dict:
    if signature.var_keyword and use_var_keyword:
        return dict(values)
    return {k: v for k, v in values.items() if k in signature.names}


def _tree_all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _non_finite_counts(tree: Any) -> Any:
    """For each inexact leaf [M, ...] of `tree`, its NaN and inf count per member, int32 [M]."""
    return jax.tree_util.tree_map(
        lambda x: jnp.sum(~jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1, dtype=jnp.int32)
        if jnp.issubdtype(x.dtype, jnp.inexact) else None, tree)


def _tree_where(condition: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)


def _path(path: Any, name: str) -> str:
    return f"{name}{jax.tree_util.keystr(path)}"


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | jax.ShapeDtypeStruct)


def _is_inexact(leaf: Any) -> bool:
    return _is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def _partition(tree: Any, keep: Callable[[Any], bool]) -> tuple[Any, Any]:
    """`(kept, rest)`: two trees of `tree`'s structure, None where the other has the leaf."""
    kept = jax.tree_util.tree_map(lambda x: x if keep(x) else None, tree)
    rest = jax.tree_util.tree_map(lambda x: None if keep(x) else x, tree)
    return kept, rest


def _combine(*trees: Any) -> Any:
    """Undoes `_partition`: each leaf from the first tree that holds it."""
    def first(*leaves):
        return next((x for x in leaves if x is not None), None)
    return jax.tree_util.tree_map(first, *trees, is_leaf=lambda x: x is None)


def _metric_names(role: str, metrics: Mapping, shown: str) -> tuple[str, ...]:
    """The names of a dict of scalar metrics; raises TypeError naming a bad entry.

    The key "" stands for a single scalar (an `eval_fn` that returns one value).
    """
    for name, value in metrics.items():
        if not isinstance(name, str) or (name == "" and len(metrics) > 1):
            raise TypeError(f"`{role}` must return a dict with str keys, got key {name!r}.")
        if not isinstance(value, jax.Array | float | int) or np.shape(value) != ():
            got = (f"shape {value.shape}" if isinstance(value, jax.Array)
                   else f"a {type(value).__name__} {value!r:.60}")
            label = f"[{name!r}]" if name else ""
            raise TypeError(
                f"`{role}` must return a scalar or a dict of scalars, got {got} for "
                f"{shown}{label}; reduce it (e.g. `jnp.mean`) or drop it."
            )
    return tuple(metrics)


def _check_same_tree(name: str, before: Any, after: Any) -> None:
    """Raises TypeError unless `after` has `before`'s structure, shapes and dtypes."""
    shapes = lambda t: [(np.shape(x), jnp.result_type(x)) for x in  # noqa: E731
                        jax.tree_util.tree_leaves(t)]
    if (jax.tree_util.tree_structure(before) != jax.tree_util.tree_structure(after)
            or shapes(before) != shapes(after)):
        raise TypeError(
            f"`loss_fn` returned a new `{name}` whose structure differs from the initial one; "
            f"return it in the same form.\n  initial: {jax.tree_util.tree_structure(before)} "
            f"{shapes(before)}\n  returned: {jax.tree_util.tree_structure(after)} "
            f"{shapes(after)}"
        )


def _refuse_nnx_state(params: Any) -> None:
    """Raises TypeError at the first NNX BatchNorm statistic in the parameters.

    In an NNX module's pytree form the statistics are float arrays: the optimizer
    would "train" them (weight decay shrinking the variance) while their updates
    inside the module were lost.
    """
    nnx = sys.modules.get("flax.nnx")
    if nnx is None:  # flax not imported: no NNX variable can be in the tree
        return
    leaves = jax.tree_util.tree_flatten_with_path(
        params, is_leaf=lambda x: isinstance(x, nnx.BatchStat))[0]
    for path, leaf in leaves:
        if isinstance(leaf, nnx.BatchStat):
            raise TypeError(
                f"parameter leaf {_path(path, 'params')} is an `nnx.BatchStat`: model state "
                "that the optimizer must not train. Split it off and give `loss_fn` a "
                "`model_state` parameter: `graphdef, params, stats = nnx.split(model, "
                "nnx.Param, nnx.BatchStat)`, `init_params=(params, stats)`, and return "
                "`(loss, (nnx.state(model, nnx.BatchStat), metrics))`."
            )


DATA_FORMS = (
    "a pytree of arrays with a common leading example axis, e.g. `data=(x_train, y_train)`",
    "a function `batch_fn(key, step) -> batch`, traced inside the compiled step (`key` is a "
    "PRNG key of (seed, step), `step` the member's int32 step)",
    "an iterable of batches (a generator, a PyTorch DataLoader, grain, tf.data as NumPy), "
    "batch k feeding step k of every member",
)


def check_data_form(data: Any) -> Callable | None:
    """The `batch_fn` when `data` is one, None for arrays or a stream; TypeError otherwise."""
    if callable(data) and not any(_is_array(leaf) for leaf in jax.tree_util.tree_leaves(data)):
        return data
    if is_stream(data):
        return None
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        if not (_is_array(leaf) or isinstance(leaf, int | float | bool)
                or type(leaf).__module__.split(".")[0] == "pandas"):
            forms = "; or ".join(DATA_FORMS)
            raise TypeError(
                f"`data` leaf {_path(path, 'data')} is a {type(leaf).__name__}, not an array; "
                f"`data` must be {forms}."
            )
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
                f"`{name}` leaf {_path(path, name)} is a scalar; every array in `{name}` needs "
                "a leading example axis."
            )
        lengths[_path(path, name)] = shape[0]
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise ValueError(
            f"every array in `{name}` must have the same number of examples (leading axis), "
            f"got {shown}."
        )
    return next(iter(lengths.values()))


def check_numeric_leaf(name: str, path: Any, leaf: Any) -> None:
    """Raises TypeError unless `leaf` is a numeric array (not a DataFrame, not objects)."""
    where = _path(path, name)
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
        if not _is_array(leaf):
            continue
        array = np.asarray(leaf)
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.isfinite(array).sum())
            fix = ("fix how that leaf is initialized" if name == "init_params" else
                   f"clean the {name} first (e.g. `np.nan_to_num`, or drop those rows)")
            raise ValueError(
                f"`{name}` leaf {_path(path, name)} holds {bad} non-finite value(s) (NaN or "
                f"inf); {fix}: every member would diverge on them."
            )


def is_init_function(init_params: Any) -> bool:
    """True for an `init_fn(key, ...)`, False for a pytree of parameters.

    A callable pytree that holds arrays (an equinox module, say) is parameters.
    """
    if not callable(init_params):
        return False
    return not any(isinstance(leaf, (jax.Array, np.ndarray))
                   for leaf in jax.tree_util.tree_leaves(init_params))


def check_hparam_routing(
    names: Sequence[str],
    make_optimizer: Callable,
    loss_fn: Callable,
    init_fn: Callable | None = None,
    eval_fn: Callable | None = None,
) -> None:
    """Raises ValueError unless the hyperparameter names fit the user functions.

    Every name must be a parameter of at least one of the functions, and every
    parameter of `make_optimizer` without a default must be a name.
    """
    if "key" in names:
        raise ValueError(
            "hyperparameter `key` is reserved: a `loss_fn` with a `key` parameter receives the "
            "per-step PRNG key there; rename the dimension (e.g. `data_key`)."
        )
    if "model_state" in names:
        raise ValueError(
            "hyperparameter `model_state` is reserved: a `loss_fn` with a `model_state` "
            "parameter receives the model's state there; rename the dimension."
        )
    optimizer = _signature(make_optimizer, "make_optimizer", 0)
    signatures = [optimizer, _signature(loss_fn, "loss_fn", 2)]
    if init_fn is not None:
        signatures.append(_signature(init_fn, "init_fn", 1))
    if eval_fn is not None:
        signatures.append(_signature(eval_fn, "eval_fn", 2))
    missing = [n for n in optimizer.required if n not in names]
    if missing:
        raise ValueError(
            f"`make_optimizer` needs {', '.join(map(repr, missing))}, which the search space "
            f"does not define (space names: {', '.join(names) or 'none'}); add "
            f"{missing[0]}=jt.fixed(...) or another dimension to the space, or give the "
            "parameter a default."
        )
    for name in names:
        takers = [s for s in signatures if name in s.names]
        if not takers and not optimizer.var_keyword:
            shown = ", ".join(s.text for s in signatures)
            raise ValueError(
                f"hyperparameter `{name}` is not a parameter of any of {shown}; rename the "
                "dimension or add the parameter to the function that uses it."
            )


def _check_positional(signature: _Signature, role: str, needed: int, shown: str) -> None:
    if 0 <= signature.positional < needed:
        raise TypeError(
            f"`{role}` must take {needed} positional argument{'s' if needed > 1 else ''} "
            f"{shown}, got {signature.text}."
        )


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a static hyperparameter value (lists become tuples)."""
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


class _Functions(NamedTuple):
    """The user functions and static settings: everything a program's code depends on.

    Hashable, so it keys the process-wide program cache: two trainers built from the
    same functions share their compiled programs.
    """

    loss_fn: Callable
    make_optimizer: Callable
    init_fn: Callable | None
    eval_fn: Callable | None
    static: tuple[tuple[str, Any], ...]  # (name, frozen value), sorted
    batch_size: int | None  # None with a `batch_fn`
    num_seeds: int
    batch_fn: Callable | None  # `data` as `batch_fn(key, step) -> batch`
    streamed: bool  # `data` as an iterable of batches, one per step
    init_static: tuple[Any, tuple]  # (treedef, leaves): the non-array leaves of init_params

    @property
    def static_hparams(self) -> dict[str, Any]:
        return dict(self.static)


class Resolved(NamedTuple):
    """What the user functions return, found once per hyperparameter signature."""

    has_aux: bool  # loss_fn returns (loss, aux)
    eval_names: tuple[str, ...]  # names of the evaluated metrics, in the user's order
    params: Any  # ShapeDtypeStruct tree of one member's array parameters (others None)
    opt_state: Any  # ShapeDtypeStruct tree of one member's optimizer state
    model_state: Any  # ShapeDtypeStruct tree of one member's model state, None if unused
    aux_names: tuple[str, ...]  # the scalar training metrics `loss_fn` returns in its aux
    static_params: Any  # the parameters' non-array leaves (arrays None), same for all members


# Compiled programs for the life of the process, least recently used dropped first.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 256
_RESOLVED: dict[Any, Resolved] = {}


def clear_program_cache() -> None:
    """Forgets every compiled program (the next sweep compiles again)."""
    _PROGRAMS.clear()
    _RESOLVED.clear()


def _avals(args: Any) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (treedef, tuple((np.shape(x), str(jnp.result_type(x)), getattr(x, "sharding", None),
                            getattr(x, "weak_type", False)) for x in leaves))


def _loss_hint(error: Exception) -> str:
    if isinstance(error, jax.errors.TracerBoolConversionError | jax.errors.ConcretizationTypeError):
        return (
            " A value that must be a Python number was given a traced hyperparameter. optax's "
            "schedules (e.g. `optax.warmup_cosine_decay_schedule`) cannot take a swept step "
            "count: use the `jt.` schedule of the same name, which takes traced arguments; or "
            "make the dimension static with `jt.choice([...], static=True)`."
        )
    return ""


def _dynamic_shape_hint(error: Exception) -> str | None:
    """For JAX's "Shapes must be 1D sequences of concrete values": which dimension to make static.

    JAX's own advice (`static_argnums`) cannot be applied to jaxtune's programs.
    """
    text = str(error)
    if not text.startswith("Shapes must be 1D sequences of concrete values"):
        return None
    names = list(dict.fromkeys(re.findall(r"argument hp\['([^']+)'\]", text)))
    name = names[0] if names else "name"
    which = f"The hyperparameter `{name}`" if names else "A hyperparameter"
    return (
        f"{text.splitlines()[0]} {which} sets a shape, but it is dynamic: a traced array, so "
        f"that new values never recompile. Make the dimension static (each value then compiles "
        f"its own program): `{name}=jt.choice([...], static=True)` or `jt.fixed(..., "
        f"static=True)`; `jt.randint` and the other ranges are always dynamic."
    )


class Trainer:
    """Trains a population of members with one compiled program per shape.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]; y = 3 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> trainer = jt.Trainer(loss, lambda learning_rate: optax.sgd(learning_rate),
      ...                      init_params=jnp.zeros((1, 1)), data=(x, y), batch_size=16)
      >>> state = trainer.init({"learning_rate": np.array([0.001, 0.01, 0.1, 0.5])})
      >>> state, losses = trainer.train(state, steps=50)
      >>> losses.shape
      (4, 50)
      >>> bool(losses[3, -1] < losses[0, -1])
      True

    The members are sharded over `devices`, so their number must be a multiple
    of the device count (`sweep` pads for you).

    Args:
      loss_fn: `loss_fn(params, batch, **hparams) -> loss` or `(loss, aux)`, with a
        scalar loss and `aux` a dict of scalar training metrics (or anything else,
        ignored); `batch` has the structure of `data` with `batch_size` examples.
        With a `model_state` parameter it returns `(loss, (new_model_state,
        metrics))` (see the module docstring).
      make_optimizer: `make_optimizer(**hparams) -> optax.GradientTransformation`,
        called inside the traced step with each member's hyperparameters as arrays.
      data: a pytree of arrays (e.g. `(x, y)`), each with the same leading length;
        or `batch_fn(key, step) -> batch`, traced inside the compiled step; or an
        iterable of batches (a generator, a DataLoader, a `jt.HostStream`), batch
        k feeding step k of every member.
      batch_size: static; examples per step, at most the number of examples (not
        used with a `batch_fn`; with an iterable, None or the batches' size).
      init_params: a pytree of initial parameters shared by every member, or a
        function `init_fn(key, **hparams) -> params` called once per seed; either
        gives `(params, model_state)` when `loss_fn` takes `model_state`.
      eval_fn: `eval_fn(params, eval_data, **hparams)` returning a scalar or a dict of
        scalars; it gets `model_state=` when it names it. Defaults to `loss_fn` on
        the whole of `eval_data` ("eval_loss").
      eval_data: a pytree of arrays passed whole to `eval_fn`.
      static_hparams: plain Python values for the static hyperparameters of this
        group (an optimizer name, a layer width ...), routed like the others.
      num_seeds: static; how many seed indices members may carry (0 ... num_seeds-1).
      key: an int or a PRNG key; the root of every member's randomness.
      devices: the devices to shard the members over (default: all local ones).

    Attributes:
      data, eval_data: the data placed on the devices (replicated); pass them to
        another trainer on the same devices to share one copy.
      compiles, compile_seconds: programs this trainer compiled (cache misses) and
        the seconds spent compiling them.
    """

    def __init__(
        self,
        loss_fn: Callable,
        make_optimizer: Callable[..., optax.GradientTransformation],
        *,
        init_params: Any,
        data: Any,
        batch_size: int | None = None,
        eval_fn: Callable | None = None,
        eval_data: Any = None,
        static_hparams: Mapping[str, Any] | None = None,
        num_seeds: int = 1,
        key: int | jax.Array = 0,
        devices: Sequence[jax.Device] | None = None,
    ):
        if not callable(loss_fn):
            raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
        if not callable(make_optimizer):
            raise TypeError(
                f"`make_optimizer` must be callable (hyperparameters -> optax "
                f"GradientTransformation), got {type(make_optimizer).__name__}."
            )
        _check_positional(_signature(loss_fn, "loss_fn", 2), "loss_fn", 2, "(params, batch)")
        batch_fn = check_data_form(data)
        self.stream = None
        if is_stream(data):
            self.stream = data if isinstance(data, HostStream) else HostStream(data)
            self.num_examples = None
            if batch_size is not None and batch_size != self.stream.batch_size:
                raise ValueError(
                    f"`batch_size`={batch_size!r}, but the batches of `data` hold "
                    f"{self.stream.batch_size} examples; leave `batch_size` out with an "
                    "iterable of batches.")
            batch_size = self.stream.batch_size
        elif batch_fn is not None:
            _check_positional(_signature(batch_fn, "batch_fn", 2), "data", 2, "(key, step)")
            self.num_examples = None
            if batch_size is not None:
                batch_size = positive_int("batch_size", batch_size)
        else:
            self.num_examples = leading_length("data", data)
            if batch_size is None:
                raise TypeError("`batch_size` is required when `data` holds arrays; pass the "
                                "number of examples per step, e.g. `batch_size=128`.")
            batch_size = positive_int("batch_size", batch_size)
            if batch_size > self.num_examples:
                raise ValueError(
                    f"`batch_size` must lie in [1, {self.num_examples}] (the number of examples "
                    f"in `data`), got batch_size={batch_size}."
                )
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"`eval_fn` must be callable, got {type(eval_fn).__name__}.")
        if eval_fn is not None and eval_data is None:
            raise ValueError("`eval_fn` was given without `eval_data`; pass `eval_data=`.")
        if eval_fn is not None:
            _check_positional(_signature(eval_fn, "eval_fn", 2), "eval_fn", 2,
                              "(params, eval_data)")
        if eval_data is not None:
            leading_length("eval_data", eval_data)
        init_fn = init_params if is_init_function(init_params) else None
        if init_fn is not None:
            _check_positional(_signature(init_fn, "init_fn", 1), "init_fn", 1, "(key)")
        elif init_params is None:
            raise TypeError(
                "`init_params` is None; pass the initial parameters (a pytree of arrays) or "
                "an `init_fn(key, **hparams)` that returns them."
            )
        num_seeds = positive_int("num_seeds", num_seeds)
        static = dict(static_hparams or {})
        init_static: tuple[Any, tuple] = (None, ())
        if init_fn is None:
            init_params, rest = _partition(init_params, _is_array)
            rest_leaves, rest_def = jax.tree_util.tree_flatten(rest)
            init_static = (rest_def, tuple(_freeze(x) for x in rest_leaves))
            self._init_static = rest
        else:
            self._init_static = None

        self.functions = _Functions(
            loss_fn, make_optimizer, init_fn, eval_fn,
            tuple(sorted((k, _freeze(v)) for k, v in static.items())), batch_size, num_seeds,
            batch_fn, self.stream is not None, init_static,
        )
        self.loss_fn = loss_fn
        self.make_optimizer = make_optimizer
        self.init_fn = init_fn
        self.eval_fn = eval_fn
        self.batch_size = batch_size
        self.num_seeds = num_seeds
        self.static_hparams = static
        self.mesh = member_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self.compile_seconds = 0.0
        self.compiles = 0

        if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            root = key
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            root = jax.random.key(int(key))
        else:
            raise TypeError(f"`key` must be an int or a PRNG key from `jax.random.key`, got {key!r}.")

        # Placed once, replicated; placing already-placed arrays again is free, so
        # trainers of one sweep share a single copy.
        replicated = NamedSharding(self.mesh, P())
        self._replicated = replicated
        self._member_sharding = NamedSharding(self.mesh, P(MEMBER_AXIS))
        self.keys = place(jax.random.split(root, 3), replicated)  # init, order, step
        self.data = None if batch_fn is not None or self.stream else place(data, replicated)
        self.eval_data = None if eval_data is None else place(eval_data, replicated)
        self.init_params = None if init_fn else place(init_params, replicated)
        self._seed_params_cache: Any = None

    # -- the user functions, resolved once per hyperparameter signature ----------------

    def resolve(self, hparams: Mapping[str, Any]) -> Resolved:
        """Checks the user functions on one member's shapes, without compiling anything.

        Returns what they produce (`Resolved`: whether the loss has aux, the eval
        metric names, one member's parameter and optimizer-state shapes). The answer
        depends only on the functions and the shapes, so it is computed once per
        process; every `Trainer` built from the same functions agrees.

        Raises:
          ValueError / TypeError: the hyperparameter names do not fit the functions,
            a function returns the wrong kind of thing, or fails on these shapes.
        """
        one = {k: jax.ShapeDtypeStruct((), jnp.result_type(v)) for k, v in hparams.items()}
        data = self.data if self.stream is None else self.stream.batch_shapes()
        cache_key = (self.functions, _avals((one, data, self.eval_data, self.init_params)))
        if cache_key not in _RESOLVED:
            _RESOLVED[cache_key] = self._resolve(one)
        return _RESOLVED[cache_key]

    def validate(self, hparams: Mapping[str, Any]) -> None:
        """Like `resolve`, for its errors only."""
        self.resolve(hparams)

    def _resolve(self, one: dict[str, jax.ShapeDtypeStruct]) -> Resolved:
        f = self.functions
        check_hparam_routing([*one, *f.static_hparams], f.make_optimizer, f.loss_fn, f.init_fn,
                             f.eval_fn)
        seed = jax.ShapeDtypeStruct((), jnp.int32)
        keys = self.keys
        statics: list[Any] = []

        def init_probe(hp, s, k, ip):
            params, model_state, static = self._split_init(self._init_raw(hp, s, k, ip))
            statics.append(static)
            return params, model_state

        role = "init_fn" if f.init_fn is not None else "init_params"
        params, model_state = self._call(role, lambda: jax.eval_shape(
            init_probe, one, seed, keys, self.init_params))
        static_params = statics[0]
        self._check_params(params, static_params)
        trainable = _partition(params, _is_inexact)[0]
        optimizer_out = []

        def make(hp, p):
            optimizer = self._optimizer(hp)
            optimizer_out.append(optimizer)
            if not isinstance(optimizer, optax.GradientTransformation):
                return None
            return optimizer.init(p)

        opt_state = self._call("make_optimizer", lambda: jax.eval_shape(make, one, trainable))
        _check_optimizer(optimizer_out[0])

        if f.batch_fn is not None:
            def batch_probe(key, step):
                batch = f.batch_fn(key, step)
                for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
                    if not isinstance(leaf, jax.Array):
                        raise TypeError(
                            f"`batch_fn` must return a pytree of JAX arrays, got leaf "
                            f"{_path(path, 'batch')} of type {type(leaf).__name__}; build the "
                            "batch with `jnp` (NumPy arrays cannot be indexed by the traced "
                            "`step`: wrap them in `jnp.asarray` once, outside `batch_fn`).")
                return batch

            batch = self._call("batch_fn", lambda: jax.eval_shape(
                batch_probe, jax.ShapeDtypeStruct(keys.shape[1:], keys.dtype),
                jax.ShapeDtypeStruct((), jnp.int32)))
        elif self.stream is not None:
            batch = self.stream.batch_shapes()
        else:
            batch = jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct((f.batch_size,) + np.shape(a)[1:],
                                               jnp.result_type(a)), self.data)
        returned = []

        def loss_probe(p, ms, b, hp, k):
            out = self._loss_raw(_combine(p, static_params), ms, b, hp, k)
            returned.append(out)
            return out if isinstance(out, tuple | jax.Array) else jnp.zeros(())

        self._call("loss_fn", lambda: jax.eval_shape(loss_probe, params, model_state, batch, one,
                                                     keys[2]))
        out = returned[0]
        has_aux = isinstance(out, tuple)
        if has_aux and len(out) != 2:
            raise ValueError(
                f"`loss_fn` must return a scalar loss or a pair (loss, aux), got a tuple of "
                f"{len(out)} values."
            )
        loss = out[0] if has_aux else out
        if (not isinstance(loss, jax.Array) or loss.shape != ()
                or not jnp.issubdtype(loss.dtype, jnp.floating)):
            shown = (f"shape {loss.shape}, dtype {loss.dtype}" if isinstance(loss, jax.Array)
                     else f"a {type(loss).__name__} ({loss!r})")
            raise ValueError(
                f"`loss_fn` must return a scalar floating-point loss (a JAX array computed "
                f"from `params`), got {shown}; reduce it with e.g. `jnp.mean`."
            )
        metrics = out[1] if has_aux and isinstance(out[1], Mapping) else None
        if self._takes_model_state:
            aux = out[1] if has_aux else None
            if not (isinstance(aux, tuple) and len(aux) == 2):
                raise ValueError(
                    "`loss_fn` takes `model_state`, so it must return `(loss, (new_model_state, "
                    "metrics))` (metrics: a dict of scalars, or None), got "
                    + ("a scalar loss alone" if not has_aux else f"aux {type(aux).__name__}")
                    + ".")
            _check_same_tree("model_state", model_state, aux[0])
            metrics = aux[1]
            if metrics is not None and not isinstance(metrics, Mapping):
                raise TypeError(
                    "`loss_fn` returned `(loss, (new_model_state, metrics))` with metrics a "
                    f"{type(metrics).__name__}; return a dict of scalars, or None.")
        aux_names = _metric_names("loss_fn", metrics or {}, "(loss, aux)")
        eval_names: tuple[str, ...] = ()
        if f.eval_fn is not None:
            eval_names = self._resolve_eval(params, model_state, static_params, one)
        elif self.eval_data is not None:
            self._call("loss_fn on eval_data", lambda: jax.eval_shape(
                lambda p, ms, d, hp, k: self._loss_raw(_combine(p, static_params), ms, d, hp, k),
                params, model_state, self.eval_data, one, keys[2]))
            eval_names = ("eval_loss",)
        clash = sorted(set(aux_names) & {"train_loss", *eval_names})
        if clash:
            raise ValueError(
                f"`loss_fn` returns the training metric {clash[0]!r}, which is also the name of "
                f"{'the training loss' if clash[0] == 'train_loss' else 'an eval metric'}; "
                f"rename it (e.g. 'train_{clash[0]}')."
            )
        return Resolved(has_aux, eval_names, params, opt_state, model_state, aux_names,
                        static_params)

    def _resolve_eval(self, params: Any, model_state: Any, static_params: Any,
                      one: dict) -> tuple[str, ...]:
        order: list[str] = []  # the user's key order; pytrees sort dict keys
        raw: list[Any] = []

        def probe(p, ms, d, hp):
            out = self._eval_raw(_combine(p, static_params), ms, d, hp, jnp.zeros((), jnp.int32))
            raw.append(out)
            if isinstance(out, Mapping):
                order.extend(out)
                return {k: v for k, v in out.items() if isinstance(v, jax.Array)}
            return out if isinstance(out, jax.Array) else jnp.zeros(())

        self._call("eval_fn", lambda: jax.eval_shape(probe, params, model_state, self.eval_data,
                                                     one))
        out = raw[0]
        if isinstance(out, Mapping):
            _metric_names("eval_fn", out, "eval_fn(...)")
            return tuple(order)
        _metric_names("eval_fn", {"": out}, "eval_fn(...)")
        name = getattr(self.functions.eval_fn, "__name__", "")
        return (name if name.isidentifier() and name != "<lambda>" else "eval",)

    @staticmethod
    def _call(role: str, thunk: Callable) -> Any:
        """Runs an abstract evaluation, naming the user function that failed."""
        try:
            return thunk()
        except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError) as err:
            raise ValueError(f"`{role}` failed while tracing: {err}{_loss_hint(err)}") from err
        except (TypeError, ValueError, IndexError, KeyError) as err:
            if "`" in str(err)[:80] and any(r in str(err)[:80] for r in (
                    "make_optimizer", "loss_fn", "eval_fn", "init_fn", "init_params",
                    "batch_fn", "model_state")):
                raise
            shape = _dynamic_shape_hint(err)
            if shape is not None:
                raise TypeError(f"`{role}` failed on the shapes of one member: {shape}") from None
            try:
                named = type(err)(f"`{role}` failed on the shapes of one member: {err}")
            except Exception:  # JAX's own errors take other arguments
                raise err from None
            raise named from err

    @staticmethod
    def _check_params(params: Any, static_params: Any) -> None:
        """Refuses leaves that cannot be trained or carried; needs one float array."""
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        for path, leaf in leaves:
            where = _path(path, "params")
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) or (
                    not jnp.issubdtype(leaf.dtype, jnp.inexact)
                    and "rngs" in jax.tree_util.keystr(path).lower()):
                raise TypeError(
                    f"parameter leaf {where} ({leaf.dtype}) is random-number-generator state "
                    "stored in the model: the optimizer cannot train it and carrying it "
                    "unchanged would replay the same random numbers at every step. Split it off "
                    "(`graphdef, params, rest = nnx.split(model, nnx.Param, ...)` and pass "
                    "`params`), and give `loss_fn` a `key` parameter for dropout (e.g. "
                    "`model(x, rngs=nnx.Rngs(dropout=key))`); or return it as `model_state` "
                    "so that `loss_fn` advances it."
                )
        if not any(jnp.issubdtype(leaf.dtype, jnp.inexact) for _, leaf in leaves):
            shown = jax.tree_util.tree_map(lambda a: None if a is None else a.dtype, params)
            raise TypeError(
                "the initial parameters hold no floating-point arrays to train (got "
                f"{shown!r:.200}, non-array leaves {static_params!r:.100}); return a pytree of "
                "float arrays, e.g. {'w': ..., 'b': ...}."
            )

    # -- building blocks, traced per member -------------------------------------------

    @property
    def _takes_model_state(self) -> bool:
        return "model_state" in _signature(self.functions.loss_fn, "loss_fn", 2).names

    def _optimizer(self, hparams: Mapping[str, Any]) -> optax.GradientTransformation:
        f = self.functions
        values = {**hparams, **f.static_hparams}
        return f.make_optimizer(**_select(values, _signature(f.make_optimizer, "", 0), True))

    def _loss_raw(self, params, model_state, batch, hparams, step_key):
        """`loss_fn` called with the hyperparameters (key, model state) its signature names."""
        f = self.functions
        signature = _signature(f.loss_fn, "loss_fn", 2)
        kwargs = _select({**hparams, **f.static_hparams}, signature, False)
        if "key" in signature.names:
            kwargs["key"] = step_key
        if "model_state" in signature.names:
            # A fresh copy of the tree, made in this trace: Flax NNX refuses to update
            # a variable created under another trace (the scan's, not the gradient's).
            kwargs["model_state"] = jax.tree_util.tree_map(lambda x: x, model_state)
        return f.loss_fn(params, batch, **kwargs)

    def _loss_parts(self, resolved: Resolved, params, model_state, batch, hparams, step_key):
        """`(loss, new_model_state, metrics)` from one call of `loss_fn`."""
        out = self._loss_raw(params, model_state, batch, hparams, step_key)
        if not resolved.has_aux:
            return out, model_state, {}
        loss, aux = out
        if self._takes_model_state:
            model_state, aux = aux
        metrics = {k: jnp.asarray(aux[k], jnp.float32) for k in resolved.aux_names}
        return loss, model_state, metrics

    def _eval_raw(self, params, model_state, eval_data, hparams, step):
        f = self.functions
        signature = _signature(f.eval_fn, "eval_fn", 2)
        kwargs = _select({**hparams, **f.static_hparams}, signature, False)
        if "model_state" in signature.names:
            kwargs["model_state"] = model_state
        if "step" in signature.names:  # never a hyperparameter: a column of the results
            kwargs["step"] = step
        return f.eval_fn(params, eval_data, **kwargs)

    def _init_raw(self, hparams, seed, keys, init_params):
        """What the user gave: `init_fn(key, ...)`'s output, or the initial parameters."""
        f = self.functions
        if f.init_fn is not None:
            values = {**hparams, **f.static_hparams}
            key = jax.random.fold_in(keys[0], seed)
            return f.init_fn(key, **_select(values, _signature(f.init_fn, "init_fn", 1), True))
        return _combine(init_params, self._init_static)

    def _split_init(self, raw: Any) -> tuple[Any, Any, Any]:
        """`(array parameters, model state, non-array parameter leaves)` of an init output."""
        role = "init_fn" if self.functions.init_fn is not None else "init_params"
        model_state = None
        if self._takes_model_state:
            if not (isinstance(raw, tuple | list) and len(raw) == 2):
                raise TypeError(
                    f"`loss_fn` takes `model_state`, so `{role}` must give the pair "
                    f"`(params, model_state)`, got {type(raw).__name__}.")
            raw, model_state = raw
            for path, leaf in jax.tree_util.tree_flatten_with_path(model_state)[0]:
                if not _is_array(leaf):
                    raise TypeError(
                        f"`{role}` gave model state leaf {_path(path, 'model_state')} of type "
                        f"{type(leaf).__name__}; the model state must hold arrays only (keep "
                        "other values in the parameters or in `loss_fn`).")
        _refuse_nnx_state(raw)
        params, static = _partition(raw, _is_array)
        return params, model_state, static

    def _init_member(self, hparams, seed, keys, seed_params, init_params):
        """One member's `(array parameters, model state)`."""
        if seed_params is not None:
            return jax.tree_util.tree_map(lambda a: a[seed], seed_params)
        return self._split_init(self._init_raw(hparams, seed, keys, init_params))[:2]

    def _seed_params(self, dynamic_names: Sequence[str]) -> Any:
        """Initial parameters and model state of every seed, [num_seeds, ...], or None.

        When `init_fn` takes no dynamic hyperparameter its result depends on the seed
        alone: it is computed once per seed, unbatched (a vmapped random init costs
        about twice the compile time), and members gather their seed's copy.
        """
        f = self.functions
        if f.init_fn is None:
            return None
        sig = _signature(f.init_fn, "init_fn", 1)
        if (sig.var_keyword and dynamic_names) or sig.names & set(dynamic_names):
            return None
        if self._seed_params_cache is None:
            static = _select(f.static_hparams, sig, True)

            def build():
                def init_seeds(keys):
                    trees = [self._split_init(f.init_fn(jax.random.fold_in(keys[0], s),
                                                        **static))[:2]
                             for s in range(f.num_seeds)]
                    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)
                return jax.jit(init_seeds, out_shardings=self._replicated)

            self._seed_params_cache = self._program("seed_init", build, self.keys)(self.keys)
        return self._seed_params_cache

    def init_key(self, seed: int) -> jax.Array:
        """The PRNG key `init_fn` receives for seed index `seed`."""
        return jax.random.fold_in(self.keys[0], seed)

    def minibatch_indices(self, seed: int, start: int, steps: int) -> np.ndarray:
        """Example indices [steps, batch_size] a member of `seed` uses at steps start, ...

        Each epoch is a fresh permutation of the examples, a function of (seed,
        epoch) only, so a member's batches depend on nothing but its seed and step.
        """
        if self.functions.batch_fn is not None or self.stream is not None:
            raise ValueError("this trainer's batches come from `data` as a `batch_fn` or a "
                             "stream of batches; it has no minibatch indices.")
        return np.asarray(self._batch_indices(self.keys, jnp.asarray([seed], jnp.int32),
                                              jnp.int32(start), int(steps))[0])

    def _batch_indices(self, keys: jax.Array, seeds: jax.Array, start: jax.Array,
                       steps: int) -> jax.Array:
        """Minibatch indices [len(seeds), steps, batch_size] from step `start` on."""
        batch_size = self.functions.batch_size
        per_epoch = self.num_examples // batch_size
        first_epoch = start // per_epoch
        epochs = steps // per_epoch + 2  # epochs a run of `steps` can touch

        def permutations(seed):
            key = jax.random.fold_in(keys[1], seed)
            epoch_keys = jax.vmap(lambda e: jax.random.fold_in(key, e))(
                first_epoch + jnp.arange(epochs))
            return jax.vmap(lambda k: jax.random.permutation(k, self.num_examples))(epoch_keys)

        orders = jax.vmap(permutations)(seeds)  # [seeds, epochs, examples]
        t = start + jnp.arange(steps)
        epoch = t // per_epoch - first_epoch
        columns = (t % per_epoch)[:, None] * batch_size + jnp.arange(batch_size)
        return orders[:, epoch[:, None], columns]

    def _population_indices(self, keys, population: PopulationState, start: jax.Array,
                            steps: int, aligned: bool) -> tuple[jax.Array, bool]:
        """The minibatch indices of every member, and whether they are shared.

        `aligned` (static): every member is at step `start`. Then the orders are drawn
        once per seed; with a single seed every member shares one [steps, batch_size]
        array, so the minibatch gather and the first layer's input stay unbatched
        under `vmap` (one matmul against every member's weights). Otherwise each
        member draws its own [steps, batch_size] from its own step.
        """
        num_seeds = self.functions.num_seeds
        if aligned:
            shared = self._batch_indices(keys, jnp.arange(num_seeds), start, steps)
            if num_seeds == 1:
                return shared[0], True
            return shared[population.seed], False
        indices = jax.vmap(lambda s, t: self._batch_indices(keys, s[None], t, steps)[0])(
            population.seed, population.step)
        return indices, False

    def _batch(self, data, keys, member: PopulationState, indices: jax.Array):
        """The member's minibatch: `batch_fn(key, step)`, or `data` at `indices`.

        For in-memory data `indices` are example indices [batch_size]; for a stream,
        `data` is a chunk of batches [length, batch_size, ...] and `indices` the
        position of the member's step in it.
        """
        batch_fn = self.functions.batch_fn
        if batch_fn is not None:
            key = jax.random.fold_in(jax.random.fold_in(keys[1], member.seed), member.step)
            return batch_fn(key, member.step)
        return jax.tree_util.tree_map(lambda a: a[indices], data)

    def _step(self, resolved: Resolved, data, keys, member: PopulationState, indices: jax.Array):
        """One optimizer step of one member; returns the member, its loss and aux metrics.

        Only the inexact arrays of the parameters reach the gradient and the
        optimizer; integer arrays and the model state are carried beside them.
        """
        batch = self._batch(data, keys, member, indices)
        step_key = jax.random.fold_in(jax.random.fold_in(keys[2], member.seed), member.step)
        trainable, frozen = _partition(member.params, _is_inexact)

        def loss_of(trainable):
            params = _combine(trainable, frozen, resolved.static_params)
            loss, model_state, metrics = self._loss_parts(
                resolved, params, member.model_state, batch, member.hparams, step_key)
            return loss, (model_state, metrics)

        grad_fn = jax.value_and_grad(loss_of, has_aux=True)
        (loss, (model_state, metrics)), grads = grad_fn(trainable)
        optimizer = self._optimizer(member.hparams)
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
            updates, opt_state = optimizer.update(grads, member.opt_state, trainable, value=loss)
        else:
            updates, opt_state = optimizer.update(grads, member.opt_state, trainable)
        member = member._replace(
            params=_combine(optax.apply_updates(trainable, updates), frozen),
            opt_state=opt_state,
            model_state=model_state,
            step=member.step + 1,
        )
        return member, (loss.astype(jnp.float32), metrics)

    def _run_member(self, resolved: Resolved, data, keys, member: PopulationState,
                    indices: jax.Array):
        """`len(indices)` steps of one member, with divergence isolation.

        Divergence is judged once per chunk, not per step (a per-step guard costs a
        pass over the parameters and optimizer state every step, ~8% of a small
        model's throughput): the steps run unguarded, then a member whose loss went
        non-finite during the chunk, or whose parameters are non-finite at its end,
        is rolled back to its state at the start of the chunk and frozen there. A
        member is independent of the others, so a NaN never reaches them.
        """
        step = functools.partial(self._step, resolved, data, keys)
        end, (losses, metrics) = jax.lax.scan(step, member, indices)
        steps = indices.shape[0]
        bad = ~jnp.isfinite(losses)
        first_bad = jnp.argmax(bad)  # 0 when none is bad
        failed = bad.any() | ~_tree_all_finite((end.params, end.model_state))
        alive = member.alive & ~failed
        diverged_at = member.step + jnp.where(bad.any(), first_bad, steps - 1)
        counted = member.alive & (~bad.any() | (jnp.arange(steps) < first_bad))
        member = member._replace(
            params=_tree_where(alive, end.params, member.params),
            opt_state=_tree_where(alive, end.opt_state, member.opt_state),
            model_state=_tree_where(alive, end.model_state, member.model_state),
            step=end.step,
            alive=alive,
            diverged_step=jnp.where(member.alive & failed, diverged_at, member.diverged_step),
        )
        masked = {k: jnp.where(counted, v, jnp.nan) for k, v in metrics.items()}
        return member, jnp.where(counted, losses, jnp.nan), masked

    def _evaluate_member(self, resolved: Resolved, eval_data, keys, member: PopulationState):
        params = _combine(member.params, resolved.static_params)
        if self.functions.eval_fn is None:
            loss, _, _ = self._loss_parts(resolved, params, member.model_state, eval_data,
                                          member.hparams, keys[2])
            out = {"eval_loss": loss}
        else:
            out = self._eval_raw(params, member.model_state, eval_data, member.hparams,
                                 member.step)
            if not isinstance(out, Mapping):
                out = {resolved.eval_names[0]: out}
        return {k: jnp.where(member.alive, jnp.asarray(out[k], jnp.float32), jnp.nan)
                for k in resolved.eval_names}

    # -- compiled programs -----------------------------------------------------------

    def _sharded(self, fn: Callable, in_specs, out_specs) -> Callable:
        if self.num_devices == 1 or self._takes_model_state:
            # Plain `jit` over member-sharded inputs: XLA partitions the member axis
            # itself. Inside `shard_map`, values carry a manual-mesh sharding in their
            # abstract values, which `eqx.nn.State.set` compares with that of the
            # new state (a fresh array has none) and refuses.
            return fn
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)

    def _program(self, name: Any, build: Callable, *args, donate: tuple[int, ...] = ()):
        """The executable of `build()` for these argument shapes, compiled once per process."""
        key = (name, self.functions, self.num_examples,
               tuple(d.id for d in self.mesh.devices.flat), _avals(args),
               jax.config.jax_default_matmul_precision)  # traced into the program
        program = _PROGRAMS.get(key)
        if program is None:
            start = time.perf_counter()
            fn = build()
            if not hasattr(fn, "lower"):  # member-sharded outputs, whatever XLA would pick
                fn = jax.jit(fn, donate_argnums=donate, out_shardings=self._member_sharding)
            program = fn.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - start
            self.compiles += 1
            _PROGRAMS[key] = program
            if len(_PROGRAMS) > _MAX_PROGRAMS:
                _PROGRAMS.popitem(last=False)
        else:
            _PROGRAMS.move_to_end(key)
        return program

    def check_member_count(self, members: int) -> None:
        """Raises ValueError unless `members` divides evenly over the devices."""
        if members % self.num_devices:
            raise ValueError(
                f"the population has {members} members, not a multiple of the {self.num_devices} "
                "devices it is sharded over; pad it, or pass fewer `devices`."
            )

    def init(self, hparams: Mapping[str, Any], seed: Any = None) -> PopulationState:
        """Builds the initial population, every member at step 0.

        Args:
          hparams: dynamic hyperparameters, name -> array [M] (sweepable).
          seed: int array [M] of seed indices (default all 0). Members with the same
            seed share initial parameters (from `init_fn`), minibatches and keys.

        Returns:
          A `PopulationState` with M members, sharded over the trainer's devices.

        Raises:
          ValueError: a member's initial parameters or model state hold a NaN or inf
            (checked once here, naming the leaf, the member, its seed and hyperparameters).
        """
        hparams = {k: jnp.asarray(v) for k, v in hparams.items()}
        lengths = {k: v.shape for k, v in hparams.items()}
        if any(len(s) != 1 for s in lengths.values()) or len({s[0] for s in lengths.values()}) > 1:
            raise ValueError(
                f"`hparams` must map names to 1-D arrays of one common length, got shapes {lengths}."
            )
        members = next(iter(lengths.values()))[0] if lengths else None
        if seed is None:
            if members is None:
                raise ValueError("with no hyperparameters, pass `seed` to set the population size.")
            seed = np.zeros(members, np.int32)
        seed = np.asarray(seed, np.int32)
        if seed.ndim != 1 or (members is not None and seed.shape[0] != members):
            raise ValueError(f"`seed` must be an int array of shape ({members},), got {seed.shape}.")
        if seed.min() < 0 or seed.max() >= self.num_seeds:
            raise ValueError(
                f"`seed` indices must lie in [0, {self.num_seeds}) (num_seeds={self.num_seeds}), "
                f"got values in [{seed.min()}, {seed.max()}]."
            )
        self.check_member_count(seed.shape[0])
        self.resolve(hparams)
        seed_params = self._seed_params(list(hparams))

        def build():
            def init_local(hp, seeds, seed_params, init_params, keys):
                def one(h, s):
                    params, model_state = self._init_member(h, s, keys, seed_params,
                                                            init_params)
                    trainable = _partition(params, _is_inexact)[0]
                    return params, model_state, self._optimizer(h).init(trainable)

                params, model_state, opt_state = jax.vmap(one)(hp, seeds)
                n = seeds.shape[0]
                state = PopulationState(
                    params=params,
                    opt_state=opt_state,
                    model_state=model_state,
                    hparams=hp,
                    seed=seeds,
                    step=jnp.zeros(n, jnp.int32),
                    alive=jnp.ones(n, bool),
                    diverged_step=jnp.full(n, -1, jnp.int32),
                )
                return state, _non_finite_counts((params, model_state))
            return self._sharded(init_local, (P(MEMBER_AXIS), P(MEMBER_AXIS), P(), P(), P()),
                                 P(MEMBER_AXIS))

        args = (place(hparams, self._member_sharding),
                place(seed, self._member_sharding), seed_params, self.init_params,
                self.keys)
        state, non_finite = self._program("init", build, *args)(*args)
        self._refuse_non_finite_init(gather(non_finite), hparams, seed)
        return state

    def _refuse_non_finite_init(self, non_finite: Any, hparams: Mapping[str, Any],
                                seed: np.ndarray) -> None:
        """Raises ValueError at the first initial leaf of a member that holds a NaN or inf.

        Checked once per `init`, on counts computed by the init program: training from
        such a member would only report it diverged at step 0.
        """
        f = self.functions
        for path, counts in jax.tree_util.tree_flatten_with_path(non_finite)[0]:
            member = int(np.argmax(counts > 0))
            if not counts[member]:
                continue
            where = _path(path[1:], ("params", "model_state")[path[0].idx])
            values = {**{k: np.asarray(v)[member].item() for k, v in hparams.items()},
                      **f.static_hparams}
            shown = ", ".join([f"seed {seed[member]}"] + [
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in values.items()])
            given = "`init_fn` returned" if f.init_fn is not None else "`init_params` holds"
            raise ValueError(
                f"{given} {counts[member]} non-finite value(s) (NaN or inf) in {where} for "
                f"member {member} ({shown}); it would diverge at step 0. Fix how that leaf is "
                "initialized (a division by a zero fan-in, a log or sqrt of a non-positive "
                "value, a hyperparameter out of its range).")

    def abstract_state(self, hparams: Mapping[str, Any], members: int) -> PopulationState:
        """The shapes and dtypes of a population of `members` (nothing is computed)."""
        resolved = self.resolve(hparams)

        def stack(tree):
            return jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct((members, *a.shape), a.dtype), tree)

        vector = functools.partial(jax.ShapeDtypeStruct, (members,))
        return PopulationState(
            params=stack(resolved.params), opt_state=stack(resolved.opt_state),
            hparams={k: vector(jnp.result_type(v)) for k, v in hparams.items()},
            seed=vector(jnp.int32), step=vector(jnp.int32), alive=vector(jnp.bool_),
            diverged_step=vector(jnp.int32), model_state=stack(resolved.model_state),
        )

    def member_bytes(self, hparams: Mapping[str, Any]) -> int:
        """Estimated device bytes one member needs while training.

        Parameters, model state and optimizer state, held twice (the state in flight
        and the one being computed), plus gradients and updates (each the size of the
        parameters).
        """
        resolved = self.resolve(hparams)
        size = lambda tree: sum(math.prod(a.shape) * a.dtype.itemsize  # noqa: E731
                                for a in jax.tree_util.tree_leaves(tree))
        held = size(resolved.params) + size(resolved.opt_state) + size(resolved.model_state)
        return 2 * held + 2 * size(resolved.params)

    def place(self, state: PopulationState) -> PopulationState:
        """Puts a (host) population on this trainer's devices, sharded by member."""
        return place(state, self._member_sharding)

    def train(self, state: PopulationState, steps: int, *, donate: bool = False,
              aligned: bool | None = None) -> tuple[PopulationState, jax.Array]:
        """Runs `steps` optimizer steps for every member as one compiled `lax.scan`.

        Every member continues from its own step: members at different steps train
        exactly as they would alone.

        Args:
          state: the population.
          steps: static; number of steps. Each new value compiles once.
          donate: reuse `state`'s buffers for the result (then `state` must not be
            used again); keeps one population in memory instead of two.
          aligned: static; whether every member is at the same step (default: read
            from `state`, which waits for it to be computed). Aligned populations run
            a program that draws minibatches once per seed.

        Returns:
          `(state, losses)`: the advanced population and the training loss of every
          member at every step, float32 [M, steps] (NaN from the step a member
          diverged at; a diverged member keeps its state from before this call).
        """
        state, losses, _ = self.train_with_metrics(state, steps, donate=donate, aligned=aligned)
        return state, losses

    def train_with_metrics(self, state: PopulationState, steps: int, *, donate: bool = False,
                           aligned: bool | None = None, member_steps: Any = None
                           ) -> tuple[PopulationState, jax.Array, dict[str, jax.Array]]:
        """Like `train`, also returning the training metrics of `loss_fn`'s aux.

        `member_steps` is every member's step as the host knows it, -1 for a slot
        whose result does not matter (a free slot); read from `state` when not
        given. The runner passes it.

        Returns:
          `(state, losses, metrics)`: `metrics` maps each name in the dict `loss_fn`
          returns beside its loss to float32 [M, steps] (NaN where the loss is).
          Same compiled program as `train`.
        """
        steps = positive_int("steps", steps)
        resolved = self.resolve(state.hparams)
        starts = None  # the distinct steps of the members that matter, when known
        if member_steps is None and (aligned is not False or self.stream is not None):
            member_steps = gather(state.step)
        if member_steps is not None:
            member_steps = np.asarray(member_steps, np.int64)
            starts = np.unique(member_steps[member_steps >= 0])
            starts = starts if starts.size else np.zeros(1, np.int64)
        one_start = starts is not None and starts.size == 1
        aligned = aligned is not False and one_start and self.functions.batch_fn is None
        data, extra = self.data, ()
        if self.stream is not None:  # each distinct step's batches, once
            count = 1 << (starts.size - 1).bit_length()  # few shapes: powers of two
            limit = self.stream.steps_per_chunk(count)
            if steps > limit:
                return self._train_in_chunks(state, steps, limit, donate, member_steps)
            padded = np.concatenate([starts, np.repeat(starts[-1:], count - starts.size)])
            data = self.stream.window(padded, steps, self._replicated)
            if not aligned:
                offsets = np.searchsorted(starts, np.maximum(member_steps, 0)) * steps
                extra = (place(offsets.astype(np.int32), self._member_sharding),)

        def build():
            def train_local(population, data, keys, start, *offsets):
                run = functools.partial(self._run_member, resolved, data, keys)
                if self.functions.batch_fn is not None:  # the step number picks the batch
                    indices = jnp.zeros((population.step.shape[0], steps), jnp.int32)
                    return jax.vmap(run)(population, indices)
                if self.stream is not None:  # rows of the chunk of batches
                    if aligned:
                        return jax.vmap(run, in_axes=(0, None))(population, jnp.arange(steps))
                    return jax.vmap(run)(population, offsets[0][:, None] + jnp.arange(steps))
                indices, shared = self._population_indices(keys, population, start, steps,
                                                           aligned)
                return jax.vmap(run, in_axes=(0, None if shared else 0))(population, indices)

            return self._sharded(train_local, (P(MEMBER_AXIS), P(), P(), P(),
                                               *[P(MEMBER_AXIS)] * len(extra)),
                                 (P(MEMBER_AXIS), P(MEMBER_AXIS), P(MEMBER_AXIS)))

        start = int(starts[0]) if starts is not None else 0
        args = (state, data, self.keys, place(np.int32(start), self._replicated), *extra)
        program = self._program(("train", steps, donate, aligned), build, *args,
                                donate=(0,) if donate else ())
        return program(*args)

    def _train_in_chunks(self, state: PopulationState, steps: int, limit: int, donate: bool,
                         member_steps: np.ndarray
                         ) -> tuple[PopulationState, jax.Array, dict[str, jax.Array]]:
        """`steps` steps as a few equal calls of at most `limit` (a stream's chunk bound)."""
        calls = -(-steps // limit)
        size = -(-steps // calls)
        losses, metrics, done = [], [], 0
        while done < steps:
            length = min(size, steps - done)
            moved = np.where(member_steps >= 0, member_steps + done, -1)
            state, chunk_losses, chunk_metrics = self.train_with_metrics(
                state, length, donate=donate or done > 0, member_steps=moved)
            losses.append(chunk_losses)
            metrics.append(chunk_metrics)
            done += length
        return state, jnp.concatenate(losses, axis=1), {
            name: jnp.concatenate([m[name] for m in metrics], axis=1) for name in metrics[0]}

    def aux_names(self, hparams: Mapping[str, Any]) -> tuple[str, ...]:
        """Names of the training metrics `loss_fn` returns in its aux dict."""
        return self.resolve(hparams).aux_names

    def evaluate(self, state: PopulationState) -> dict[str, jax.Array]:
        """Evaluates every member on `eval_data`: name -> float32 [M] (NaN if diverged)."""
        if self.eval_data is None:
            raise ValueError("this trainer has no `eval_data`; pass it to `Trainer(...)`.")
        resolved = self.resolve(state.hparams)

        def build():
            def evaluate_local(population, eval_data, keys):
                one = functools.partial(self._evaluate_member, resolved, eval_data, keys)
                return jax.vmap(one)(population)

            return self._sharded(evaluate_local, (P(MEMBER_AXIS), P(), P()), P(MEMBER_AXIS))

        args = (state, self.eval_data, self.keys)
        return self._program("evaluate", build, *args)(*args)

    def eval_names(self, hparams: Mapping[str, Any]) -> tuple[str, ...]:
        """Names of the metrics `evaluate` returns for members with these hyperparameters."""
        return self.resolve(hparams).eval_names

    # -- population operations, on device -----------------------------------------------

    def select(self, state: PopulationState, source: Any, index: Any, mask: Any
               ) -> PopulationState:
        """Slot j becomes member `index[j]` of `source` where `mask[j]`, else stays.

        Every field moves, the seed included; an exploit that keeps the target's own
        seed (the runner's `Decision.copy`) puts the target's seeds back afterwards.

        One program per pair of population sizes: it copies members (exploit), fills
        freed slots with new members and repacks survivors, all without the
        parameters leaving the devices.
        """
        index = place(np.asarray(index, np.int32), self._member_sharding)
        mask = place(np.asarray(mask, bool), self._member_sharding)

        def build():
            def pick(old, new, index, mask):
                def leaf(a, b):
                    taken = b[index]
                    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), taken, a)
                return jax.tree_util.tree_map(leaf, old, new)
            return pick

        args = (state, source, index, mask)
        return self._program("select", build, *args)(*args)

    def take(self, source: PopulationState, index: Any) -> PopulationState:
        """A population whose slot j is member `index[j]` of `source` (any size)."""
        index = place(np.asarray(index, np.int32), self._member_sharding)

        def build():
            def take(source, index):
                return jax.tree_util.tree_map(lambda a: a[index], source)
            return jax.jit(take, out_shardings=self._member_sharding)

        return self._program("take", build, source, index)(source, index)

    def concatenate(self, states: Sequence[PopulationState]) -> PopulationState:
        """The members of several populations as one, in order."""
        states = tuple(states)
        if len(states) == 1:
            return states[0]

        def build():
            def cat(*parts):
                return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)
            return jax.jit(cat, out_shardings=self._member_sharding)

        return self._program("concatenate", build, *states)(*states)


def _check_optimizer(optimizer: Any) -> None:
    if isinstance(optimizer, optax.GradientTransformation):
        return
    if callable(optimizer) and getattr(optimizer, "__module__", "").startswith("optax"):
        name = getattr(optimizer, "__name__", "the optimizer")
        raise TypeError(
            f"`make_optimizer` returned the function optax.{name} itself, not an optimizer; "
            f"call it: `return optax.{name}(learning_rate)`."
        )
    raise TypeError(
        "`make_optimizer` must return an optax.GradientTransformation (e.g. "
        f"`optax.adam(learning_rate)`), got {type(optimizer).__name__} {optimizer!r:.80}."
    )


def default_eval_every(steps: int) -> int:
    """A chunk length that divides `steps` into about ten record points."""
    best = None
    for chunks in range(5, 21):
        if steps % chunks == 0 and (best is None or abs(chunks - 10) < abs(best - 10)):
            best = chunks
    if best is not None:
        return steps // best
    return max(1, math.ceil(steps / 10))
