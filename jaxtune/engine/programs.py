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
import concurrent.futures
import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxtune.devices import MEMBER_AXIS
from jaxtune.engine import forms
from jaxtune.engine.contract import Contract, Returns
from jaxtune.engine.sources import BatchSource
from jaxtune.engine.state import PopulationState, members_all_finite, non_finite_counts
from jaxtune.engine.step import evaluate_member, init_member, member_step, rollback

# The programs' names, as XLA (and `jax.log_compiles`) reports them.
INIT_SEEDS = "init_seeds"  # one seed's initial parameters, run once per seed
INIT = "init_local"  # a population at step 0
TRAIN = "train_local"  # a chunk of steps of every member
EVALUATE = "evaluate_local"  # every member's eval metrics
SELECT = "pick"  # slots replaced by members of another population
TAKE = "take"  # a population of chosen members
CONCATENATE = "cat"  # several populations as one
ORDER = "minibatch_order"  # every seed's minibatch indices of an aligned chunk
NON_FINITE = "non_finite"  # where an initial population holds NaN or inf, leaf by leaf
PROGRAMS = (INIT_SEEDS, INIT, TRAIN, EVALUATE, SELECT, TAKE, CONCATENATE, ORDER,
            "train_begin", "train_steps", "train_end")  # the "loop" forms' (`Chunk`)

# Compiled programs for the life of the process, least recently used dropped first.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 256
# Programs being compiled (by any thread), and the lock guarding both dicts and the counts.
_PENDING: dict[Any, concurrent.futures.Future] = {}
_LOCK = threading.Lock()
_RETURNS: dict[Any, Returns] = {}  # what the user functions return, per signature


def _named(name: str, fn: Callable) -> Callable:
    """`fn`, named `name` for XLA's reports."""
    fn.__name__ = fn.__qualname__ = name
    return fn


