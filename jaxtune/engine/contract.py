"""What jaxtune asks of the user's functions, and how it checks they comply.

`Trainer` takes a `loss_fn`, a `make_optimizer`, initial parameters (or an
`init_fn`) and optionally an `eval_fn`. This module reads their signatures once
(`Contract`), routes each hyperparameter to the functions that name it, calls them,
and probes them abstractly (`jax.eval_shape`, nothing compiled) on one member's
shapes to find what they return (`Returns`), refusing what jaxtune cannot train
with an error that shows the fix.

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
as `SweepResult.model_state`, passed to `eval_fn` when it names `model_state`, and
never reaches the optimizer (weight decay never touches it). For Flax NNX:
`graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)`, then
`nnx.merge(graphdef, params, model_state, copy=True)` inside `loss_fn` and
`nnx.state(model, nnx.BatchStat)` as the new state. Flax Linen:
`(variables["params"], variables["batch_stats"])` and `model.apply(...,
mutable=["batch_stats"])`. Equinox: `eqx.nn.make_with_state`.

Parameters as the libraries make them (an Equinox module, an NNX state, a Linen
variable dict): only inexact (floating, complex) arrays are trained. Integer and
bool arrays are carried unchanged, per member; leaves that are not arrays (an
Equinox module's activation function, a flag) are held once by the trainer and put
back before every call of the user's functions. Random-number-generator state in
the parameters (NNX `Rngs` inside `nnx.Dropout`) is refused with the fix: split it
off and use `loss_fn`'s `key`. `SweepResult.params` holds the arrays only (None
where a non-array leaf was): `eqx.combine` them with the model's other leaves.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtune._routing import Signature, read_signature, route
from jaxtune.engine.state import combine, is_array, is_inexact, partition, path_name

# -- error texts ---------------------------------------------------------------------

_MSG_KEY_RESERVED = (
    "hyperparameter `key` is reserved: a `loss_fn` with a `key` parameter receives the "
    "per-step PRNG key there; rename the dimension (e.g. `data_key`).")

_MSG_MODEL_STATE_RESERVED = (
    "hyperparameter `model_state` is reserved: a `loss_fn` with a `model_state` parameter "
    "receives the model's state there; rename the dimension.")

_MSG_OPTIMIZER_NEEDS = (
    "`make_optimizer` needs {missing}, which the search space does not define (space names: "
    "{names}); add {first}=jt.fixed(...) or another dimension to the space, or give the "
    "parameter a default.")

_MSG_NOT_ROUTED = (
    "hyperparameter `{name}` is not a parameter of any of {shown}; rename the dimension or "
    "add the parameter to the function that uses it.")

_MSG_POSITIONAL = "`{role}` must take {needed} positional argument{s} {shown}, got {got}."

_MSG_TRACED_NUMBER = (
    " A value that must be a Python number was given a traced hyperparameter. optax's "
    "schedules (e.g. `optax.warmup_cosine_decay_schedule`) cannot take a swept step count: "
    "use the `jt.` schedule of the same name, which takes traced arguments; or make the "
    "dimension static with `jt.choice([...], static=True)`.")

_MSG_DYNAMIC_SHAPE = (
    "{first} {which} sets a shape, but it is dynamic: a traced array, so that new values "
    "never recompile. Make the dimension static (each value then compiles its own program): "
    "`{name}=jt.choice([...], static=True)` or `jt.fixed(..., static=True)`; `jt.randint` "
    "and the other ranges are always dynamic.")

_MSG_RNG_IN_PARAMS = (
    "parameter leaf {where} ({dtype}) is random-number-generator state stored in the model: "
    "the optimizer cannot train it and carrying it unchanged would replay the same random "
    "numbers at every step. Split it off (`graphdef, params, rest = nnx.split(model, "
    "nnx.Param, ...)` and pass `params`), and give `loss_fn` a `key` parameter for dropout "
    "(e.g. `model(x, rngs=nnx.Rngs(dropout=key))`); or return it as `model_state` so that "
    "`loss_fn` advances it.")

_MSG_NNX_BATCH_STAT = (
    "parameter leaf {where} is an `nnx.BatchStat`: model state that the optimizer must not "
    "train. Split it off and give `loss_fn` a `model_state` parameter: `graphdef, params, "
    "stats = nnx.split(model, nnx.Param, nnx.BatchStat)`, `init_params=(params, stats)`, and "
    "return `(loss, (nnx.state(model, nnx.BatchStat), metrics))`.")

_MSG_NO_FLOAT_PARAMS = (
    "the initial parameters hold no floating-point arrays to train (got {shown!r:.200}, "
    "non-array leaves {static!r:.100}); return a pytree of float arrays, e.g. "
    "{{'w': ..., 'b': ...}}.")

_MSG_INIT_PAIR = (
    "`loss_fn` takes `model_state`, so `{role}` must give the pair `(params, model_state)`, "
    "got {kind}.")

_MSG_MODEL_STATE_LEAF = (
    "`{role}` gave model state leaf {where} of type {kind}; the model state must hold arrays "
    "only (keep other values in the parameters or in `loss_fn`).")

_MSG_OPTAX_FUNCTION = (
    "`make_optimizer` returned the function optax.{name} itself, not an optimizer; call it: "
    "`return optax.{name}(learning_rate)`.")

_MSG_NOT_AN_OPTIMIZER = (
    "`make_optimizer` must return an optax.GradientTransformation (e.g. "
    "`optax.adam(learning_rate)`), got {kind} {optimizer!r:.80}.")

_MSG_LOSS_TUPLE = (
    "`loss_fn` must return a scalar loss or a pair (loss, aux), got a tuple of {count} values.")

_MSG_LOSS_NOT_SCALAR = (
    "`loss_fn` must return a scalar floating-point loss (a JAX array computed from `params`), "
    "got {shown}; reduce it with e.g. `jnp.mean`.")

_MSG_MODEL_STATE_RETURN = (
    "`loss_fn` takes `model_state`, so it must return `(loss, (new_model_state, metrics))` "
    "(metrics: a dict of scalars, or None), got {got}.")

_MSG_MODEL_STATE_METRICS = (
    "`loss_fn` returned `(loss, (new_model_state, metrics))` with metrics a {kind}; return a "
    "dict of scalars, or None.")

_MSG_NEW_MODEL_STATE = (
    "`loss_fn` returned a new `{name}` whose structure differs from the initial one; return "
    "it in the same form.\n  initial: {before} {before_shapes}\n  returned: {after} "
    "{after_shapes}")

_MSG_METRIC_KEY = "`{role}` must return a dict with str keys, got key {name!r}."

_MSG_METRIC_NOT_SCALAR = (
    "`{role}` must return a scalar or a dict of scalars, got {got} for {shown}{label}; reduce "
    "it (e.g. `jnp.mean`) or drop it.")

_MSG_METRIC_CLASH = (
    "`loss_fn` returns the training metric {name!r}, which is also the name of {what}; rename "
    "it (e.g. 'train_{name}').")

_MSG_NON_FINITE_INIT = (
    "{given} {count} non-finite value(s) (NaN or inf) in {where} for member {member} "
    "({shown}); it would diverge at step 0. Fix how that leaf is initialized (a division by a "
    "zero fan-in, a log or sqrt of a non-positive value, a hyperparameter out of its range).")

_MSG_INIT_PARAMS_NONE = (
    "`init_params` is None; pass the initial parameters (a pytree of arrays) or an "
    "`init_fn(key, **hparams)` that returns them.")


# -- signatures and routing ----------------------------------------------------------


def check_positional(signature: Signature, role: str, needed: int, shown: str) -> None:
    """Raises TypeError unless the function takes `needed` positional arguments."""
    if 0 <= signature.positional < needed:
        raise TypeError(_MSG_POSITIONAL.format(role=role, needed=needed,
                                               s="s" if needed > 1 else "", shown=shown,
                                               got=signature.text))


def check_hparam_routing(names: Sequence[str], optimizer: Signature,
                         others: Sequence[Signature]) -> None:
    """Raises ValueError unless the hyperparameter names fit the user functions.

    Every name must be a parameter of at least one of the functions (`make_optimizer`
    of signature `optimizer`, and `others`), and every parameter of `make_optimizer`
    without a default must be a name.
    """
    if "key" in names:
        raise ValueError(_MSG_KEY_RESERVED)
    if "model_state" in names:
        raise ValueError(_MSG_MODEL_STATE_RESERVED)
    signatures = [optimizer, *others]
    missing = [n for n in optimizer.required if n not in names]
    if missing:
        raise ValueError(_MSG_OPTIMIZER_NEEDS.format(
            missing=", ".join(map(repr, missing)), names=", ".join(names) or "none",
            first=missing[0]))
    for name in names:
        if not any(name in s.names for s in signatures) and not optimizer.var_keyword:
            raise ValueError(_MSG_NOT_ROUTED.format(
                name=name, shown=", ".join(s.text for s in signatures)))


def is_init_function(init_params: Any) -> bool:
    """True for an `init_fn(key, ...)`, False for a pytree of parameters.

    A callable pytree that holds arrays (an equinox module, say) is parameters.
    """
    if not callable(init_params):
        return False
    return not any(isinstance(leaf, (jax.Array, np.ndarray))
                   for leaf in jax.tree_util.tree_leaves(init_params))


# -- where an error came from ----------------------------------------------------------

_ROLE = "_jaxtune_role"  # set on an exception raised inside a user function


def user_call(role: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, marking what it raises as coming from the user's `role`."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:
        if not hasattr(error, _ROLE):
            try:
                setattr(error, _ROLE, role)
            except AttributeError:  # an exception type without a __dict__
                pass
        raise


def call(role: str, thunk: Callable) -> Any:
    """Runs an abstract evaluation, naming the user function that failed in its error.

    An error raised inside one of the user's functions is re-raised with `role`
    named (and a fix where one is known); jaxtune's own checks raise as they are.
    """
    try:
        return thunk()
    except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError) as err:
        raise ValueError(f"`{role}` failed while tracing: {err}{_MSG_TRACED_NUMBER}") from err
    except (TypeError, ValueError, IndexError, KeyError) as err:
        if not hasattr(err, _ROLE):
            raise
        shape = _dynamic_shape_hint(err)
        if shape is not None:
            raise TypeError(f"`{role}` failed on the shapes of one member: {shape}") from None
        try:
            named = type(err)(f"`{role}` failed on the shapes of one member: {err}")
        except Exception:  # JAX's own errors take other arguments
            raise err from None
        raise named from err


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
    return _MSG_DYNAMIC_SHAPE.format(first=text.splitlines()[0], which=which, name=name)


# -- the user's functions, called ---------------------------------------------------------


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a static hyperparameter value (lists become tuples)."""
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


