"""The compiled programs of a population: built, sharded over the devices, cached.

Programs are cached for the life of the process, keyed on the user functions
(`Contract.key`), the static hyperparameters, the data source (`BatchSource.key`),
the shapes, dtypes and shardings of their arguments and the chunk length: a second
`Trainer` (or a second `sweep`) built from the same functions compiles nothing.
Data, keys and shared initial parameters are arguments of the programs, never
constants baked into them.

Members are split over a 1-D mesh of devices (`shard_map`); each device runs its
members vmapped. How a chunk of steps runs is decided in one place, `run_chunk`.
"""

from __future__ import annotations

import collections
import functools
import math
import time
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxtune.devices import MEMBER_AXIS
from jaxtune.engine.contract import Contract, Returns
from jaxtune.engine.sources import BatchSource
from jaxtune.engine.state import PopulationState, non_finite_counts
from jaxtune.engine.step import evaluate_member, init_member, member_step, rollback

# The programs' names, as XLA (and `jax.log_compiles`) reports them.
INIT_SEEDS = "init_seeds"  # every seed's initial parameters, once per seed
INIT = "init_local"  # a population at step 0
TRAIN = "train_local"  # a chunk of steps of every member
EVALUATE = "evaluate_local"  # every member's eval metrics
SELECT = "pick"  # slots replaced by members of another population
TAKE = "take"  # a population of chosen members
CONCATENATE = "cat"  # several populations as one
PROGRAMS = (INIT_SEEDS, INIT, TRAIN, EVALUATE, SELECT, TAKE, CONCATENATE)

# Compiled programs for the life of the process, least recently used dropped first.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 256
_RETURNS: dict[Any, Returns] = {}  # what the user functions return, per signature


def _named(name: str, fn: Callable) -> Callable:
    """`fn`, named `name` for XLA's reports."""
    fn.__name__ = fn.__qualname__ = name
    return fn


