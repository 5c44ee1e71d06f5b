"""Optimizer families in one compiled program: several optax optimizers declared as one.

`jt.choice(["adam", "sgd"])` over optimizers is a static dimension: one compiled program
per family, trained one after another, and members of different families never share a
slice, a bracket's ranking or a PBT exploit. `optimizer_choice` declares the families as
one *dynamic* dimension instead:

    opt = optimizer_choice({
        "adamw": lambda learning_rate, weight_decay: optax.adamw(learning_rate,
                                                                 weight_decay=weight_decay),
        "sgd": lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
    })
    space = jt.Space(optimizer=opt.dimension, learning_rate=jt.loguniform(1e-4, 1e-1),
                     weight_decay=jt.loguniform(1e-5, 1e-2))
    result = jt.sweep(loss_fn, init_fn, opt, space, ...)   # opt is the make_optimizer

`opt(**hparams)` returns ONE `GradientTransformationExtraArgs` whose state holds every
family's state (`FamilyState`) and whose update runs the member's family, chosen by its
index with `lax.switch`. Under `vmap` (a population) every family's update runs and each
member's is selected, so an update costs about the sum of the families' updates: the
price of one program, measured by `bench/families.py`.

Each factory takes the hyperparameters it needs by name; those it does not name are not
passed to it. The combined `make_optimizer`'s signature is the family index (`name`) and
the union of the factories' parameters, which is how `jt.sweep` routes hyperparameters
to it (`jaxtune.engine.contract`): a parameter any family needs without a default must be
in the space, and a space name that no function takes is refused, naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtune.space import Family

__all__ = ["FamilyState", "OptimizerChoice", "optimizer_choice"]

_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class FamilyState(NamedTuple):
    """The state of an `optimizer_choice` transformation: every family's state, in order.

    Only the member's own family's state changes at a step; the others keep what they
    held (their initial state, for a member that never trained with them).
    """

    states: tuple[Any, ...]


class _OwnDefault:
    """The default shown for a parameter that every family taking it defaults itself."""

    def __repr__(self) -> str:
        return "<each family's default>"


_OWN_DEFAULT = _OwnDefault()


def _factory_parameters(family: str, factory: Any) -> dict[str, bool]:
    """name -> whether it is required, for one family's factory; refuses what cannot be routed."""
    if not callable(factory):
        raise TypeError(f"`families[{family!r}]` must be a function of hyperparameters returning "
                        f"an optax GradientTransformation, got {type(factory).__name__}.")
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError) as error:
        raise TypeError(f"`families[{family!r}]`: cannot read its signature ({error}); wrap it "
                        "in a lambda naming the hyperparameters it takes.") from None
    out = {}
    for p in parameters:
        if p.kind not in _KINDS:
            raise TypeError(
                f"`families[{family!r}]` has the parameter {p} ({p.kind.description}); a family "
                "takes each hyperparameter by name, e.g. `lambda learning_rate, momentum: "
                "optax.sgd(learning_rate, momentum)`.")
        out[p.name] = p.default is inspect.Parameter.empty
    return out