class Contract:
    """The user's functions, their signatures (read once) and the static settings.

    `key` identifies everything a compiled program's code depends on here: two
    trainers built from the same functions share their compiled programs.
    """

    def __init__(self, loss_fn: Callable, make_optimizer: Callable, init_fn: Callable | None,
                 eval_fn: Callable | None, static_hparams: Mapping[str, Any], num_seeds: int,
                 init_rest: Any = None):
        self.loss_fn = loss_fn
        self.make_optimizer = make_optimizer
        self.init_fn = init_fn
        self.eval_fn = eval_fn
        self.static_hparams = dict(static_hparams)
        self.num_seeds = num_seeds
        self.init_rest = init_rest  # the non-array leaves of `init_params` (arrays None)
        self.loss_signature = read_signature(loss_fn, "loss_fn", 2)
        self.optimizer_signature = read_signature(make_optimizer, "make_optimizer", 0)
        self.init_signature = None if init_fn is None else read_signature(init_fn, "init_fn", 1)
        self.eval_signature = None if eval_fn is None else read_signature(eval_fn, "eval_fn", 2)
        self.takes_model_state = "model_state" in self.loss_signature.names
        self.init_role = "init_fn" if init_fn is not None else "init_params"
        rest_leaves, rest_def = jax.tree_util.tree_flatten(init_rest)
        self.key: Hashable = (
            loss_fn, make_optimizer, init_fn, eval_fn,
            tuple(sorted((k, _freeze(v)) for k, v in self.static_hparams.items())), num_seeds,
            (rest_def, tuple(_freeze(x) for x in rest_leaves)))

    def optimizer(self, hparams: Mapping[str, Any]) -> optax.GradientTransformation:
        """`make_optimizer` called with the hyperparameters it takes."""
        values = {**hparams, **self.static_hparams}
        return user_call("make_optimizer", self.make_optimizer,
                         **route(values, self.optimizer_signature, True))

    def loss(self, params, model_state, batch, hparams, step_key):
        """`loss_fn` called with the hyperparameters (key, model state) its signature names."""
        kwargs = route({**hparams, **self.static_hparams}, self.loss_signature, False)
        if "key" in self.loss_signature.names:
            kwargs["key"] = step_key
        if self.takes_model_state:
            # A fresh copy of the tree, made in this trace: Flax NNX refuses to update
            # a variable created under another trace (the scan's, not the gradient's).
            kwargs["model_state"] = jax.tree_util.tree_map(lambda x: x, model_state)
        return user_call("loss_fn", self.loss_fn, params, batch, **kwargs)

    def loss_parts(self, returns: Returns, params, model_state, batch, hparams, step_key):
        """`(loss, new_model_state, metrics)` from one call of `loss_fn`."""
        out = self.loss(params, model_state, batch, hparams, step_key)
        if not returns.has_aux:
            return out, model_state, {}
        loss, aux = out
        if self.takes_model_state:
            model_state, aux = aux
        metrics = {k: jnp.asarray(aux[k], jnp.float32) for k in returns.aux_names}
        return loss, model_state, metrics

    def evaluate(self, params, model_state, eval_data, hparams, step):
        """`eval_fn` called with the hyperparameters (model state, step) it names."""
        signature = self.eval_signature
        kwargs = route({**hparams, **self.static_hparams}, signature, False)
        if "model_state" in signature.names:
            kwargs["model_state"] = model_state
        if "step" in signature.names:  # never a hyperparameter: a column of the results
            kwargs["step"] = step
        return user_call("eval_fn", self.eval_fn, params, eval_data, **kwargs)

    def init(self, hparams, seed, keys, init_params):
        """What the user gave: `init_fn(key, ...)`'s output, or the initial parameters."""
        if self.init_fn is None:
            return combine(init_params, self.init_rest)
        values = {**hparams, **self.static_hparams}
        key = jax.random.fold_in(keys[0], seed)
        return user_call("init_fn", self.init_fn, key,
                         **route(values, self.init_signature, True))

    def split_init(self, raw: Any) -> tuple[Any, Any, Any]:
        """`(array parameters, model state, non-array parameter leaves)` of an init output."""
        model_state = None
        if self.takes_model_state:
            if not (isinstance(raw, tuple | list) and len(raw) == 2):
                raise TypeError(_MSG_INIT_PAIR.format(role=self.init_role,
                                                      kind=type(raw).__name__))
            raw, model_state = raw
            for path, leaf in jax.tree_util.tree_flatten_with_path(model_state)[0]:
                if not is_array(leaf):
                    raise TypeError(_MSG_MODEL_STATE_LEAF.format(
                        role=self.init_role, where=path_name(path, "model_state"),
                        kind=type(leaf).__name__))
        _refuse_nnx_state(raw)
        params, static = partition(raw, is_array)
        return params, model_state, static

    def init_member(self, hparams, seed, keys, seed_params, init_params):
        """One member's `(array parameters, model state)`."""
        if seed_params is not None:
            return jax.tree_util.tree_map(lambda a: a[seed], seed_params)
        return self.split_init(self.init(hparams, seed, keys, init_params))[:2]

    def init_per_seed(self, dynamic_names: Sequence[str]) -> bool:
        """Whether `init_fn`'s result depends on the seed alone (no dynamic hyperparameter)."""
        signature = self.init_signature
        if signature is None:
            return False
        return not ((signature.var_keyword and dynamic_names)
                    or signature.names & set(dynamic_names))

    def seed_init(self, key: jax.Array) -> Any:
        """`init_fn(key)` with the static hyperparameters only: `(params, model state)`."""
        static = route(self.static_hparams, self.init_signature, True)
        return self.split_init(user_call("init_fn", self.init_fn, key, **static))[:2]