def avals(args: Any) -> tuple:
    """What a program compiled for `args` depends on: structure, shapes, dtypes, shardings.

    Computed at every program call, so kept cheap: a JAX array's (or abstract value's)
    own shape and dtype, already canonical, are read directly (`jnp.result_type` and
    `str` of a dtype cost tens of microseconds a leaf); `jnp.result_type` only for other
    leaves (NumPy arrays, Python scalars).
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (treedef, tuple(_aval(x) for x in leaves))


def _aval(x: Any) -> tuple:
    if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
        return x.shape, x.dtype, x.sharding, getattr(x, "weak_type", False)
    return (np.shape(x), jnp.result_type(x), getattr(x, "sharding", None),
            getattr(x, "weak_type", False))


def clear_programs() -> None:
    """Drops every compiled program of the process-wide cache (the next use compiles)."""
    with _LOCK:
        _PROGRAMS.clear()


def cached_returns(key: Hashable, compute: Callable[[], Returns]) -> Returns:
    """`compute()`, once per process for each `key`."""
    if key not in _RETURNS:
        _RETURNS[key] = compute()
    return _RETURNS[key]


class Compiler:
    """Compiles a trainer's programs for its mesh, sharing them through the process cache.

    Safe to use from several threads (the runner compiles static groups ahead of need
    in background threads, `jaxtune.runner.ahead`): a program is compiled once per key
    even when two threads ask for it together; the second waits for the first's result
    (or its exception, raised to the first thread that asks after it failed).

    Attributes:
      mesh, replicated, by_member: the devices, and the shardings of an argument held
        whole on each / split by member.
      compiles, compile_seconds: programs compiled (cache misses) and the seconds spent,
        in whatever thread compiled them; each program counted once.
      wait_seconds: seconds the threads that needed a program (not those compiling
        ahead) spent compiling it or waiting for it; with nothing compiled ahead, equal
        to `compile_seconds`.
      helper: None, or a function handing a thread that waits for a program another
        thread compiles a job to do meanwhile (None when there is none); the job must
        not raise (`runner.ahead.CompileAhead`).
    """

    _ahead = threading.local()  # .on: this thread compiles ahead of need; .abstract: not run

    def __init__(self, mesh: Mesh, key: Hashable):
        self.mesh = mesh
        self.num_devices = mesh.devices.size
        self.replicated = NamedSharding(mesh, P())
        self.by_member = NamedSharding(mesh, P(MEMBER_AXIS))
        self.key = key  # what every program of this trainer depends on
        self.compiles = 0
        self.compile_seconds = 0.0
        self.wait_seconds = 0.0
        self.helper: Callable[[], Callable[[], None] | None] | None = None

    @classmethod
    @contextlib.contextmanager
    def ahead(cls, abstract: bool = True):
        """Inside the block, this thread compiles ahead of need: its time is not counted in
        `wait_seconds`, and a failed compile is kept for the thread that needs the program.

        With `abstract`, programs are compiled without running: a program called returns
        the shapes, dtypes and shardings of its outputs (`jax.ShapeDtypeStruct`s), so that
        the next program's arguments can be built from them.
        """
        previous = (getattr(cls._ahead, "on", False), getattr(cls._ahead, "abstract", False))
        cls._ahead.on, cls._ahead.abstract = True, abstract
        try:
            yield
        finally:
            cls._ahead.on, cls._ahead.abstract = previous

    @classmethod
    def abstract_ahead(cls) -> bool:
        """Whether this thread compiles ahead of need, running nothing (`ahead()`)."""
        return getattr(cls._ahead, "on", False) and getattr(cls._ahead, "abstract", False)

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
        """The executable of `build()` for these argument shapes, compiled once per process.

        `args` may be `jax.ShapeDtypeStruct`s with shardings (what `ahead` programs return).
        """
        key = self._key(name, args)
        ahead, abstract = getattr(self._ahead, "on", False), self.abstract_ahead()
        start = time.perf_counter()
        with _LOCK:
            program = _PROGRAMS.get(key)
            if program is not None:
                _PROGRAMS.move_to_end(key)
            else:
                future, owner = _PENDING.get(key), False
                if future is None:
                    future, owner = concurrent.futures.Future(), True
                    _PENDING[key] = future
        if program is None:
            program = (self._compile(key, future, build, args, donate) if owner
                       else self._awaited(key, future))
            if not ahead:
                with _LOCK:
                    self.wait_seconds += time.perf_counter() - start
        return _Outputs(program) if abstract else program

    def shapes(self, name: Hashable, build: Callable, *args: Any, compile: bool = False
               ) -> Any:
        """The abstract outputs (shapes, dtypes, shardings) of the program `program(name,
        build, *args)` would return: read from it when compiled, else traced, not
        compiled; with `compile`, compiled first (through `program`).

        What lets a thread compile ahead a program that takes another's outputs before
        that other is compiled (`runner.ahead`: training, beside the initial population).
        """
        if compile:
            program = self.program(name, build, *args)
            return (program.program if isinstance(program, _Outputs) else program).out_info
        with _LOCK:
            program = _PROGRAMS.get(self._key(name, args))
        if program is not None:
            return program.out_info
        return jax.eval_shape(self._jitted(build), *args)

    def _key(self, name: Hashable, args: tuple) -> tuple:
        return (name, self.key, tuple(d.id for d in self.mesh.devices.flat), avals(args),
                jax.config.jax_default_matmul_precision)  # traced into the program

    def _jitted(self, build: Callable, donate: tuple[int, ...] = ()) -> Any:
        fn = build()
        if not hasattr(fn, "lower"):  # member-sharded outputs, whatever XLA would pick
            fn = jax.jit(fn, donate_argnums=donate, out_shardings=self.by_member)
        return fn

    def _compile(self, key: tuple, future: concurrent.futures.Future, build: Callable,
                 args: tuple, donate: tuple[int, ...]) -> Any:
        """Compiles the program of `key`, publishing it (or the error) through `future`."""
        start = time.perf_counter()
        try:
            program = self._jitted(build, donate).lower(*args).compile(
                compiler_options=_options(key[0]))
        except BaseException as error:
            if getattr(self._ahead, "on", False):
                future.set_exception(error)  # kept for the thread that needs the program
            else:
                with _LOCK:
                    _PENDING.pop(key, None)
                future.set_exception(error)
            raise
        with _LOCK:
            self.compile_seconds += time.perf_counter() - start
            self.compiles += 1
            _PROGRAMS[key] = program
            if len(_PROGRAMS) > _MAX_PROGRAMS:
                _PROGRAMS.popitem(last=False)
            _PENDING.pop(key, None)
        future.set_result(program)
        return program

    def _awaited(self, key: tuple, future: concurrent.futures.Future) -> Any:
        """The program another thread is compiling (or compiled ahead and failed: its error
        is raised here, once; a later call compiles again).

        Meanwhile this thread does the work `helper` hands it (`runner.ahead`: the
        compiles queued ahead for the same group, which it would wait for next), instead
        of leaving a core idle.
        """
        while self.helper is not None and not future.done():
            job = self.helper()
            if job is None:
                break
            job()
        try:
            return future.result()
        except BaseException:
            with _LOCK:
                if _PENDING.get(key) is future:
                    del _PENDING[key]
            raise


# Programs that run once, or once per decision, on small inputs: their run time is noise
# beside their compile time, which XLA:CPU's LLVM optimizations about double (the
# digits MLP's `init_seeds`: 1.38 s compiled optimized, 0.57 s not, run 10 ms either way).
ONCE = (INIT_SEEDS, INIT, SELECT, TAKE, CONCATENATE, NON_FINITE)
_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


def _options(name: Hashable) -> dict[str, Any] | None:
    """XLA options of the program named `name` (a name, or a tuple starting with one)."""
    base = name[0] if isinstance(name, tuple) else name
    return dict(_ONCE_OPTIONS) if base in ONCE and jax.default_backend() == "cpu" else None


class _Outputs:
    """A compiled program called ahead of need: returns its outputs' abstract values."""

    def __init__(self, program: Any):
        self.program = program

    def __call__(self, *args: Any) -> Any:
        return self.program.out_info