class OptimizerChoice:
    """Several optax optimizers as one: a dynamic `dimension` and a `make_optimizer` (itself).

    Build it with `optimizer_choice`. Calling it with the hyperparameters (the family
    index under `name`, and any of the factories' parameters) returns one
    `optax.GradientTransformationExtraArgs` (see the module docstring).

    Attributes:
      name: the hyperparameter that holds the family (its index in the program).
      families: family name -> factory, in order: family `i` is index `i`.
      dimension: the `jaxtune.space.Family` over the family names, for the space.
      parameters: every factory's parameter names, in first-seen order.
    """

    def __init__(self, families: Mapping[str, Callable[..., optax.GradientTransformation]],
                 name: str = "optimizer"):
        if not isinstance(families, Mapping) or not families:
            raise TypeError("`families` must be a non-empty mapping family name -> factory, e.g. "
                            "{'sgd': lambda learning_rate: optax.sgd(learning_rate)}.")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"`name` must be a Python identifier (the hyperparameter's name), "
                             f"got {name!r}.")
        self.name = name
        self.dimension = Family(list(families))
        self.families = dict(families)
        self._takes = {f: _factory_parameters(f, factory) for f, factory in self.families.items()}
        users = [f for f, takes in self._takes.items() if name in takes]
        if users:
            raise ValueError(f"family {users[0]!r} takes a parameter `{name}`, the name of the "
                             "family hyperparameter; rename it, or pass optimizer_choice(..., "
                             "name='another_name').")
        self.parameters = tuple(dict.fromkeys(p for takes in self._takes.values() for p in takes))

    @property
    def __signature__(self) -> inspect.Signature:
        """`(*, name, <each factory parameter>)`: what `jt.sweep` routes by."""
        required = {p for takes in self._takes.values() for p, needed in takes.items() if needed}
        keyword = inspect.Parameter.KEYWORD_ONLY
        return inspect.Signature([inspect.Parameter(self.name, keyword)] + [
            inspect.Parameter(p, keyword, default=inspect.Parameter.empty if p in required
                              else _OWN_DEFAULT) for p in self.parameters])

    def index(self, value: Any) -> jax.Array:
        """The family index (int32) of a family name, an int or an integer array (traced)."""
        if isinstance(value, str):
            if value not in self.families:
                raise ValueError(f"`{self.name}`={value!r} is not a family; the families are "
                                 f"{list(self.families)}.")
            return jnp.int32(list(self.families).index(value))
        dtype = getattr(value, "dtype", None)
        if not (isinstance(value, int | np.integer) and not isinstance(value, bool)) and (
                dtype is None or not jnp.issubdtype(dtype, jnp.integer)):
            raise TypeError(f"`{self.name}` must be a family name or its integer index, got "
                            f"{type(value).__name__} {value!r:.60}.")
        if isinstance(value, int | np.integer) and not 0 <= value < len(self.families):
            raise ValueError(f"`{self.name}`={value} is not a family index; there are "
                             f"{len(self.families)} families, {list(self.families)}.")
        return jnp.asarray(value, jnp.int32)

    def __call__(self, **hparams: Any) -> optax.GradientTransformationExtraArgs:
        """One transformation running the family `hparams[name]` picks (see the class)."""
        if self.name not in hparams:
            raise TypeError(f"missing the family hyperparameter `{self.name}` (one of "
                            f"{list(self.families)}, or its index).")
        unknown = [k for k in hparams if k != self.name and k not in self.parameters]
        if unknown:
            raise TypeError(f"hyperparameter `{unknown[0]}` is taken by no family; the families "
                            f"take {', '.join(self.parameters) or 'nothing'}.")
        index = self.index(hparams[self.name])
        return _dispatch(index, [self._make(f, hparams) for f in self.families])

    def _make(self, family: str, hparams: Mapping[str, Any]) -> optax.GradientTransformationExtraArgs:
        """Family `family`'s transformation, made with the hyperparameters it names."""
        takes = self._takes[family]
        missing = [p for p, needed in takes.items() if needed and p not in hparams]
        if missing:
            raise TypeError(f"family {family!r} needs the hyperparameter `{missing[0]}`; add it "
                            "to the space (or give the factory's parameter a default).")
        made = self.families[family](**{p: hparams[p] for p in takes if p in hparams})
        if not isinstance(made, optax.GradientTransformation):
            raise TypeError(f"family {family!r} must return an optax GradientTransformation, got "
                            f"{type(made).__name__} {made!r:.60}.")
        return optax.with_extra_args_support(made)

    def __repr__(self) -> str:
        return f"optimizer_choice({list(self.families)!r}, name={self.name!r})"


def _dispatch(index: jax.Array, transforms: list) -> optax.GradientTransformationExtraArgs:
    """One transformation whose state is every transform's and whose update runs `index`'s."""

    def init(params):
        return FamilyState(tuple(t.init(params) for t in transforms))

    def update(updates, state, params=None, **extra_args):
        def branch(i):
            def run(operands):
                grads, states, params = operands
                new_updates, new_state = transforms[i].update(grads, states[i], params,
                                                              **extra_args)
                return new_updates, (*states[:i], new_state, *states[i + 1:])
            return run

        new_updates, states = jax.lax.switch(
            index, [branch(i) for i in range(len(transforms))], (updates, state.states, params))
        return new_updates, FamilyState(states)

    return optax.GradientTransformationExtraArgs(init, update)


def optimizer_choice(families: Mapping[str, Callable[..., optax.GradientTransformation]], *,
                     name: str = "optimizer") -> OptimizerChoice:
    """Several optax optimizers declared as one dynamic hyperparameter, trained in one program.

    Pass the result as `make_optimizer` (or call it from yours) and its `.dimension` in
    the space under `name`. Members of every family train in one compiled program, share
    slices, and strategies rank them together: Hyperband and median stopping compare
    members across families, and PBT's exploit may copy a member of another family (its
    whole `FamilyState` comes along, so the copy continues exactly where the source was).

    Args:
      families: static; family name -> factory, in order (family `i` is index `i`). Each
        factory takes the hyperparameters it needs by name (no `*args`/`**kwargs`) and
        returns an optax `GradientTransformation` (an `...ExtraArgs` one, such as
        `jt.reduce_on_plateau` chained in, gets the loss as `value=`).
      name: static; the hyperparameter holding the family, "optimizer" by default.

    Returns:
      An `OptimizerChoice`: callable as `make_optimizer(**hparams)`, with `.dimension`.

    Example:
      >>> import optax, jaxtune as jt
      >>> from jaxtune.families import optimizer_choice
      >>> opt = optimizer_choice({"adam": lambda learning_rate: optax.adam(learning_rate),
      ...                         "sgd": lambda learning_rate, momentum: optax.sgd(
      ...                             learning_rate, momentum=momentum)})
      >>> opt.dimension, opt.parameters
      (Family(['adam', 'sgd']), ('learning_rate', 'momentum'))
      >>> space = jt.Space(optimizer=opt.dimension, learning_rate=jt.loguniform(1e-3, 1e-1),
      ...                  momentum=jt.uniform(0.5, 0.99))
      >>> space.sample(4, seed=0).columns["optimizer"]
      array(['adam', 'adam', 'sgd', 'adam'], dtype=object)
    """
    return OptimizerChoice(families, name)