# -- what the user's functions return, probed on one member's shapes ------------------


class Returns(NamedTuple):
    """What the user's functions return for one member, found once per hyperparameter set."""

    has_aux: bool  # loss_fn returns (loss, aux)
    eval_names: tuple[str, ...]  # names of the evaluated metrics, in the user's order
    params: Any  # ShapeDtypeStruct tree of one member's array parameters (others None)
    opt_state: Any  # ShapeDtypeStruct tree of one member's optimizer state
    model_state: Any  # ShapeDtypeStruct tree of one member's model state, None if unused
    aux_names: tuple[str, ...]  # the scalar training metrics `loss_fn` returns in its aux
    static_params: Any  # the parameters' non-array leaves (arrays None), same for all members


def probe(contract: Contract, one: dict[str, jax.ShapeDtypeStruct], keys: jax.Array,
          init_params: Any, batch: Callable[[], Any], eval_data: Any) -> Returns:
    """Checks the user's functions on one member's shapes, without compiling anything.

    Args:
      contract: the user's functions.
      one: one member's dynamic hyperparameters, as shapes.
      keys: the trainer's keys [3] (init, order, step).
      init_params: the array leaves of the initial parameters, or None with an `init_fn`.
      batch: () -> one batch's shapes (may call the user's `batch_fn`).
      eval_data: the evaluation data, or None.

    Raises:
      ValueError / TypeError: the hyperparameter names do not fit the functions,
        a function returns the wrong kind of thing, or fails on these shapes.
    """
    c = contract
    check_hparam_routing([*one, *c.static_hparams], c.optimizer_signature, [
        s for s in (c.loss_signature, c.init_signature, c.eval_signature) if s is not None])
    params, model_state, static_params = _probe_init(c, one, keys, init_params)
    opt_state = _probe_optimizer(c, one, params)
    shapes = call("batch_fn", batch)
    out = []

    def loss_probe(p, ms, b, hp, k):
        out.append(c.loss(combine(p, static_params), ms, b, hp, k))
        return out[0] if isinstance(out[0], tuple | jax.Array) else jnp.zeros(())

    call("loss_fn", lambda: jax.eval_shape(loss_probe, params, model_state, shapes, one,
                                           keys[2]))
    has_aux, aux_names = _check_loss_output(c, out[0], model_state)
    eval_names: tuple[str, ...] = ()
    if c.eval_fn is not None:
        eval_names = _probe_eval(c, params, model_state, static_params, one, eval_data)
    elif eval_data is not None:
        call("loss_fn on eval_data", lambda: jax.eval_shape(
            lambda p, ms, d, hp, k: c.loss(combine(p, static_params), ms, d, hp, k),
            params, model_state, eval_data, one, keys[2]))
        eval_names = ("eval_loss",)
    clash = sorted(set(aux_names) & {"train_loss", *eval_names})
    if clash:
        what = "the training loss" if clash[0] == "train_loss" else "an eval metric"
        raise ValueError(_MSG_METRIC_CLASH.format(name=clash[0], what=what))
    return Returns(has_aux, eval_names, params, opt_state, model_state, aux_names,
                   static_params)