def run_chunk(contract: Contract, returns: Returns, source: BatchSource, arguments: tuple,
              keys: jax.Array, population: PopulationState, steps: int, aligned: bool,
              members: str = "vmap"):
    """`steps` steps of every member of `population` as one `lax.scan` (the "scan" forms).

    `members` is "vmap" (the members vmapped) or "unroll" (`forms.map_members`).
    Returns `(population, losses [M, steps], metrics: name -> [M, steps])`, a member
    that diverged rolled back (`step.rollback`). The "loop" forms run the same steps
    as several programs (`Chunk`).
    """
    positions, shared = source.positions(arguments, keys, population, steps, aligned)
    batch_of = functools.partial(source.batch, arguments, keys)

    def run(member, member_positions):
        one_step = functools.partial(member_step, contract, returns, batch_of, keys)
        end, (losses, metrics) = jax.lax.scan(one_step, member, member_positions)
        return rollback(member, end, losses, metrics)

    return forms.map_members(run, members, (0, None if shared else 0), population, positions)


def train_program(compiler: Compiler, contract: Contract, returns: Returns,
                  source: BatchSource, steps: int, aligned: bool, specs: tuple,
                  members: str = "vmap") -> Callable:
    """The program `(population, arguments, keys) -> (population, losses, metrics)`."""
    def train_local(population, arguments, keys):
        return run_chunk(contract, returns, source, arguments, keys, population, steps,
                         aligned, members)

    member = P(MEMBER_AXIS)
    return compiler.sharded(_named(TRAIN, train_local), (member, specs, P()),
                            (member, member, member), not contract.takes_model_state)


def init_program(compiler: Compiler, contract: Contract) -> Callable:
    """The program `(hparams, seeds, seed_params, init_params, keys) -> (state, finite)`,
    `finite[m]` whether member m's parameters and model state are all finite."""
    def init_local(hp, seeds, seed_params, init_params, keys):
        if seed_params is not None:  # one tree per seed (`seed_init_program`), stacked
            seed_params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves),
                                                 *seed_params)
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
        return state, members_all_finite((params, model_state), n)

    member = P(MEMBER_AXIS)
    return compiler.sharded(_named(INIT, init_local), (member, member, P(), P(), P()), member,
                            not contract.takes_model_state)


def non_finite_program() -> Callable:
    """The program `(params, model_state) -> the NaN and inf count of every leaf per member`
    (`state.non_finite_counts`), compiled only for an initial population that has some."""
    return _named(NON_FINITE, lambda params, model_state: non_finite_counts((params,
                                                                             model_state)))


def seed_init_program(compiler: Compiler, contract: Contract) -> Callable:
    """The program `(keys, seed) -> (params, model_state)` of one seed, run once per seed.

    One seed's, unbatched, and called for each: its compile time does not grow with the
    seeds (one copy of `init_fn` per seed in one program made it; a vmapped random init
    costs about twice the compile time of one). `init_program` stacks the seeds' trees.
    """
    def init_seeds(keys, seed):
        return contract.seed_init(jax.random.fold_in(keys[0], seed))

    return jax.jit(_named(INIT_SEEDS, init_seeds), out_shardings=compiler.replicated)


