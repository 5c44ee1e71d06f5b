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
PRNG key per step (e.g. for dropout); `key` is therefore never a hyperparameter.
"""

from __future__ import annotations

import collections
import functools
import inspect
import math
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


class PopulationState(NamedTuple):
    """Every member's training state; each leaf has a leading member axis [M]."""

    params: Any  # model parameters, each leaf [M, ...]
    opt_state: Any  # optimizer state built from the member's hyperparameters
    hparams: dict[str, jax.Array]  # dynamic hyperparameters, each [M] float32/int32
    seed: jax.Array  # int32 [M]: seed index; picks the init, minibatch order and keys
    step: jax.Array  # int32 [M]: training steps run so far (frozen members count too)
    alive: jax.Array  # bool [M]: False once the member diverged (frozen since)
    diverged_step: jax.Array  # int32 [M]: first step with a non-finite loss, -1 if none


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


def _tree_where(condition: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)


def _path(path: Any, name: str) -> str:
    return f"{name}{jax.tree_util.keystr(path)}"


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
    """Raises ValueError naming the first floating leaf of `tree` holding a NaN or inf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(leaf)
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise ValueError(
                f"`{name}` leaf {_path(path, name)} holds {bad} non-finite value(s) (NaN or "
                f"inf); clean the {name} first (e.g. `np.nan_to_num`, or drop those rows): "
                "every member would diverge on them."
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
    batch_size: int
    num_seeds: int

    @property
    def static_hparams(self) -> dict[str, Any]:
        return dict(self.static)


class Resolved(NamedTuple):
    """What the user functions return, found once per hyperparameter signature."""

    has_aux: bool  # loss_fn returns (loss, aux)
    eval_names: tuple[str, ...]  # names of the evaluated metrics, in the user's order
    params: Any  # ShapeDtypeStruct tree of one member's parameters
    opt_state: Any  # ShapeDtypeStruct tree of one member's optimizer state


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
        scalar loss; `batch` has the structure of `data` with `batch_size` examples.
      make_optimizer: `make_optimizer(**hparams) -> optax.GradientTransformation`,
        called inside the traced step with each member's hyperparameters as arrays.
      data: a pytree of arrays (e.g. `(x, y)`), each with the same leading length.
      batch_size: static; examples per step, at most the number of examples.
      init_params: a pytree of initial parameters shared by every member, or a
        function `init_fn(key, **hparams) -> params` called once per seed.
      eval_fn: `eval_fn(params, eval_data, **hparams)` returning a scalar or a dict of
        scalars. Defaults to `loss_fn` on the whole of `eval_data` ("eval_loss").
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
        batch_size: int,
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
        self.num_examples = leading_length("data", data)
        batch_size = positive_int("batch_size", batch_size)
        if batch_size > self.num_examples:
            raise ValueError(
                f"`batch_size` must lie in [1, {self.num_examples}] (the number of examples in "
                f"`data`), got batch_size={batch_size}."
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

        self.functions = _Functions(
            loss_fn, make_optimizer, init_fn, eval_fn,
            tuple(sorted((k, _freeze(v)) for k, v in static.items())), batch_size, num_seeds,
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
        self.keys = jax.device_put(jax.random.split(root, 3), replicated)  # init, order, step
        self.data = jax.device_put(data, replicated)
        self.eval_data = None if eval_data is None else jax.device_put(eval_data, replicated)
        self.init_params = None if init_fn else jax.device_put(init_params, replicated)
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
        cache_key = (self.functions, _avals((one, self.data, self.eval_data, self.init_params)))
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
        params = self._call("init_fn", lambda: jax.eval_shape(
            lambda hp, s, k, ip: self._init_params(hp, s, k, None, ip), one, seed, keys,
            self.init_params))
        self._check_params(params)
        optimizer_out = []

        def make(hp, p):
            optimizer = self._optimizer(hp)
            optimizer_out.append(optimizer)
            if not isinstance(optimizer, optax.GradientTransformation):
                return None
            return optimizer.init(p)

        opt_state = self._call("make_optimizer", lambda: jax.eval_shape(make, one, params))
        _check_optimizer(optimizer_out[0])

        batch = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct((f.batch_size,) + np.shape(a)[1:], jnp.result_type(a)),
            self.data,
        )
        returned = []

        def loss_probe(p, b, hp, k):
            out = self._loss_raw(p, b, hp, k)
            returned.append(out)
            return out if isinstance(out, tuple | jax.Array) else jnp.zeros(())

        out = self._call("loss_fn", lambda: jax.eval_shape(loss_probe, params, batch, one,
                                                           keys[2]))
        has_aux = isinstance(returned[0], tuple)
        if has_aux and len(out) != 2:
            raise ValueError(
                f"`loss_fn` must return a scalar loss or a pair (loss, aux), got a tuple of "
                f"{len(out)} values."
            )
        loss = returned[0][0] if has_aux else returned[0]
        if (not isinstance(loss, jax.Array) or loss.shape != ()
                or not jnp.issubdtype(loss.dtype, jnp.floating)):
            shown = (f"shape {loss.shape}, dtype {loss.dtype}" if isinstance(loss, jax.Array)
                     else f"a {type(loss).__name__} ({loss!r})")
            raise ValueError(
                f"`loss_fn` must return a scalar floating-point loss (a JAX array computed "
                f"from `params`), got {shown}; reduce it with e.g. `jnp.mean`."
            )
        eval_names: tuple[str, ...] = ()
        if f.eval_fn is not None:
            eval_names = self._resolve_eval(params, one)
        elif self.eval_data is not None:
            loss_on_eval = self._call("loss_fn on eval_data", lambda: jax.eval_shape(
                lambda p, d, hp, k: self._loss_raw(p, d, hp, k), params, self.eval_data, one,
                keys[2]))
            del loss_on_eval
            eval_names = ("eval_loss",)
        return Resolved(has_aux, eval_names, params, opt_state)

    def _resolve_eval(self, params: Any, one: dict) -> tuple[str, ...]:
        order: list[str] = []  # the user's key order; pytrees sort dict keys
        raw: list[Any] = []

        def probe(p, d, hp):
            out = self._eval_raw(p, d, hp)
            raw.append(out)
            if isinstance(out, Mapping):
                order.extend(out)
                return {k: v for k, v in out.items() if isinstance(v, jax.Array)}
            return out if isinstance(out, jax.Array) else jnp.zeros(())

        self._call("eval_fn", lambda: jax.eval_shape(probe, params, self.eval_data, one))
        out = raw[0]
        values = out.items() if isinstance(out, Mapping) else [("", out)]
        for name, value in values:
            if not isinstance(name, str) or (isinstance(out, Mapping) and not name):
                raise TypeError(f"`eval_fn` must return a dict with str keys, got key {name!r}.")
            if not isinstance(value, jax.Array | float | int) or np.shape(value) != ():
                shown = (f"shape {value.shape}" if isinstance(value, jax.Array)
                         else f"a {type(value).__name__} {value!r}")
                label = f"[{name!r}]" if name else ""
                raise TypeError(
                    f"`eval_fn` must return a scalar or a dict of scalars, got {shown} for "
                    f"eval_fn(...){label}; reduce it (e.g. `jnp.mean`) or drop it."
                )
        if isinstance(out, Mapping):
            return tuple(order)
        name = getattr(f := self.functions.eval_fn, "__name__", "")
        del f
        return (name if name.isidentifier() and name != "<lambda>" else "eval",)

    @staticmethod
    def _call(role: str, thunk: Callable) -> Any:
        """Runs an abstract evaluation, naming the user function that failed."""
        try:
            return thunk()
        except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError) as err:
            raise ValueError(f"`{role}` failed while tracing: {err}{_loss_hint(err)}") from err
        except (TypeError, ValueError, IndexError, KeyError) as err:
            if "`" in str(err)[:80] and any(r in str(err)[:80] for r in
                                           ("make_optimizer", "loss_fn", "eval_fn", "init_fn")):
                raise
            raise type(err)(f"`{role}` failed on the shapes of one member: {err}") from err

    @staticmethod
    def _check_params(params: Any) -> None:
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        if params is None or not leaves:
            raise TypeError(
                "the initial parameters hold no arrays (`init_fn` returned "
                f"{params!r}); return a pytree of float arrays, e.g. {{'w': ..., 'b': ...}}."
            )
        for path, leaf in leaves:
            if not jnp.issubdtype(leaf.dtype, jnp.inexact):
                raise TypeError(
                    f"initial parameter {_path(path, 'params')} has dtype {leaf.dtype}; the "
                    "optimizer trains floating-point arrays only: cast it (e.g. "
                    "`jnp.zeros(shape, jnp.float32)`, not `jnp.zeros(shape, int)`)."
                )

    # -- building blocks, traced per member -------------------------------------------

    def _optimizer(self, hparams: Mapping[str, Any]) -> optax.GradientTransformation:
        f = self.functions
        values = {**hparams, **f.static_hparams}
        return f.make_optimizer(**_select(values, _signature(f.make_optimizer, "", 0), True))

    def _loss_raw(self, params, batch, hparams, step_key):
        """`loss_fn` called with the hyperparameters (and key) its signature names."""
        f = self.functions
        signature = _signature(f.loss_fn, "loss_fn", 2)
        kwargs = _select({**hparams, **f.static_hparams}, signature, False)
        if "key" in signature.names:
            kwargs["key"] = step_key
        return f.loss_fn(params, batch, **kwargs)

    def _loss(self, has_aux, params, batch, hparams, step_key):
        out = self._loss_raw(params, batch, hparams, step_key)
        return out if has_aux else (out, None)

    def _eval_raw(self, params, eval_data, hparams):
        f = self.functions
        kwargs = _select({**hparams, **f.static_hparams}, _signature(f.eval_fn, "eval_fn", 2),
                         False)
        return f.eval_fn(params, eval_data, **kwargs)

    def _init_params(self, hparams, seed, keys, seed_params, init_params):
        f = self.functions
        if seed_params is not None:
            return jax.tree_util.tree_map(lambda a: a[seed], seed_params)
        if f.init_fn is not None:
            values = {**hparams, **f.static_hparams}
            key = jax.random.fold_in(keys[0], seed)
            return f.init_fn(key, **_select(values, _signature(f.init_fn, "init_fn", 1), True))
        return init_params

    def _seed_params(self, dynamic_names: Sequence[str]) -> Any:
        """Initial parameters of every seed, [num_seeds, ...], or None.

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
                    trees = [f.init_fn(jax.random.fold_in(keys[0], s), **static)
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

    def _population_indices(self, keys, population: PopulationState, steps: int) -> jax.Array:
        """Each member's minibatch indices [M, steps, batch_size], from its own step.

        When every member is at the same step (a plain sweep, always) the orders are
        drawn once per seed and shared; otherwise once per member.
        """
        step = population.step

        def per_seed(_):
            shared = self._batch_indices(keys, jnp.arange(self.functions.num_seeds), step[0],
                                         steps)
            return shared[population.seed]

        def per_member(_):
            return jax.vmap(lambda s, t: self._batch_indices(keys, s[None], t, steps)[0])(
                population.seed, step)

        return jax.lax.cond(jnp.all(step == step[0]), per_seed, per_member, None)

    def _step(self, has_aux, data, keys, member: PopulationState, indices: jax.Array):
        """One optimizer step of one member; returns the member and its loss."""
        batch = jax.tree_util.tree_map(lambda a: a[indices], data)
        step_key = jax.random.fold_in(jax.random.fold_in(keys[2], member.seed), member.step)
        grad_fn = jax.value_and_grad(functools.partial(self._loss, has_aux), has_aux=True)
        (loss, _), grads = grad_fn(member.params, batch, member.hparams, step_key)
        optimizer = self._optimizer(member.hparams)
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
            updates, opt_state = optimizer.update(grads, member.opt_state, member.params, value=loss)
        else:
            updates, opt_state = optimizer.update(grads, member.opt_state, member.params)
        member = member._replace(
            params=optax.apply_updates(member.params, updates),
            opt_state=opt_state,
            step=member.step + 1,
        )
        return member, loss.astype(jnp.float32)

    def _run_member(self, has_aux, data, keys, member: PopulationState, indices: jax.Array):
        """`len(indices)` steps of one member, with divergence isolation.

        Divergence is judged once per chunk, not per step (a per-step guard costs a
        pass over the parameters and optimizer state every step, ~8% of a small
        model's throughput): the steps run unguarded, then a member whose loss went
        non-finite during the chunk, or whose parameters are non-finite at its end,
        is rolled back to its state at the start of the chunk and frozen there. A
        member is independent of the others, so a NaN never reaches them.
        """
        step = functools.partial(self._step, has_aux, data, keys)
        end, losses = jax.lax.scan(step, member, indices)
        steps = indices.shape[0]
        bad = ~jnp.isfinite(losses)
        first_bad = jnp.argmax(bad)  # 0 when none is bad
        failed = bad.any() | ~_tree_all_finite(end.params)
        alive = member.alive & ~failed
        diverged_at = member.step + jnp.where(bad.any(), first_bad, steps - 1)
        counted = member.alive & (~bad.any() | (jnp.arange(steps) < first_bad))
        member = member._replace(
            params=_tree_where(alive, end.params, member.params),
            opt_state=_tree_where(alive, end.opt_state, member.opt_state),
            step=end.step,
            alive=alive,
            diverged_step=jnp.where(member.alive & failed, diverged_at, member.diverged_step),
        )
        return member, jnp.where(counted, losses, jnp.nan)

    def _evaluate_member(self, resolved: Resolved, eval_data, keys, member: PopulationState):
        if self.functions.eval_fn is None:
            loss, _ = self._loss(resolved.has_aux, member.params, eval_data, member.hparams,
                                 keys[2])
            out = {"eval_loss": loss}
        else:
            out = self._eval_raw(member.params, eval_data, member.hparams)
            if not isinstance(out, Mapping):
                out = {resolved.eval_names[0]: out}
        return {k: jnp.where(member.alive, jnp.asarray(out[k], jnp.float32), jnp.nan)
                for k in resolved.eval_names}

    # -- compiled programs -----------------------------------------------------------

    def _sharded(self, fn: Callable, in_specs, out_specs) -> Callable:
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)

    def _program(self, name: Any, build: Callable, *args, donate: tuple[int, ...] = ()):
        """The executable of `build()` for these argument shapes, compiled once per process."""
        key = (name, self.functions, self.num_examples,
               tuple(d.id for d in self.mesh.devices.flat), _avals(args))
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
                    params = self._init_params(h, s, keys, seed_params, init_params)
                    return params, self._optimizer(h).init(params)

                params, opt_state = jax.vmap(one)(hp, seeds)
                n = seeds.shape[0]
                return PopulationState(
                    params=params,
                    opt_state=opt_state,
                    hparams=hp,
                    seed=seeds,
                    step=jnp.zeros(n, jnp.int32),
                    alive=jnp.ones(n, bool),
                    diverged_step=jnp.full(n, -1, jnp.int32),
                )
            return self._sharded(init_local, (P(MEMBER_AXIS), P(MEMBER_AXIS), P(), P(), P()),
                                 P(MEMBER_AXIS))

        args = (jax.device_put(hparams, self._member_sharding),
                jax.device_put(seed, self._member_sharding), seed_params, self.init_params,
                self.keys)
        return self._program("init", build, *args)(*args)

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
            diverged_step=vector(jnp.int32),
        )

    def member_bytes(self, hparams: Mapping[str, Any]) -> int:
        """Estimated device bytes one member needs while training.

        Parameters and optimizer state, held twice (the state in flight and the one
        being computed), plus gradients and updates (each the size of the parameters).
        """
        resolved = self.resolve(hparams)
        size = lambda tree: sum(math.prod(a.shape) * a.dtype.itemsize  # noqa: E731
                                for a in jax.tree_util.tree_leaves(tree))
        return 2 * (size(resolved.params) + size(resolved.opt_state)) + 2 * size(resolved.params)

    def place(self, state: PopulationState) -> PopulationState:
        """Puts a (host) population on this trainer's devices, sharded by member."""
        return jax.device_put(state, self._member_sharding)

    def train(self, state: PopulationState, steps: int, *, donate: bool = False
              ) -> tuple[PopulationState, jax.Array]:
        """Runs `steps` optimizer steps for every member as one compiled `lax.scan`.

        Every member continues from its own step: members at different steps train
        exactly as they would alone.

        Args:
          state: the population.
          steps: static; number of steps. Each new value compiles once.
          donate: reuse `state`'s buffers for the result (then `state` must not be
            used again); keeps one population in memory instead of two.

        Returns:
          `(state, losses)`: the advanced population and the training loss of every
          member at every step, float32 [M, steps] (NaN from the step a member
          diverged at; a diverged member keeps its state from before this call).
        """
        steps = positive_int("steps", steps)
        resolved = self.resolve(state.hparams)

        def build():
            def train_local(population, data, keys):
                indices = self._population_indices(keys, population, steps)
                run = functools.partial(self._run_member, resolved.has_aux, data, keys)
                return jax.vmap(run)(population, indices)

            return self._sharded(
                train_local, (P(MEMBER_AXIS), P(), P()), (P(MEMBER_AXIS), P(MEMBER_AXIS))
            )

        args = (state, self.data, self.keys)
        program = self._program(("train", steps, donate), build, *args,
                                donate=(0,) if donate else ())
        return program(*args)

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

        One program per pair of population sizes: it copies members (exploit), fills
        freed slots with new members and repacks survivors, all without the
        parameters leaving the devices.
        """
        index = jax.device_put(np.asarray(index, np.int32), self._member_sharding)
        mask = jax.device_put(np.asarray(mask, bool), self._member_sharding)

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
        index = jax.device_put(np.asarray(index, np.int32), self._member_sharding)

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