def _probe_init(c: Contract, one: dict, keys: jax.Array, init_params: Any
                ) -> tuple[Any, Any, Any]:
    """One member's `(parameters, model state)` shapes and the non-array leaves."""
    statics: list[Any] = []

    def init_probe(hp, s, k, ip):
        params, model_state, static = c.split_init(c.init(hp, s, k, ip))
        statics.append(static)
        return params, model_state

    seed = jax.ShapeDtypeStruct((), jnp.int32)
    params, model_state = call(c.init_role, lambda: jax.eval_shape(
        init_probe, one, seed, keys, init_params))
    check_params(params, statics[0])
    return params, model_state, statics[0]


def _probe_optimizer(c: Contract, one: dict, params: Any) -> Any:
    """One member's optimizer state shapes; refuses what is not an optax optimizer."""
    trainable = partition(params, is_inexact)[0]
    made = []

    def make(hp, p):
        made.append(c.optimizer(hp))
        if not isinstance(made[0], optax.GradientTransformation):
            return None
        return user_call("make_optimizer", made[0].init, p)

    opt_state = call("make_optimizer", lambda: jax.eval_shape(make, one, trainable))
    check_optimizer(made[0])
    return opt_state


def _check_loss_output(c: Contract, out: Any, model_state: Any) -> tuple[bool, tuple[str, ...]]:
    """`(has_aux, aux_names)` of what `loss_fn` returned; refuses what cannot be trained."""
    has_aux = isinstance(out, tuple)
    if has_aux and len(out) != 2:
        raise ValueError(_MSG_LOSS_TUPLE.format(count=len(out)))
    loss = out[0] if has_aux else out
    if (not isinstance(loss, jax.Array) or loss.shape != ()
            or not jnp.issubdtype(loss.dtype, jnp.floating)):
        shown = (f"shape {loss.shape}, dtype {loss.dtype}" if isinstance(loss, jax.Array)
                 else f"a {type(loss).__name__} ({loss!r})")
        raise ValueError(_MSG_LOSS_NOT_SCALAR.format(shown=shown))
    metrics = out[1] if has_aux and isinstance(out[1], Mapping) else None
    if c.takes_model_state:
        aux = out[1] if has_aux else None
        if not (isinstance(aux, tuple) and len(aux) == 2):
            got = "a scalar loss alone" if not has_aux else f"aux {type(aux).__name__}"
            raise ValueError(_MSG_MODEL_STATE_RETURN.format(got=got))
        _check_same_tree("model_state", model_state, aux[0])
        metrics = aux[1]
        if metrics is not None and not isinstance(metrics, Mapping):
            raise TypeError(_MSG_MODEL_STATE_METRICS.format(kind=type(metrics).__name__))
    return has_aux, _metric_names("loss_fn", metrics or {}, "(loss, aux)")