def order_program(compiler: Compiler, source: BatchSource, num_seeds: int, steps: int
                  ) -> Callable:
    """The program `(keys, start) -> [num_seeds, steps, batch_size]`: the minibatch indices
    of every seed for an aligned chunk of `steps` from step `start` (`source.order`).

    It depends on the data's size and the batch size alone, so `compiler` is keyed on the
    source, not on the user's functions: every static group on the same data runs one
    program, compiled once per process, instead of each training program drawing them.
    """
    def minibatch_order(keys, start):
        return source.order(keys, jnp.arange(num_seeds), start, steps)

    return jax.jit(_named(ORDER, minibatch_order), out_shardings=compiler.replicated)


def hypergradient_program(compiler: Compiler, contract: Contract, returns: Returns,
                          source: BatchSource, steps: int, aligned: bool, specs: tuple,
                          options: tuple) -> Callable:
    """The program `(population, arguments, eval_data, keys) -> (population, losses,
    metrics, grads)` of `Trainer.train_with_hypergradients`, on `engine.step`'s functions
    (`jaxtune.hypergradient.member_chunk`: the chunk with a tangent per hyperparameter)."""
    from jaxtune.hypergradient import member_chunk

    names, metric, scale, mode, window = options

    def train_hypergradient_local(population, arguments, eval_data, keys):
        positions, shared = source.positions(arguments, keys, population, steps, aligned)
        batch_of = functools.partial(source.batch, arguments, keys)
        run = functools.partial(
            member_chunk, functools.partial(member_step, contract, returns, batch_of, keys),
            lambda end: evaluate_member(contract, returns, eval_data, keys, end)[metric],
            rollback, names=names, scale=dict(scale), mode=mode, window=window)
        return jax.vmap(run, in_axes=(0, None if shared else 0))(population, positions)

    by_member, whole = compiler.by_member.spec, compiler.replicated.spec
    return compiler.sharded(train_hypergradient_local, (by_member, specs, whole, whole),
                            (by_member,) * 4, not contract.takes_model_state)


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


# The programs of a chunk's "loop" forms (`engine.forms`), as XLA reports them.
TRAIN_BEGIN = "train_begin"  # the chunk's positions and result buffers; the start kept
TRAIN_STEPS = "train_steps"  # a few steps of every member, dispatched in a host loop
TRAIN_END = "train_end"  # the chunk's divergence rollback (`step.rollback`)
_SHARED: dict[Hashable, bool] = {}  # whether a chunk's members share their positions