def avals(args: Any) -> tuple:
    """What a program compiled for `args` depends on: structure, shapes, dtypes, shardings."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (treedef, tuple((np.shape(x), str(jnp.result_type(x)), getattr(x, "sharding", None),
                            getattr(x, "weak_type", False)) for x in leaves))


def cached_returns(key: Hashable, compute: Callable[[], Returns]) -> Returns:
    """`compute()`, once per process for each `key`."""
    if key not in _RETURNS:
        _RETURNS[key] = compute()
    return _RETURNS[key]


class Compiler:
    """Compiles a trainer's programs for its mesh, sharing them through the process cache.

    Attributes:
      mesh, replicated, by_member: the devices, and the shardings of an argument held
        whole on each / split by member.
      compiles, compile_seconds: programs compiled (cache misses) and the seconds spent.
    """

    def __init__(self, mesh: Mesh, key: Hashable):
        self.mesh = mesh
        self.num_devices = mesh.devices.size
        self.replicated = NamedSharding(mesh, P())
        self.by_member = NamedSharding(mesh, P(MEMBER_AXIS))
        self.key = key  # what every program of this trainer depends on
        self.compiles = 0
        self.compile_seconds = 0.0

    def sharded(self, fn: Callable, in_specs: Any, out_specs: Any, manual: bool = True
                ) -> Callable:
        """`fn` over the members of every device: `shard_map`, or plain `jit` when not `manual`."""
        if self.num_devices == 1 or not manual:
            # Plain `jit` over member-sharded inputs: XLA partitions the member axis
            # itself. Inside `shard_map`, values carry a manual-mesh sharding in their
            # abstract values, which `eqx.nn.State.set` compares with that of the
            # new state (a fresh array has none) and refuses.
            return fn
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)

    def program(self, name: Hashable, build: Callable, *args: Any,
                donate: tuple[int, ...] = ()) -> Any:
        """The executable of `build()` for these argument shapes, compiled once per process."""
        key = (name, self.key, tuple(d.id for d in self.mesh.devices.flat), avals(args),
               jax.config.jax_default_matmul_precision)  # traced into the program
        program = _PROGRAMS.get(key)
        if program is None:
            start = time.perf_counter()
            fn = build()
            if not hasattr(fn, "lower"):  # member-sharded outputs, whatever XLA would pick
                fn = jax.jit(fn, donate_argnums=donate, out_shardings=self.by_member)
            program = fn.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - start
            self.compiles += 1
            _PROGRAMS[key] = program
            if len(_PROGRAMS) > _MAX_PROGRAMS:
                _PROGRAMS.popitem(last=False)
        else:
            _PROGRAMS.move_to_end(key)
        return program


def run_chunk(contract: Contract, returns: Returns, source: BatchSource, arguments: tuple,
              keys: jax.Array, population: PopulationState, steps: int, aligned: bool):
    """`steps` steps of every member of `population`: one `lax.scan`, vmapped over members.

    Returns `(population, losses [M, steps], metrics: name -> [M, steps])`, a member
    that diverged rolled back (`step.rollback`).
    """
    positions, shared = source.positions(arguments, keys, population, steps, aligned)
    batch_of = functools.partial(source.batch, arguments, keys)

    def run(member, member_positions):
        one_step = functools.partial(member_step, contract, returns, batch_of, keys)
        end, (losses, metrics) = jax.lax.scan(one_step, member, member_positions)
        return rollback(member, end, losses, metrics)

    return jax.vmap(run, in_axes=(0, None if shared else 0))(population, positions)


def train_program(compiler: Compiler, contract: Contract, returns: Returns,
                  source: BatchSource, steps: int, aligned: bool, specs: tuple) -> Callable:
    """The program `(population, arguments, keys) -> (population, losses, metrics)`."""
    def train_local(population, arguments, keys):
        return run_chunk(contract, returns, source, arguments, keys, population, steps,
                         aligned)

    member = P(MEMBER_AXIS)
    return compiler.sharded(_named(TRAIN, train_local), (member, specs, P()),
                            (member, member, member), not contract.takes_model_state)


def init_program(compiler: Compiler, contract: Contract) -> Callable:
    """The program `(hparams, seeds, seed_params, init_params, keys) -> (state, non-finite)`."""
    def init_local(hp, seeds, seed_params, init_params, keys):
        one = functools.partial(init_member, contract, keys, seed_params, init_params)
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
        return state, non_finite_counts((params, model_state))

    member = P(MEMBER_AXIS)
    return compiler.sharded(_named(INIT, init_local), (member, member, P(), P(), P()), member,
                            not contract.takes_model_state)


def seed_init_program(compiler: Compiler, contract: Contract) -> Callable:
    """The program `keys -> (params, model_state)` of every seed, stacked [num_seeds, ...].

    Computed once per seed, unbatched: a vmapped random init costs about twice the
    compile time.
    """
    def init_seeds(keys):
        trees = [contract.seed_init(jax.random.fold_in(keys[0], s))
                 for s in range(contract.num_seeds)]
        return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)

    return jax.jit(_named(INIT_SEEDS, init_seeds), out_shardings=compiler.replicated)


def evaluate_program(compiler: Compiler, contract: Contract, returns: Returns) -> Callable:
    """The program `(population, eval_data, keys) -> name -> [M]`."""
    def evaluate_local(population, eval_data, keys):
        one = functools.partial(evaluate_member, contract, returns, eval_data, keys)
        return jax.vmap(one)(population)

    member = P(MEMBER_AXIS)
    return compiler.sharded(_named(EVALUATE, evaluate_local), (member, P(), P()), member,
                            not contract.takes_model_state)


def select_program() -> Callable:
    """The program `(old, new, index, mask)`: slot j <- new[index[j]] where mask[j]."""
    def pick(old, new, index, mask):
        def leaf(a, b):
            taken = b[index]
            return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), taken, a)
        return jax.tree_util.tree_map(leaf, old, new)

    return _named(SELECT, pick)


def take_program() -> Callable:
    """The program `(source, index)`: slot j <- source[index[j]]."""
    def take(source, index):
        return jax.tree_util.tree_map(lambda a: a[index], source)

    return _named(TAKE, take)


def concatenate_program() -> Callable:
    """The program `(*populations)`: their members as one population, in order."""
    def cat(*parts):
        return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)

    return _named(CONCATENATE, cat)


def default_eval_every(steps: int) -> int:
    """A chunk length that divides `steps` into about ten record points."""
    best = None
    for chunks in range(5, 21):
        if steps % chunks == 0 and (best is None or abs(chunks - 10) < abs(best - 10)):
            best = chunks
    if best is not None:
        return steps // best
    return max(1, math.ceil(steps / 10))