def _probe_eval(c: Contract, params: Any, model_state: Any, static_params: Any, one: dict,
                eval_data: Any) -> tuple[str, ...]:
    """The names of the metrics `eval_fn` returns, in the user's order."""
    order: list[str] = []  # the user's key order; pytrees sort dict keys
    raw: list[Any] = []

    def eval_probe(p, ms, d, hp):
        out = c.evaluate(combine(p, static_params), ms, d, hp, jnp.zeros((), jnp.int32))
        raw.append(out)
        if isinstance(out, Mapping):
            order.extend(out)
            return {k: v for k, v in out.items() if isinstance(v, jax.Array)}
        return out if isinstance(out, jax.Array) else jnp.zeros(())

    call("eval_fn", lambda: jax.eval_shape(eval_probe, params, model_state, eval_data, one))
    if isinstance(raw[0], Mapping):
        _metric_names("eval_fn", raw[0], "eval_fn(...)")
        return tuple(order)
    _metric_names("eval_fn", {"": raw[0]}, "eval_fn(...)")
    name = getattr(c.eval_fn, "__name__", "")
    return (name if name.isidentifier() and name != "<lambda>" else "eval",)


# -- checks of what the user's functions give ------------------------------------------


def _metric_names(role: str, metrics: Mapping, shown: str) -> tuple[str, ...]:
    """The names of a dict of scalar metrics; raises TypeError naming a bad entry.

    The key "" stands for a single scalar (an `eval_fn` that returns one value).
    """
    for name, value in metrics.items():
        if not isinstance(name, str) or (name == "" and len(metrics) > 1):
            raise TypeError(_MSG_METRIC_KEY.format(role=role, name=name))
        if not isinstance(value, jax.Array | float | int) or np.shape(value) != ():
            got = (f"shape {value.shape}" if isinstance(value, jax.Array)
                   else f"a {type(value).__name__} {value!r:.60}")
            raise TypeError(_MSG_METRIC_NOT_SCALAR.format(
                role=role, got=got, shown=shown, label=f"[{name!r}]" if name else ""))
    return tuple(metrics)