class Chunk(NamedTuple):
    """A chunk of `steps` steps of a population, run in any form of `engine.forms`.

    `run(form, args, donate)` with `args = (population, arguments, keys)` returns
    `(population, losses [M, steps], metrics: name -> [M, steps])` in every form: the
    "scan" forms are one program (`train_program`); the "loop" forms three, a begin,
    a program of `forms.loop_steps(steps)` steps dispatched `steps / k` times without
    reading anything back, and the end's rollback (`loop_begin_program` ...).
    """

    compiler: Compiler
    contract: Contract
    returns: Returns
    source: BatchSource
    steps: int
    aligned: bool
    specs: tuple  # the partition specs of the source's arguments

    def run(self, form: str, args: tuple, donate: bool, traced: Any = None) -> tuple:
        """The chunk in `form`; `donate` gives the population's buffers to the result (the
        "scan" forms; the "loop" forms never need the start's buffers after the chunk).
        `traced`: the "scan+vmap" program already traced for these arguments (`auto`)."""
        along_steps, members = forms.split(form)
        if along_steps == "scan":
            return self._scan(form, args, donate, traced)(*args)
        begin, steps, end = self._loop(members, args)
        working, positions, losses, metrics, done = begin(*args)
        for _ in range(self.steps // forms.loop_steps(self.steps)):
            working, losses, metrics, done = steps(working, positions, losses, metrics, done,
                                                   *args[1:])
        return end(args[0], working, losses, metrics)

    def compile(self, form: str, args: tuple) -> None:
        """Compiles the programs of `form` (a no-op when the process already holds them)."""
        if forms.split(form)[0] == "scan":
            self._scan(form, args, False)
        else:
            self._loop(forms.split(form)[1], args)

    def _scan(self, form: str, args: tuple, donate: bool, traced: Any = None) -> Any:
        name = (TRAIN, self.steps, donate, self.aligned) + (
            () if form == forms.DEFAULT else (form,))
        return self.compiler.program(
            name, lambda: self._jitted_scan(form, donate) if traced is None else _Traced(traced),
            *args)

    def _jitted_scan(self, form: str, donate: bool) -> Any:
        """The jitted program of a "scan" form, as `Compiler.program` jits it."""
        return self.compiler._jitted(
            functools.partial(train_program, self.compiler, self.contract, self.returns,
                              self.source, self.steps, self.aligned, self.specs,
                              forms.split(form)[1]), (0,) if donate else ())

    def _loop(self, members: str, args: tuple) -> tuple[Any, Any, Any]:
        """The begin, steps and end programs of a "loop" form."""
        shared = _shared_positions(self.compiler, self.source, self.steps, self.aligned, args)
        parts = (self.compiler, self.contract, self.returns, self.source)
        begin = self.compiler.program(
            (TRAIN_BEGIN, self.steps, self.aligned),
            functools.partial(loop_begin_program, *parts, self.steps, self.aligned, self.specs,
                              shared), *args)
        working, positions, losses, metrics, done = _out_info(begin, args)
        k = forms.loop_steps(self.steps)
        steps = self.compiler.program(
            (TRAIN_STEPS, k, members, shared),
            functools.partial(loop_steps_program, *parts, k, members, self.specs, shared),
            working, positions, losses, metrics, done, *args[1:])
        end = self.compiler.program(TRAIN_END, functools.partial(
            loop_end_program, self.compiler, self.contract), args[0], working, losses, metrics)
        return begin, steps, end

    def shape_key(self, args: tuple) -> Hashable:
        """What a measured form is remembered by: the functions, data, devices and shapes."""
        return (TRAIN, self.compiler.key, tuple(d.id for d in self.compiler.mesh.devices.flat),
                avals(args[0]))

    def auto(self, args: tuple, donate: bool) -> tuple[str, Any]:
        """`(forms.auto_form for this chunk, the traced "scan+vmap" program or None)`.

        Whether the step convolves is read once per process and program shape from the
        "scan+vmap" program traced for these arguments, which then compiles from that
        trace when it is the form chosen: the user's functions are traced no more often
        than without chunk forms.
        """
        platform = self.compiler.mesh.devices.flat[0].platform
        if platform != "cpu":
            return forms.auto_form(platform, False), None
        traced = []

        def trace():
            traced.append(self._jitted_scan(forms.DEFAULT, donate).trace(*args))
            return traced[0].jaxpr

        member = jax.tree_util.tree_map(  # one member's shapes: any population size
            lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], jnp.result_type(a)), args[0])
        convolution = forms.convolves((self.compiler.key, avals(member)), trace)
        form = forms.auto_form(platform, convolution)
        return form, traced[0] if traced and form == forms.DEFAULT else None


class _Traced(NamedTuple):
    """A program traced already, lowered as `Compiler.program` lowers a jitted function."""

    traced: Any

    def lower(self, *args: Any) -> Any:
        return self.traced.lower()


def _out_info(program: Any, args: tuple) -> Any:
    """The abstract outputs of a compiled program (called, when it is a program compiled
    ahead of need, which returns them)."""
    info = getattr(program, "out_info", None)
    return program(*args) if info is None else info


def _shared_positions(compiler: Compiler, source: BatchSource, steps: int, aligned: bool,
                      args: tuple) -> bool:
    """Whether every member of a chunk reads the same positions (traced, not run; once per
    program key, chunk length and alignment)."""
    key = (compiler.key, steps, aligned, avals(args[0].seed))
    if key in _SHARED:
        return _SHARED[key]
    shared = []

    def positions(population, arguments, keys):
        out, is_shared = source.positions(arguments, keys, population, steps, aligned)
        shared.append(is_shared)
        return out

    jax.eval_shape(positions, *args)
    _SHARED[key] = shared[0]
    return shared[0]


def _jitted(compiler: Compiler, fn: Callable, in_specs: tuple, out_specs: tuple,
            manual: bool, donate: tuple[int, ...]) -> Callable:
    """`fn` sharded over the members (`Compiler.sharded`), jitted with outputs placed as
    `out_specs` say (replicated positions are not member-sharded)."""
    shardings = jax.tree_util.tree_map(lambda spec: NamedSharding(compiler.mesh, spec),
                                       out_specs, is_leaf=lambda x: isinstance(x, P))
    return jax.jit(compiler.sharded(fn, in_specs, out_specs, manual), donate_argnums=donate,
                   out_shardings=shardings)


