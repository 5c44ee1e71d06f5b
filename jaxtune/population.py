"""The population trainer: many configurations x seeds in one compiled program.

A population is a pytree whose every leaf has a leading *member* axis. Each member
is one configuration (a row of dynamic hyperparameters) trained from one seed.
`Trainer` turns a loss function and an optimizer factory into three compiled
programs over a population:

  * `init(hparams, seed)`: parameters (shared, or `init_fn(key)` per seed) and
    optimizer state, built from each member's own hyperparameters;
  * `train(state, steps)`: `steps` optimizer steps as one `lax.scan`, vmapped over
    the members and sharded over devices (`shard_map` over a 1-D mesh);
  * `evaluate(state)`: `eval_fn` on the validation data for every member.

The optimizer is built *inside* the traced step, `make_optimizer(**hparams)`, so
every hyperparameter is an array and new values never recompile. Members with the
same seed draw the same minibatches (without replacement within an epoch) and the
same per-step keys, so configurations are compared on equal data. A member whose
loss or parameters become non-finite during a `train` call is rolled back to its
state at the start of that call (its last record point), frozen there and
flagged with the step it diverged at; nothing spreads to the other members.

Routing: each hyperparameter is passed, by keyword, to every one of
`make_optimizer`, `loss_fn(params, batch, ...)`, `init_fn(key, ...)` and
`eval_fn(params, data, ...)` whose signature names it (or that takes `**kwargs`;
`loss_fn` and `eval_fn` only by name). A `loss_fn` with a `key` parameter gets a
PRNG key per step (e.g. for dropout).
"""

from __future__ import annotations

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
    text: str  # how to show it in an error


