"""The population trainer: many configurations x seeds in one compiled program.

`Trainer` turns a loss function and an optimizer factory into compiled programs
over a population (`PopulationState`, every leaf with a leading member axis):

  * `init(hparams, seed)`: parameters (shared, or `init_fn(key)` per seed) and
    optimizer state, built from each member's own hyperparameters;
  * `train(state, steps)`: `steps` optimizer steps as one `lax.scan`, vmapped over
    the members and sharded over devices (`shard_map` over a 1-D mesh), or in another
    chunk form where that is faster (`jaxtune.engine.forms`);
  * `evaluate(state)`: `eval_fn` on the validation data for every member.

It wires three parts: the data source (`jaxtune.engine.sources`, whose docstring
describes the three forms of `data`), the contract of the user's functions
(`jaxtune.engine.contract`: routing, what they may return, model state) and the
compiled programs (`jaxtune.engine.programs`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from jaxtune._checks import positive_int
from jaxtune.devices import member_mesh
from jaxtune.distributed import gather, place
from jaxtune.engine import forms, programs
from jaxtune.engine.contract import (
    Contract,
    Returns,
    check_functions,
    probe,
    refuse_non_finite_init,
)
from jaxtune.engine.sources import leading_length, source_of
from jaxtune.engine.state import PopulationState, is_array, partition


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
        metrics))` (see `jaxtune.engine.contract`).
      make_optimizer: `make_optimizer(**hparams) -> optax.GradientTransformation`,
        called inside the traced step with each member's hyperparameters as arrays.
      data: arrays, a `batch_fn(key, step) -> batch` or an iterable of batches (a
        generator, a DataLoader, a `jt.HostStream`); the three forms are described
        in `jaxtune.engine.sources`.
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
      chunk_form: how a chunk of steps runs: "auto" (default: a rule read from the traced
        step), "measure" (the fastest form, timed on the first chunk of each program
        shape), or one of `jaxtune.engine.forms.FORMS` ("scan+vmap", "loop+unroll" ...);
        see `jaxtune.engine.forms`. Every form trains the same, up to float rounding.

    Attributes:
      data, eval_data: the data placed on the devices (replicated); pass them to
        another trainer on the same devices to share one copy.
      compiles, compile_seconds: programs this trainer compiled (cache misses) and
        the seconds spent compiling them.
      chunk_form: the form the last chunk ran as (None before any); `chunk_forms`: how
        many chunks ran in each form.
      source, contract, compiler: the parts it wires: the `BatchSource` of `data`,
        the user's functions (`engine.contract.Contract`) and its programs' compiler
        (`engine.programs.Compiler`).
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
        chunk_form: str = "auto",
    ):
        self._chunk_form = forms.check_chunk_form(chunk_form)
        self._chunk_forms: dict[str, int] = {}  # form -> chunks run in it; the last used last
        init_fn = check_functions(loss_fn, make_optimizer, init_params, eval_fn, eval_data)
        num_seeds = positive_int("num_seeds", num_seeds)
        mesh = member_mesh(devices)
        self.source = source_of(data, batch_size, mesh, num_seeds)
        if eval_data is not None:
            leading_length("eval_data", eval_data)
        init_rest = None
        if init_fn is None:
            init_params, init_rest = partition(init_params, is_array)
        self.contract = Contract(loss_fn, make_optimizer, init_fn, eval_fn,
                                 dict(static_hparams or {}), num_seeds, init_rest)
        self.compiler = programs.Compiler(mesh, (self.contract.key, self.source.key))
        # Programs of the data alone (the minibatch orders), shared by every trainer on
        # the same data whatever its functions: `programs.order_program`.
        self.data_compiler = programs.Compiler(mesh, ("data", self.source.key))
        root = _root_key(key)
        # Placed once, replicated; placing already-placed arrays again is free, so
        # trainers of one sweep share a single copy.
        replicated = self.compiler.replicated
        self.keys = place(jax.random.split(root, 3), replicated)  # init, order, step
        self.eval_data = None if eval_data is None else place(eval_data, replicated)
        self.init_params = None if init_fn else place(init_params, replicated)
        self._seed_params: Any = None

    # -- what the wiring exposes ------------------------------------------------------

    loss_fn = property(lambda self: self.contract.loss_fn)
    make_optimizer = property(lambda self: self.contract.make_optimizer)
    init_fn = property(lambda self: self.contract.init_fn)
    eval_fn = property(lambda self: self.contract.eval_fn)
    static_hparams = property(lambda self: self.contract.static_hparams)
    num_seeds = property(lambda self: self.contract.num_seeds)
    batch_size = property(lambda self: self.source.batch_size)
    data = property(lambda self: self.source.data, doc="`data` on the devices, or None.")
    stream = property(lambda self: self.source.stream, doc="The `HostStream`, or None.")
    mesh = property(lambda self: self.compiler.mesh)
    num_devices = property(lambda self: self.compiler.num_devices)
    compiles = property(lambda self: self.compiler.compiles + self.data_compiler.compiles)
    compile_seconds = property(
        lambda self: self.compiler.compile_seconds + self.data_compiler.compile_seconds)
    wait_seconds = property(
        lambda self: self.compiler.wait_seconds + self.data_compiler.wait_seconds,
        doc="Seconds the threads that needed a program spent compiling or waiting for it.")
    chunk_form = property(lambda self: next(reversed(self._chunk_forms), None))
    chunk_forms = property(lambda self: dict(self._chunk_forms))

    def resolve(self, hparams: Mapping[str, Any]) -> Returns:
        """Checks the user functions on one member's shapes, without compiling anything.

        Returns what they produce (`Returns`: whether the loss has aux, the eval
        metric names, one member's parameter and optimizer-state shapes). The answer
        depends only on the functions and the shapes, so it is computed once per
        process; every `Trainer` built from the same functions agrees.

        Raises:
          ValueError / TypeError: the hyperparameter names do not fit the functions,
            a function returns the wrong kind of thing, or fails on these shapes.
        """
        one = {k: jax.ShapeDtypeStruct((), jnp.result_type(v)) for k, v in hparams.items()}
        step_key = jax.ShapeDtypeStruct(self.keys.shape[1:], self.keys.dtype)
        key = (self.contract.key, self.source.key,
               programs.avals((one, self.eval_data, self.init_params)))
        return programs.cached_returns(key, lambda: probe(
            self.contract, one, self.keys, self.init_params,
            lambda: self.source.shapes(step_key), self.eval_data))

    def aux_names(self, hparams: Mapping[str, Any]) -> tuple[str, ...]:
        """Names of the training metrics `loss_fn` returns in its aux dict."""
        return self.resolve(hparams).aux_names

    def eval_names(self, hparams: Mapping[str, Any]) -> tuple[str, ...]:
        """Names of the metrics `evaluate` returns for members with these hyperparameters."""
        return self.resolve(hparams).eval_names

    def init_key(self, seed: int) -> jax.Array:
        """The PRNG key `init_fn` receives for seed index `seed`."""
        return jax.random.fold_in(self.keys[0], seed)

    def minibatch_indices(self, seed: int, start: int, steps: int) -> np.ndarray:
        """Example indices [steps, batch_size] a member of `seed` uses at steps start, ...

        Each epoch is a fresh permutation of the examples, a function of (seed,
        epoch) only, so a member's batches depend on nothing but its seed and step.
        """
        if self.source.order is None:
            raise ValueError("this trainer's batches come from `data` as a `batch_fn` or a "
                             "stream of batches; it has no minibatch indices.")
        return np.asarray(self.source.order(self.keys, jnp.asarray([seed], jnp.int32),
                                            jnp.int32(start), int(steps))[0])

    def check_member_count(self, members: int) -> None:
        """Raises ValueError unless `members` divides evenly over the devices."""
        if members % self.num_devices:
            raise ValueError(
                f"the population has {members} members, not a multiple of the {self.num_devices} "
                "devices it is sharded over; pad it, or pass fewer `devices`."
            )

    # -- the programs -------------------------------------------------------------------

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
        hparams, seed, build, args = self._init_call(hparams, seed, abstract=False)
        state, finite = self.compiler.program(programs.INIT, build, *args)(*args)
        if not gather(finite).all():  # which leaf: a program compiled only now
            trees = (state.params, state.model_state)
            counts = self.compiler.program(programs.NON_FINITE, programs.non_finite_program,
                                           *trees)(*trees)
            refuse_non_finite_init(self.contract, gather(counts), hparams, seed)
        return state

    def init_shapes(self, hparams: Mapping[str, Any], seed: Any = None, *,
                    compile: bool = False) -> PopulationState:
        """The shapes, dtypes and shardings of `init(hparams, seed)`'s population, traced:
        nothing is run, nor compiled unless `compile` (`Compiler.shapes`). Nothing is
        placed on the devices either, so another thread may call it while this process
        talks to the others (`runner.ahead`)."""
        _, _, build, args = self._init_call(hparams, seed, abstract=True, compile=compile)
        return self.compiler.shapes(programs.INIT, build, *args, compile=compile)[0]

    def _init_call(self, hparams: Mapping[str, Any], seed: Any, abstract: bool,
                   compile: bool = False) -> tuple:
        """`(hparams, seed, build, args)` of the init program, the arguments checked; with
        `abstract`, the arguments' abstract values where they are not computed yet."""
        hparams = {k: jnp.asarray(v) for k, v in hparams.items()}
        seed = checked_seeds(hparams, seed, self.num_seeds)
        self.check_member_count(seed.shape[0])
        self.resolve(hparams)
        seed_params = self._seed_params_of(list(hparams), abstract, compile)
        by_member = self.compiler.by_member
        if abstract:
            members = jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a),
                                               sharding=by_member), (hparams, seed))
        else:
            members = (place(hparams, by_member), place(seed, by_member))
        args = (*members, seed_params, self.init_params, self.keys)
        build = functools.partial(programs.init_program, self.compiler, self.contract)
        return hparams, seed, build, args

    def _seed_params_of(self, dynamic_names: Sequence[str], abstract: bool = False,
                        compile: bool = False) -> Any:
        """Initial parameters and model state of every seed (a tree per seed), or None.

        When `init_fn` takes no dynamic hyperparameter its result depends on the seed
        alone: it is computed once per seed and members gather their seed's copy. With
        `abstract`, their abstract values when not yet computed (not run; compiled only
        with `compile`).
        """
        if not self.contract.init_per_seed(dynamic_names):
            return None
        if self._seed_params is None:
            build = functools.partial(programs.seed_init_program, self.compiler, self.contract)
            replicated = self.compiler.replicated
            if abstract:  # nothing placed (`init_shapes`)
                seed = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
                one = self.compiler.shapes(programs.INIT_SEEDS, build, self.keys, seed,
                                           compile=compile)
                return (one,) * self.num_seeds
            seeds = [place(np.int32(s), replicated) for s in range(self.num_seeds)]
            program = self.compiler.program(programs.INIT_SEEDS, build, self.keys, seeds[0])
            self._seed_params = tuple(program(self.keys, seed) for seed in seeds)
        return self._seed_params

    def abstract_state(self, hparams: Mapping[str, Any], members: int) -> PopulationState:
        """The shapes and dtypes of a population of `members` (nothing is computed)."""
        returns = self.resolve(hparams)

        def stack(tree):
            return jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct((members, *a.shape), a.dtype), tree)

        vector = functools.partial(jax.ShapeDtypeStruct, (members,))
        return PopulationState(
            params=stack(returns.params), opt_state=stack(returns.opt_state),
            hparams={k: vector(jnp.result_type(v)) for k, v in hparams.items()},
            seed=vector(jnp.int32), step=vector(jnp.int32), alive=vector(jnp.bool_),
            diverged_step=vector(jnp.int32), model_state=stack(returns.model_state),
        )

    def member_bytes(self, hparams: Mapping[str, Any]) -> int:
        """Estimated device bytes one member needs while training.

        Parameters, model state and optimizer state, held twice (the state in flight
        and the one being computed), plus gradients and updates (each the size of the
        parameters).
        """
        returns = self.resolve(hparams)
        size = lambda tree: sum(math.prod(a.shape) * a.dtype.itemsize  # noqa: E731
                                for a in jax.tree_util.tree_leaves(tree))
        held = size(returns.params) + size(returns.opt_state) + size(returns.model_state)
        return 2 * held + 2 * size(returns.params)

    def place(self, state: PopulationState) -> PopulationState:
        """Puts a (host) population on this trainer's devices, sharded by member."""
        return place(state, self.compiler.by_member)

    def train(self, state: PopulationState, steps: int, *, donate: bool = False,
              aligned: bool | None = None) -> tuple[PopulationState, jax.Array]:
        """Runs `steps` optimizer steps for every member, in the trainer's `chunk_form`.

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
        returns = self.resolve(state.hparams)
        prepared = self._prepare(state, member_steps, steps, aligned)
        if prepared.limit is not None and steps > prepared.limit:
            return self._train_in_calls(state, steps, prepared.limit, donate,
                                        prepared.member_steps)
        chunk = programs.Chunk(self.compiler, self.contract, returns, self.source, steps,
                               prepared.aligned, prepared.specs)
        form, result = programs.run_chunk_as(chunk, self._chunk_form,
                                             (state, prepared.arguments, self.keys), donate)
        if isinstance(result[1], jax.Array):  # run, not compiled ahead (`Compiler.ahead`)
            self._chunk_forms[form] = self._chunk_forms.pop(form, 0) + 1
        return result

    def _prepare(self, state: PopulationState, member_steps: Any, steps: int,
                 aligned: bool | None) -> Any:
        """The source's `prepare`; for arrays and an aligned chunk, with the minibatch
        orders drawn by the data's own program (`programs.order_program`) as a third
        argument, which the source's `positions` reads instead of drawing them."""
        prepared = self.source.prepare(state.step, member_steps, steps, aligned)
        if self.source.order is None or not prepared.aligned:  # only arrays have an order
            return prepared
        keys, start = self.keys, prepared.arguments[1]
        build = functools.partial(programs.order_program, self.data_compiler, self.source,
                                  self.num_seeds, steps)
        name = (programs.ORDER, steps, self.num_seeds)
        if programs.Compiler.abstract_ahead():  # the training program compiles first
            orders = self.data_compiler.shapes(name, build, keys, start)
        else:
            orders = self.data_compiler.program(name, build, keys, start)(keys, start)
        return prepared._replace(arguments=(*prepared.arguments, orders),
                                 specs=(*prepared.specs, P()))

    def _train_in_calls(self, state: PopulationState, steps: int, limit: int, donate: bool,
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

    def evaluate(self, state: PopulationState) -> dict[str, jax.Array]:
        """Evaluates every member on `eval_data`: name -> float32 [M] (NaN if diverged)."""
        if self.eval_data is None:
            raise ValueError("this trainer has no `eval_data`; pass it to `Trainer(...)`.")
        returns = self.resolve(state.hparams)
        build = functools.partial(programs.evaluate_program, self.compiler, self.contract,
                                  returns)
        args = (state, self.eval_data, self.keys)
        return self.compiler.program(programs.EVALUATE, build, *args)(*args)

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
        index = place(np.asarray(index, np.int32), self.compiler.by_member)
        mask = place(np.asarray(mask, bool), self.compiler.by_member)
        args = (state, source, index, mask)
        return self.compiler.program(programs.SELECT, programs.select_program, *args)(*args)

    def take(self, source: PopulationState, index: Any) -> PopulationState:
        """A population whose slot j is member `index[j]` of `source` (any size)."""
        index = place(np.asarray(index, np.int32), self.compiler.by_member)
        return self.compiler.program(programs.TAKE, programs.take_program, source,
                                     index)(source, index)

    def concatenate(self, states: Sequence[PopulationState]) -> PopulationState:
        """The members of several populations as one, in order."""
        states = tuple(states)
        if len(states) == 1:
            return states[0]
        return self.compiler.program(programs.CONCATENATE, programs.concatenate_program,
                                     *states)(*states)

    # -- hypergradients (jaxtune.hypergradient) ------------------------------------------

    def train_with_hypergradients(
            self, state: PopulationState, steps: int, names: Sequence[str], metric: str, *,
            scale: Mapping[str, str] | None = None, mode: str = "forward",
            window: int | None = None, donate: bool = False, aligned: bool | None = None,
            member_steps: Any = None
    ) -> tuple[PopulationState, jax.Array, dict[str, jax.Array], dict[str, jax.Array]]:
        """Like `train_with_metrics`, also returning d(eval metric after the chunk) / d hparams.

        The chunk's steps are `engine.step.member_step`'s, in a `lax.scan` that carries
        one tangent per name (forward mode) or is differentiated backwards (reverse
        mode, through its last `window` steps); `metric` is `evaluate_member`'s at the
        chunk's end. A member that diverges is rolled back as in `train`, its
        hypergradients NaN. See `jaxtune.hypergradient` for the modes.

        Args:
          state, steps, donate, aligned, member_steps: as for `train_with_metrics`.
          names: static; the dynamic float hyperparameters differentiated.
          metric: static; one of the names `evaluate` returns (differentiable: a loss).
          scale: static; name -> "log" or "linear" (default), the scale of each derivative.
          mode, window: static; "forward" or "reverse", and reverse mode's window.

        Returns:
          `(state, losses, metrics, grads)`, `grads` name -> float32 [M].

        Raises:
          ValueError: no `eval_data`, an unknown or integer name, an unknown metric, or a
            stream of batches whose chunk bound is shorter than `steps`.
        """
        from jaxtune.hypergradient import check_request

        steps = positive_int("steps", steps)
        returns = self.resolve(state.hparams)
        check_request(state.hparams, names, metric, returns.eval_names, self.eval_data is None,
                      mode, window)
        prepared = self._prepare(state, member_steps, steps, aligned)
        if prepared.limit is not None and steps > prepared.limit:
            raise ValueError(f"a chunk of {steps} steps is more than the stream of batches holds "
                             f"on the devices at once ({prepared.limit}); train with "
                             "hypergradients over shorter chunks (a smaller `eval_every`).")
        options = (tuple(names), metric, tuple(sorted((scale or {}).items())), mode, window)
        build = functools.partial(programs.hypergradient_program, self.compiler, self.contract,
                                  returns, self.source, steps, prepared.aligned, prepared.specs,
                                  options)
        args = (state, prepared.arguments, self.eval_data, self.keys)
        program = self.compiler.program(("train_hypergradient", steps, donate, prepared.aligned,
                                         options), build, *args, donate=(0,) if donate else ())
        return program(*args)


def checked_seeds(hparams: Mapping[str, jax.Array], seed: Any, num_seeds: int) -> np.ndarray:
    """`seed` as int32 [M], checked against the hyperparameters and `num_seeds`."""
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
    if seed.min() < 0 or seed.max() >= num_seeds:
        raise ValueError(
            f"`seed` indices must lie in [0, {num_seeds}) (num_seeds={num_seeds}), "
            f"got values in [{seed.min()}, {seed.max()}]."
        )
    return seed


def _root_key(key: Any) -> jax.Array:
    """The root PRNG key of `key`, an int or a PRNG key."""
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    raise TypeError(f"`key` must be an int or a PRNG key from `jax.random.key`, got {key!r}.")