def loop_begin_program(compiler: Compiler, contract: Contract, returns: Returns,
                       source: BatchSource, steps: int, aligned: bool, specs: tuple,
                       shared: bool) -> Callable:
    """The program `(population, arguments, keys) -> (copy, positions, losses, metrics, 0)`.

    The positions of the whole chunk (`BatchSource.positions`, computed once), empty
    loss and metric buffers [M, steps] and a copy of the population for the steps to
    consume, the start itself kept for the rollback.
    """
    def train_begin(population, arguments, keys):
        positions, _ = source.positions(arguments, keys, population, steps, aligned)
        size = (population.step.shape[0], steps)
        metrics = {name: jnp.zeros(size, jnp.float32) for name in returns.aux_names}
        working = jax.tree_util.tree_map(jnp.copy, population)
        return working, positions, jnp.zeros(size, jnp.float32), metrics, jnp.int32(0)

    member = P(MEMBER_AXIS)
    return _jitted(compiler, _named(TRAIN_BEGIN, train_begin), (member, specs, P()),
                   (member, P() if shared else member, member, member, P()),
                   not contract.takes_model_state, ())


def loop_steps_program(compiler: Compiler, contract: Contract, returns: Returns,
                       source: BatchSource, k: int, members: str, specs: tuple,
                       shared: bool) -> Callable:
    """The program `(population, positions, losses, metrics, done, arguments, keys) ->
    (population, losses, metrics, done + k)`: `k` steps of every member (unrolled, no
    loop), their losses and metrics written at column `done` of the buffers, which are
    donated with the population."""
    def train_steps(population, positions, losses, metrics, done, arguments, keys):
        batch_of = functools.partial(source.batch, arguments, keys)

        def run(member, member_positions):
            outputs = []
            for i in range(k):
                position = jax.lax.dynamic_index_in_dim(member_positions, done + i,
                                                        keepdims=False)
                member, out = member_step(contract, returns, batch_of, keys, member, position)
                outputs.append(out)
            return member, *jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outputs)

        population, new_losses, new_metrics = forms.map_members(
            run, members, (0, None if shared else 0), population, positions)

        def put(buffer, new):
            return jax.lax.dynamic_update_slice_in_dim(buffer, new, done, axis=1)

        return (population, put(losses, new_losses),
                jax.tree_util.tree_map(put, metrics, new_metrics), done + k)

    member = P(MEMBER_AXIS)
    return _jitted(compiler, _named(TRAIN_STEPS, train_steps),
                   (member, P() if shared else member, member, member, P(), specs, P()),
                   (member, member, member, P()), not contract.takes_model_state, (0, 2, 3, 4))


def loop_end_program(compiler: Compiler, contract: Contract) -> Callable:
    """The program `(start, end, losses, metrics) -> (population, losses, metrics)`: every
    member's chunk kept, or rolled back to `start` (`step.rollback`).

    `end` and the buffers are donated; `start` never is (the result can reuse one
    population's buffers, not two): the caller's reference to it is its last.
    """
    def train_end(start, end, losses, metrics):
        return jax.vmap(rollback)(start, end, losses, metrics)

    member = P(MEMBER_AXIS)
    return _jitted(compiler, _named(TRAIN_END, train_end), (member,) * 4, (member,) * 3,
                   not contract.takes_model_state, (1, 2, 3))


def run_chunk_as(chunk: Chunk, chunk_form: str, args: tuple, donate: bool
                 ) -> tuple[str, tuple]:
    """Runs `chunk` as `chunk_form` asks (see `engine.forms`); returns `(form, result)`.

    An explicit form runs as it is; "auto" runs `Chunk.auto`; "measure" runs the form
    measured for this program shape earlier in the process, else times every form on
    this chunk (`forms.fastest`, nothing donated), keeps the fastest's result and
    remembers it. Compiled ahead of need (the programs return abstract values), every
    form is compiled and nothing is remembered. With several processes "measure" runs as
    "auto": each would time differently, and all must run the same programs.
    """
    if chunk_form == "measure" and jax.process_count() > 1:
        chunk_form = "auto"  # timings differ between processes; every one must run alike
    if chunk_form in forms.FORMS:
        form = chunk_form
    elif chunk_form == "auto":
        form, traced = chunk.auto(args, donate)
        return form, chunk.run(form, args, donate, traced)
    else:
        key = chunk.shape_key(args)
        form = forms.measured(key)
        if form is None:
            form, result, seconds = forms.fastest(
                lambda f: chunk.run(f, args, False), lambda f: chunk.compile(f, args))
            if seconds is not None:
                forms.remember(key, form)
            return form, result
    return form, chunk.run(form, args, donate)