def _signature(fn: Callable, role: str, positional: int) -> _Signature:
    """Reads `fn`'s keyword parameters after its first `positional` ones."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and some C callables
        return _Signature(frozenset(), True, (), f"{role}(...)")
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    leading = [p for p in parameters if p.kind != inspect.Parameter.KEYWORD_ONLY][:positional]
    rest = [p for p in parameters if p not in leading and p.kind in kinds]
    var_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
    required = tuple(p.name for p in rest if p.default is inspect.Parameter.empty)
    shown = ", ".join(p.name for p in parameters)
    return _Signature(frozenset(p.name for p in rest), var_keyword, required, f"{role}({shown})")


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


def _leading_length(name: str, tree: Any) -> int:
    """The common leading dimension of every leaf of `tree`."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValueError(f"`{name}` holds no arrays; pass e.g. `{name}=(x, y)`.")
    lengths = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(
                f"`{name}` leaf {jax.tree_util.keystr(path) or name} is a scalar; every array in "
                f"`{name}` needs a leading example axis."
            )
        lengths[jax.tree_util.keystr(path) or name] = shape[0]
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise ValueError(
            f"every array in `{name}` must have the same number of examples (leading axis), "
            f"got {shown}."
        )
    return next(iter(lengths.values()))


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
        self.num_examples = _leading_length("data", data)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"`batch_size` must be an int, got {type(batch_size).__name__}.")
        if not 1 <= batch_size <= self.num_examples:
            raise ValueError(
                f"`batch_size` must lie in [1, {self.num_examples}] (the number of examples in "
                f"`data`), got batch_size={batch_size}."
            )
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"`eval_fn` must be callable, got {type(eval_fn).__name__}.")
        if eval_fn is not None and eval_data is None:
            raise ValueError("`eval_fn` was given without `eval_data`; pass `eval_data=`.")
        if eval_data is not None:
            _leading_length("eval_data", eval_data)

        self.loss_fn = loss_fn
        self.make_optimizer = make_optimizer
        self.init_fn = init_params if is_init_function(init_params) else None
        self.init_params = None if self.init_fn else init_params
        self.batch_size = int(batch_size)
        self.eval_fn = eval_fn
        self.static_hparams = dict(static_hparams or {})
        self.mesh = member_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self.compile_seconds = 0.0
        self.compiles = 0

        self._optimizer_sig = _signature(make_optimizer, "make_optimizer", 0)
        self._loss_sig = _signature(loss_fn, "loss_fn", 2)
        self._init_sig = _signature(self.init_fn, "init_fn", 1) if self.init_fn else None
        self._eval_sig = _signature(eval_fn, "eval_fn", 2) if eval_fn else None
        self._loss_takes_key = "key" in self._loss_sig.names
        self._has_aux: bool | None = None
        self._eval_names: tuple[str, ...] = ()

        if isinstance(num_seeds, bool) or not isinstance(num_seeds, (int, np.integer)) or num_seeds < 1:
            raise ValueError(f"`num_seeds` must be a positive int, got num_seeds={num_seeds!r}.")
        self.num_seeds = int(num_seeds)
        if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            root = key
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            root = jax.random.key(int(key))
        else:
            raise TypeError(f"`key` must be an int or a PRNG key from `jax.random.key`, got {key!r}.")
        self._keys = jax.random.split(root, 3)  # init, data order, per-step keys

        # Placed once, replicated; placing already-placed arrays again is free, so
        # trainers of one sweep share a single copy.
        replicated = NamedSharding(self.mesh, P())
        self.data = jax.device_put(data, replicated)
        self.eval_data = None if eval_data is None else jax.device_put(eval_data, replicated)
        self._member_sharding = NamedSharding(self.mesh, P(MEMBER_AXIS))
        self._compiled: dict[Any, Any] = {}
        self._validated: set[tuple] = set()
        self._cached_seed_params: Any = None

    # -- building blocks, traced per member -------------------------------------------

    def _optimizer(self, hparams: Mapping[str, Any]) -> optax.GradientTransformation:
        values = {**hparams, **self.static_hparams}
        return self.make_optimizer(**_select(values, self._optimizer_sig, True))

    def _loss_raw(self, params, batch, hparams, step_key):
        """`loss_fn` called with the hyperparameters (and key) its signature names."""
        values = {**hparams, **self.static_hparams}
        kwargs = _select(values, self._loss_sig, False)
        if self._loss_takes_key:
            kwargs["key"] = step_key
        return self.loss_fn(params, batch, **kwargs)

    def _loss(self, params, batch, hparams, step_key):
        out = self._loss_raw(params, batch, hparams, step_key)
        return out if self._has_aux else (out, None)

    def _eval_raw(self, params, eval_data, hparams):
        values = {**hparams, **self.static_hparams}
        return self.eval_fn(params, eval_data, **_select(values, self._eval_sig, False))

    def _init_member(self, hparams, seed, seed_params=None):
        if seed_params is not None:
            params = jax.tree_util.tree_map(lambda a: a[seed], seed_params)
        elif self.init_fn is not None:
            values = {**hparams, **self.static_hparams}
            key = jax.random.fold_in(self._keys[0], seed)
            params = self.init_fn(key, **_select(values, self._init_sig, True))
        else:
            params = self.init_params
        opt_state = self._optimizer(hparams).init(params)
        return params, opt_state

    def _seed_params(self, dynamic_names: Sequence[str]) -> Any:
        """Initial parameters of every seed, [num_seeds, ...], or None.

        When `init_fn` takes no dynamic hyperparameter its result depends on the seed
        alone: it is computed once per seed, unbatched (a vmapped random init costs
        about twice the compile time), and members gather their seed's copy.
        """
        if self.init_fn is None:
            return None
        sig = self._init_sig
        if (sig.var_keyword and dynamic_names) or sig.names & set(dynamic_names):
            return None
        if self._cached_seed_params is None:
            static = _select(self.static_hparams, sig, True)
            init_one = jax.jit(lambda key: self.init_fn(key, **static))
            start = time.perf_counter()
            trees = [init_one(jax.random.fold_in(self._keys[0], s)) for s in range(self.num_seeds)]
            stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)
            self._cached_seed_params = jax.device_put(stacked, NamedSharding(self.mesh, P()))
            self.compile_seconds += time.perf_counter() - start
            self.compiles += 1
        return self._cached_seed_params

    def _batch_indices(self, start: jax.Array, steps: int) -> jax.Array:
        """Minibatch indices [num_seeds, steps, batch_size] for steps start, start+1, ...

        Each epoch is a fresh permutation of the examples, a function of (seed, epoch)
        only, so a member's batches do not depend on chunking or on other members.
        """
        per_epoch = self.num_examples // self.batch_size
        first_epoch = start // per_epoch
        epochs = steps // per_epoch + 2  # epochs a run of `steps` can touch
        seed_keys = jax.vmap(lambda s: jax.random.fold_in(self._keys[1], s))(
            jnp.arange(self.num_seeds)
        )

        def permutations(key):
            epoch_keys = jax.vmap(lambda e: jax.random.fold_in(key, e))(first_epoch + jnp.arange(epochs))
            return jax.vmap(lambda k: jax.random.permutation(k, self.num_examples))(epoch_keys)

        orders = jax.vmap(permutations)(seed_keys)  # [seeds, epochs, examples]
        t = start + jnp.arange(steps)
        epoch = t // per_epoch - first_epoch
        columns = (t % per_epoch)[:, None] * self.batch_size + jnp.arange(self.batch_size)
        return orders[:, epoch[:, None], columns]

    def _step(self, data: Any, member: PopulationState, indices: jax.Array):
        """One optimizer step of one member; returns the member and its loss."""
        batch = jax.tree_util.tree_map(lambda a: a[indices], data)
        step_key = jax.random.fold_in(jax.random.fold_in(self._keys[2], member.seed), member.step)
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
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

    def _run_member(self, data: Any, member: PopulationState, indices: jax.Array):
        """`len(indices)` steps of one member, with divergence isolation.

        Divergence is judged once per chunk, not per step (a per-step guard costs a
        pass over the parameters and optimizer state every step, ~8% of a small
        model's throughput): the steps run unguarded, then a member whose loss went
        non-finite during the chunk, or whose parameters are non-finite at its end,
        is rolled back to its state at the start of the chunk and frozen there. A
        member is independent of the others, so a NaN never reaches them.
        """
        end, losses = jax.lax.scan(functools.partial(self._step, data), member, indices)
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

    def _evaluate_member(self, eval_data: Any, member: PopulationState):
        if self.eval_fn is None:
            loss, _ = self._loss(member.params, eval_data, member.hparams, self._keys[2])
            out = {"eval_loss": loss}
        else:
            out = self._eval_raw(member.params, eval_data, member.hparams)
            if not isinstance(out, Mapping):
                out = {self._eval_names[0]: out}
        return {k: jnp.where(member.alive, jnp.asarray(v, jnp.float32), jnp.nan) for k, v in out.items()}

    # -- compiled programs -----------------------------------------------------------

    def _sharded(self, fn: Callable, in_specs, out_specs) -> Callable:
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)

    def _program(self, name: str, build: Callable, *args):
        """Compiles `build()` for the shapes of `args` once; returns the executable."""
        signature = (name,) + tuple(
            (np.shape(x), str(jnp.result_type(x))) for x in jax.tree_util.tree_leaves(args)
        )
        if signature not in self._compiled:
            start = time.perf_counter()
            self._compiled[signature] = jax.jit(build()).lower(*args).compile()
            self.compile_seconds += time.perf_counter() - start
            self.compiles += 1
        return self._compiled[signature]

    def _check_member_count(self, members: int) -> None:
        if members % self.num_devices:
            raise ValueError(
                f"the population has {members} members, not a multiple of the {self.num_devices} "
                "devices it is sharded over; pad it, or pass fewer `devices`."
            )

    def validate(self, hparams: Mapping[str, Any]) -> None:
        """Checks the user functions on one member's shapes, without compiling anything.

        Raises ValueError if the hyperparameter names do not fit the functions, the
        loss is not a scalar, or `eval_fn` does not return scalars. `hparams` maps
        names to arrays whose dtype (not values) is used; each set of names and
        dtypes is checked once.
        """
        signature = tuple(sorted((k, str(jnp.asarray(v).dtype)) for k, v in hparams.items()))
        if signature in self._validated:
            return
        check_hparam_routing(
            [*hparams, *self.static_hparams], self.make_optimizer, self.loss_fn, self.init_fn,
            self.eval_fn,
        )
        one = {k: jax.ShapeDtypeStruct((), jnp.asarray(v).dtype) for k, v in hparams.items()}
        params, _ = jax.eval_shape(self._init_member, one, jax.ShapeDtypeStruct((), jnp.int32))
        batch = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct((self.batch_size,) + np.shape(a)[1:], jnp.result_type(a)),
            self.data,
        )
        key = jax.eval_shape(lambda: self._keys[2])
        out = jax.eval_shape(self._loss_raw, params, batch, one, key)
        self._has_aux = isinstance(out, tuple)
        if self._has_aux and len(out) != 2:
            raise ValueError(
                f"`loss_fn` must return a scalar loss or a pair (loss, aux), got a tuple of "
                f"{len(out)} values."
            )
        loss = out[0] if self._has_aux else out
        if not hasattr(loss, "shape") or loss.shape != () or not jnp.issubdtype(loss.dtype, jnp.floating):
            shown = getattr(loss, "shape", type(loss).__name__)
            raise ValueError(
                f"`loss_fn` must return a scalar floating-point loss, got shape {shown}; "
                "reduce it, e.g. with `jnp.mean`."
            )
        if self.eval_fn is not None:
            order: list[str] = []  # the user's key order; pytrees sort dict keys

            def probe(p, d, hp):
                out = self._eval_raw(p, d, hp)
                order.extend(out if isinstance(out, Mapping) else ())
                return out

            out = jax.eval_shape(probe, params, self.eval_data, one)
            leaves = out.values() if isinstance(out, Mapping) else [out]
            if any(getattr(v, "shape", None) != () for v in leaves):
                raise ValueError(
                    "`eval_fn` must return a scalar or a dict of scalars, got "
                    f"{jax.tree_util.tree_map(lambda v: v.shape, out)}."
                )
            if not isinstance(out, Mapping):
                name = getattr(self.eval_fn, "__name__", "")
                self._eval_names = (name if name.isidentifier() else "eval",)
            else:
                self._eval_names = tuple(order)
        elif self.eval_data is not None:
            self._eval_names = ("eval_loss",)
        self._validated.add(signature)

    def init(self, hparams: Mapping[str, Any], seed: Any = None) -> PopulationState:
        """Builds the initial population.

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
        members = seed.shape[0]
        self._check_member_count(members)
        self.validate(hparams)

        seed_params = self._seed_params(list(hparams))

        def build():
            def init_local(hp, seeds, seed_params):
                params, opt_state = jax.vmap(self._init_member, (0, 0, None))(hp, seeds, seed_params)
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
            return self._sharded(init_local, (P(MEMBER_AXIS), P(MEMBER_AXIS), P()), P(MEMBER_AXIS))

        hparams = jax.device_put(hparams, self._member_sharding)
        seed = jax.device_put(seed, self._member_sharding)
        args = (hparams, seed, seed_params)
        return self._program("init", build, *args)(*args)

    def train(self, state: PopulationState, steps: int) -> tuple[PopulationState, jax.Array]:
        """Runs `steps` optimizer steps for every member as one compiled `lax.scan`.

        Args:
          state: the population (all members at the same step, as `init` leaves them).
          steps: static; number of steps. Each new value compiles once.

        Returns:
          `(state, losses)`: the advanced population and the training loss of every
          member at every step, float32 [M, steps] (NaN from the step a member
          diverged at; a diverged member keeps its state from before this call).
        """
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"`steps` must be a positive int, got steps={steps!r}.")
        steps = int(steps)

        def build():
            def train_local(population, data):
                indices = self._batch_indices(population.step[0], steps)

                def member_run(member):
                    return self._run_member(data, member, indices[member.seed])

                return jax.vmap(member_run)(population)

            return self._sharded(
                train_local, (P(MEMBER_AXIS), P()), (P(MEMBER_AXIS), P(MEMBER_AXIS))
            )

        return self._program(("train", steps), build, state, self.data)(state, self.data)

    def evaluate(self, state: PopulationState) -> dict[str, jax.Array]:
        """Evaluates every member on `eval_data`: name -> float32 [M] (NaN if diverged)."""
        if self.eval_data is None:
            raise ValueError("this trainer has no `eval_data`; pass it to `Trainer(...)`.")

        def build():
            def evaluate_local(population, eval_data):
                return jax.vmap(functools.partial(self._evaluate_member, eval_data))(population)

            return self._sharded(evaluate_local, (P(MEMBER_AXIS), P()), P(MEMBER_AXIS))

        return self._program("evaluate", build, state, self.eval_data)(state, self.eval_data)

    @property
    def eval_names(self) -> tuple[str, ...]:
        """Names of the metrics `evaluate` returns (known after `init`)."""
        return self._eval_names


def default_eval_every(steps: int) -> int:
    """A chunk length that divides `steps` into about ten record points."""
    best = None
    for chunks in range(5, 21):
        if steps % chunks == 0 and (best is None or abs(chunks - 10) < abs(best - 10)):
            best = chunks
    if best is not None:
        return steps // best
    return max(1, math.ceil(steps / 10))