def _check_same_tree(name: str, before: Any, after: Any) -> None:
    """Raises TypeError unless `after` has `before`'s structure, shapes and dtypes."""
    def shapes(tree):
        return [(np.shape(x), jnp.result_type(x)) for x in jax.tree_util.tree_leaves(tree)]

    structure = jax.tree_util.tree_structure
    if structure(before) != structure(after) or shapes(before) != shapes(after):
        raise TypeError(_MSG_NEW_MODEL_STATE.format(
            name=name, before=structure(before), before_shapes=shapes(before),
            after=structure(after), after_shapes=shapes(after)))


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
            raise TypeError(_MSG_NNX_BATCH_STAT.format(where=path_name(path, "params")))


def check_params(params: Any, static_params: Any) -> None:
    """Refuses leaves that cannot be trained or carried; needs one float array."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in leaves:
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) or (
                not jnp.issubdtype(leaf.dtype, jnp.inexact)
                and "rngs" in jax.tree_util.keystr(path).lower()):
            raise TypeError(_MSG_RNG_IN_PARAMS.format(where=path_name(path, "params"),
                                                      dtype=leaf.dtype))
    if not any(jnp.issubdtype(leaf.dtype, jnp.inexact) for _, leaf in leaves):
        shown = jax.tree_util.tree_map(lambda a: None if a is None else a.dtype, params)
        raise TypeError(_MSG_NO_FLOAT_PARAMS.format(shown=shown, static=static_params))


def check_optimizer(optimizer: Any) -> None:
    """Raises TypeError unless `make_optimizer` gave an optax optimizer."""
    if isinstance(optimizer, optax.GradientTransformation):
        return
    if callable(optimizer) and getattr(optimizer, "__module__", "").startswith("optax"):
        raise TypeError(_MSG_OPTAX_FUNCTION.format(
            name=getattr(optimizer, "__name__", "the optimizer")))
    raise TypeError(_MSG_NOT_AN_OPTIMIZER.format(kind=type(optimizer).__name__,
                                                 optimizer=optimizer))


def refuse_non_finite_init(contract: Contract, non_finite: Any, hparams: Mapping[str, Any],
                           seed: np.ndarray) -> None:
    """Raises ValueError at the first initial leaf of a member that holds a NaN or inf.

    Checked once per `init`, on counts computed by the init program: training from
    such a member would only report it diverged at step 0.
    """
    for path, counts in jax.tree_util.tree_flatten_with_path(non_finite)[0]:
        member = int(np.argmax(counts > 0))
        if not counts[member]:
            continue
        values = {**{k: np.asarray(v)[member].item() for k, v in hparams.items()},
                  **contract.static_hparams}
        shown = ", ".join([f"seed {seed[member]}"] + [
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in values.items()])
        given = "`init_fn` returned" if contract.init_fn is not None else "`init_params` holds"
        raise ValueError(_MSG_NON_FINITE_INIT.format(
            given=given, count=counts[member], member=member, shown=shown,
            where=path_name(path[1:], ("params", "model_state")[path[0].idx])))


def check_functions(loss_fn: Callable, make_optimizer: Callable, init_params: Any,
                    eval_fn: Callable | None, eval_data: Any) -> Callable | None:
    """Checks the kinds and arities of the user's functions; returns the `init_fn`, if any."""
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    if not callable(make_optimizer):
        raise TypeError(
            f"`make_optimizer` must be callable (hyperparameters -> optax "
            f"GradientTransformation), got {type(make_optimizer).__name__}.")
    check_positional(read_signature(loss_fn, "loss_fn", 2), "loss_fn", 2, "(params, batch)")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"`eval_fn` must be callable, got {type(eval_fn).__name__}.")
    if eval_fn is not None and eval_data is None:
        raise ValueError("`eval_fn` was given without `eval_data`; pass `eval_data=`.")
    if eval_fn is not None:
        check_positional(read_signature(eval_fn, "eval_fn", 2), "eval_fn", 2,
                         "(params, eval_data)")
    init_fn = init_params if is_init_function(init_params) else None
    if init_fn is not None:
        check_positional(read_signature(init_fn, "init_fn", 1), "init_fn", 1, "(key)")
    elif init_params is None:
        raise TypeError(_MSG_INIT_PARAMS_NONE)
    return init_fn
