"""`sweep`: sample a search space, train every configuration x seed, return results.

The one call on top of the runner. It checks every argument before anything
compiles, draws the configurations, plans the slices against the devices' memory,
and hands the loop to `Runner` with a strategy (the plain full-budget sweep unless
one is given). Each static group of the space (an optimizer name, a layer width
...) is one compiled program; Python regains control only at record points.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax

from jaxtune._checks import boolean, nonnegative_int, one_of, positive_int
from jaxtune.devices import (
    check_kept_memory,
    default_compilation_cache,
    kept_configurations,
    plan_slices,
)
from jaxtune.distributed import check_same_on_every_process
from jaxtune.engine import (
    Trainer,
    check_data_form,
    check_finite_leaves,
    default_eval_every,
    is_init_function,
    leading_length,
)
from jaxtune.engine.forms import check_chunk_form
from jaxtune.engine.sources import ORDER_ALGORITHM
from jaxtune.fingerprint import fingerprint_function, fingerprint_values
from jaxtune.results import RESERVED_COLUMNS, SweepResult, check_mode, check_names, guess_mode
from jaxtune.runner import (
    Checkpointer,
    ConfigSource,
    Groups,
    KeptTrees,
    MemberTable,
    Recorder,
    Runner,
    Slices,
)
from jaxtune.space import ConfigStream, Space, Table
from jaxtune.strategies.base import Search, Settings, Strategy
from jaxtune.stream import HostStream, is_stream

# Members per device per slice on a CPU. One core runs one slice's vmapped step:
# too narrow wastes the vectorisation, too wide grows compile time and cache
# pressure. Measured with `bench/sweep_speed.py --slice-sizes` on the digits MLP
# (1 device, N=32: 1 -> 2,837, 4 -> 3,491, 16 -> 4,014, 32 -> 3,995 member-steps/s).
CPU_MEMBERS_PER_DEVICE = 16


def sweep(
    loss_fn: Callable,
    init_params: Any,
    make_optimizer: Callable[..., optax.GradientTransformation],
    space: Space,
    *,
    data: Any,
    batch_size: int | None = None,
    steps: int,
    trials: int | None = None,
    sampler: str = "random",
    grid_points: int | Mapping[str, int] = 5,
    configs: Any = None,
    seeds: int = 1,
    seed: int = 0,
    eval_fn: Callable | None = None,
    eval_data: Any = None,
    eval_every: int | None = None,
    metric: str | None = None,
    mode: str | None = None,
    strategy: Strategy | None = None,
    members_per_slice: int | None = None,
    members_in_flight: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    record_step_loss: bool = False,
    keep_params: bool | int | str = True,
    progress: bool = True, chunk_form: str = "auto",
) -> SweepResult:
    """Trains every configuration of `space` x `seeds` in parallel; returns the results.

    Compiled programs are kept on disk (JAX's persistent compilation cache), so the same
    sweep run again in a new process compiles nothing: the first sweep of a process turns
    the cache on, in `$JAXTUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/jaxtune/xla`, else
    `~/.cache/jaxtune/xla` (call `jt.enable_compilation_cache(directory)` first for
    another), and JAX then caches every program the process compiles. A cache you set up
    for JAX yourself (`jax_compilation_cache_dir`) is left as it is; set the environment
    variable `JAXTUNE_COMPILATION_CACHE=0` to keep nothing on disk. The directory grows
    with every new program and may be deleted at any time; one that cannot be written to
    warns once, and the sweep runs without the cache.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> x = np.linspace(-1, 1, 128, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> space = jt.Space(learning_rate=jt.loguniform(1e-3, 1.0))
      >>> result = jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                   space, data=(x, y), batch_size=32, steps=100, trials=8, seeds=2,
      ...                   progress=False)
      >>> result.n_members
      16
      >>> result.best.hparams["learning_rate"] > 0.01
      True

    Args:
      loss_fn: `loss_fn(params, batch, **hparams)` returning a scalar loss or
        `(loss, aux)`; it receives the hyperparameters its signature names, and a
        per-step PRNG key if it has a `key` parameter. A dict `aux` of scalars is
        recorded as training-metric curves in `result.metrics`. With a
        `model_state` parameter (BatchNorm statistics ...) it returns `(loss,
        (new_model_state, metrics))`; see `jt.Trainer`'s module docs.
      init_params: initial parameters shared by every member (an Equinox module,
        an NNX state or a Linen variable dict works as it is: only its inexact
        arrays train), or `init_fn(key, **hparams) -> params`, called once per
        seed; `(params, model_state)` when `loss_fn` takes `model_state`.
      make_optimizer: `make_optimizer(**hparams) -> optax.GradientTransformation`,
        built inside the traced step from each member's hyperparameters. Its
        `update` gets the minibatch loss as `value=` when it takes extra arguments
        (so `reduce_on_plateau` works).
      space: the `Space` to search.
      data: a pytree of training arrays with a common leading example axis, or a
        function `batch_fn(key, step) -> batch` traced inside the compiled step
        (on-device augmentation, synthetic data, data already on the devices):
        `key` is a PRNG key of (seed, step) and `step` the member's int32 step, so
        members with the same seed see the same batches; or an iterable of batches
        (a generator, a PyTorch `DataLoader`, grain, `tf.data` as NumPy), batch k
        feeding step k of every member (see `jaxtune.stream`).
      batch_size: static; examples per step (not used with a `batch_fn` or an
        iterable of batches). Members with the same seed see the same
        minibatches, drawn without replacement within an epoch.
      steps: static; the budget: optimizer steps per member.
      trials: number of configurations for the "random", "sobol" and "halton"
        samplers; for "grid", None (the whole product) or the product's size. When
        every dimension is a `choice`, `fixed` or `randint`, None means the whole
        product for every sampler.
      sampler: "random", "grid", "sobol" or "halton".
      grid_points: points per continuous dimension for the grid sampler (an int,
        or a dict from dimension name to int).
      configs: explicit configurations instead of sampling: a list of dicts or a
        dict of columns, validated against `space`.
      seeds: static; seeds per configuration (members = configurations x seeds).
      seed: the root of all randomness: sampling, initialisation, minibatches.
      eval_fn: `eval_fn(params, eval_data, **hparams)` returning a scalar or a dict
        of scalars, run on every member at every record point. Defaults to the loss
        on `eval_data` ("eval_loss") when `eval_data` is given.
      eval_data: validation data, passed whole to `eval_fn`.
      eval_every: static; steps between record points (default: about ten records,
        dividing `steps` when possible). Strategies decide at record points.
      metric: the metric that ranks configurations (default: the first eval metric,
        else "train_loss").
      mode: "min" or "max" (default: judged from the metric's name, e.g. "min" for
        names with "loss" or "error", "max" for "accuracy" or "f1"; an error if
        the name does not tell).
      strategy: a `jt.Strategy` deciding at every record point (stop, copy, start
        new configurations), e.g. `jt.MedianStopping()`; default: train every
        configuration to the full budget. An exception the strategy raises (or a
        `Decision` refused) reaches the caller as itself, with the partial
        `SweepResult` as its `.result`, as `jt.SweepInterrupted` carries it.
      members_per_slice: static; members trained by one compiled call (default: all
        of them on accelerators, as memory allows; 16 per device on CPU). A
        member's result does not depend on it up to floating-point reassociation
        (XLA may vectorise a batch of 16 and one of 32 differently: expect ~1e-6
        relative differences, growing with steps under adaptive optimizers).
      members_in_flight: members on the devices at once (default: two slices, as
        memory allows); the rest wait their turn, so peak memory follows this, not
        the population.
      devices: devices to shard the members over (default: all local devices).
      checkpoint_dir: a directory to checkpoint into at record points; called again
        with the same arguments, the sweep resumes from the last checkpoint and
        returns exactly the result of an uninterrupted run. Ctrl-C stops at the
        next record point and raises `jt.SweepInterrupted` with the partial result.
        A checkpoint is resumed only by the same sweep, judged by a fingerprint of
        the arguments (`jaxtune.fingerprint`): `data`, `eval_data` and `init_params`
        by value (a hash of every byte of an array up to 64 MiB, of rows spread over
        a larger one); functions (`loss_fn`, `make_optimizer`, `eval_fn`, a
        `batch_fn`, an `init_fn`) by name and code: bytecode, constants, defaults,
        closures and the globals they use, arrays among them by value, and the
        helpers they call; not by comments, docstrings or line numbers, so fixing a
        comment keeps the checkpoint, changing the code (or the minor version of
        Python) refuses it; an iterable of batches by the shapes of its batches; a
        strategy by its class and `config()`. Another sweep's checkpoint is refused,
        as is one written by a jaxtune that fingerprinted differently (saying so),
        and a second sweep on a `checkpoint_dir` in use (`sweep.lock` there names
        the process holding it).
      checkpoint_every: write the checkpoint every this many rounds of record points.
      record_step_loss: also keep the training loss of every step.
      keep_params: which members' final parameters (and model state) the result keeps:
        True, every member's (`result.params`, stacked, or `result.member_params` when
        static groups differ in shape); "best", the members of the best configuration;
        an int k, those of the best k configurations, by `metric` and the result's
        ranking rules (tracked as members finish: host memory holds k configurations
        plus those still training); False, none. Read one with `result.params_of(member)`
        or `result.best_params`. Refused before anything trains when the kept
        parameters would take more than half of the host memory available (Linux's
        MemAvailable, else `os.sysconf`), with the figure and the k that fits.
      progress: draw a progress bar (tqdm) when tqdm is installed.
      chunk_form: how each static group's chunks of steps between record points run:
        "auto" (default) reads the traced step: on a CPU a step holding a convolution runs
        as a host loop of one-step programs, each member unbatched ("loop+unroll", many
        times faster there), anything else as one `lax.scan` vmapped over the members
        ("scan+vmap"); "measure" times every form on the first chunk of each program and
        keeps the fastest for the process; or one form of `jaxtune.engine.forms.FORMS`.
        Results agree up to float rounding whatever the form (docs: "How a chunk runs" in
        the devices guide).

    Returns:
      A `SweepResult`: hyperparameter table, curves, per-member status, final
      metrics, divergence flags, the best configuration, pandas export, plots,
      save/load.
    """
    default_compilation_cache()  # before anything compiles, so that every program is kept
    space, strategy = _checked_space(space), _checked_strategy(strategy)
    steps, seeds = positive_int("steps", steps), positive_int("seeds", seeds)
    seed = nonnegative_int("seed", seed)
    eval_every = _checked_eval_every(eval_every, steps)
    members_per_slice, members_in_flight = _checked_slices(members_per_slice, members_in_flight)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    mode, record_step_loss, progress = _checked_flags(mode, record_step_loss, keep_params,
                                                      progress)
    _check_data(data, eval_data, init_params)
    # Many processes: each must make this same call, checked before the first collective.
    _check_same_call(
        loss_fn=loss_fn, init_params=init_params, make_optimizer=make_optimizer, space=space,
        data=data, batch_size=batch_size, steps=steps, trials=trials, sampler=sampler,
        grid_points=grid_points, configs=configs, seeds=seeds, seed=seed, eval_fn=eval_fn,
        eval_data=eval_data, eval_every=eval_every, metric=metric, mode=mode,
        strategy=strategy, members_per_slice=members_per_slice,
        members_in_flight=members_in_flight, devices=devices,
        checkpoint_every=checkpoint_every, record_step_loss=record_step_loss,
        keep_params=keep_params)
    owned_stream = is_stream(data) and not isinstance(data, HostStream)
    if owned_stream:
        data = HostStream(data)  # one reader, shared by every static group

    table = _configurations(space, configs, sampler, trials, grid_points, seed)
    make_trainer = _trainer_factory(loss_fn, make_optimizer, init_params, data, batch_size,
                                    eval_fn, eval_data, seeds, seed, devices, chunk_form)
    # Every static group's functions, checked abstractly before anything compiles.
    probes, (eval_names, aux_names), (metric, mode) = _checked_functions(
        table, make_trainer, metric, mode, keep_params, seeds)
    fingerprint = None if checkpoint_dir is None else _fingerprint(
        loss_fn, init_params, make_optimizer, space, table, data, eval_fn, eval_data,
        batch_size=batch_size, steps=steps, seeds=seeds, seed=seed, eval_every=eval_every,
        sampler=sampler, strategy=strategy_identity(strategy), metric=metric, mode=mode,
        keep_params=keep_params, record_step_loss=record_step_loss)
    runner = _runner(
        strategy, probes, make_trainer, _config_source(space, table, configs, sampler, seed,
                                                       grid_points),
        settings=dict(space=space, configurations=table, seeds=seeds, steps=steps,
                      eval_every=eval_every, metric=metric, mode=mode),
        metrics=(eval_names, aux_names), record_step_loss=record_step_loss,
        keep_params=keep_params, progress=progress, members_per_slice=members_per_slice,
        members_in_flight=members_in_flight, checkpoint_dir=checkpoint_dir,
        fingerprint=fingerprint, checkpoint_every=checkpoint_every)
    try:
        with runner.checkpoint or contextlib.nullcontext():  # holds `checkpoint_dir` meanwhile
            return runner.run()
    finally:
        if owned_stream:
            data.close()


def _runner(strategy: Strategy, probes: Mapping[Trainer, Any], make_trainer: Callable,
            configs: ConfigSource, *, settings: dict[str, Any],
            metrics: tuple[tuple[str, ...], tuple[str, ...]], record_step_loss: bool,
            keep_params: Any, progress: bool, members_per_slice: int | None,
            members_in_flight: int | None, checkpoint_dir: Any,
            fingerprint: dict[str, Any] | None, checkpoint_every: int) -> Runner:
    """The runner, built whole: the strategy's view first (its `setup` and its needs plan
    the slices), then the slices, the checkpoint and the loop."""
    first = next(iter(probes))
    settings = Settings(**settings, devices=first.num_devices)
    eval_names, aux_names = metrics
    members = MemberTable(settings.space, settings.seeds)
    recorder = Recorder(settings.steps, settings.eval_every, ("train_loss", *eval_names),
                        record_step_loss, settings.space.dynamic_names, aux_names)
    search = Search(settings, members, recorder, configs)
    strategy.setup(search)
    size, in_flight = plan_slices(
        len(settings.configurations) * settings.seeds, list(first.mesh.devices.flat),
        max(t.member_bytes(h) for t, h in probes.items()), members_per_slice,
        members_in_flight, strategy.members_in_flight(search), CPU_MEMBERS_PER_DEVICE)
    checkpoint = None if checkpoint_dir is None else Checkpointer(checkpoint_dir, {
        **fingerprint, "members_per_slice": size, "members_in_flight": in_flight,
        "devices": first.num_devices})
    groups = Groups(make_trainer)
    return Runner(
        settings=settings, strategy=strategy, search=search, members=members,
        recorder=recorder, configs=configs,
        slices=Slices(groups, members, first.num_devices, size, in_flight),
        kept=KeptTrees(keep_params, members, groups), eval_names=eval_names,
        aux_names=aux_names, progress=progress, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every)


def _checked_space(space: Any) -> Space:
    if not isinstance(space, Space):
        raise TypeError(
            f"`space` must be a jaxtune.Space, got {type(space).__name__}; build one with "
            "jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1), ...)."
        )
    check_names({name: None for name in space.names}, {})
    return space


def _checked_strategy(strategy: Any) -> Strategy:
    strategy = Strategy() if strategy is None else strategy
    if not isinstance(strategy, Strategy):
        raise TypeError(f"`strategy` must be a jt.Strategy (e.g. jt.MedianStopping()), got "
                        f"{type(strategy).__name__}.")
    return strategy


def _checked_eval_every(eval_every: Any, steps: int) -> int:
    if eval_every is None:
        return default_eval_every(steps)
    eval_every = positive_int("eval_every", eval_every)
    if eval_every > steps:
        raise ValueError(f"`eval_every` must be at most `steps`={steps}, got eval_every={eval_every}.")
    return eval_every


def _checked_slices(members_per_slice: Any, members_in_flight: Any
                    ) -> tuple[int | None, int | None]:
    """`members_per_slice` and `members_in_flight`: None (planned) or positive ints."""
    return tuple(None if value is None else positive_int(name, value) for name, value in (
        ("members_per_slice", members_per_slice), ("members_in_flight", members_in_flight)))


def _checked_flags(mode: Any, record_step_loss: Any, keep_params: Any, progress: Any
                   ) -> tuple[str | None, bool, bool]:
    """`mode` (None: judged from the metric), the two booleans; `keep_params` checked."""
    kept_configurations(keep_params)
    return (None if mode is None else check_mode(mode),
            boolean("record_step_loss", record_step_loss), boolean("progress", progress))


def _config_source(space: Space, table: Table, configs: Any, sampler: str, seed: int,
                   points: Any) -> ConfigSource:
    """Where strategies draw new configurations: the sampler, past the first `table`
    (none with explicit `configs` or a grid)."""
    stream = None if configs is not None or sampler == "grid" else ConfigStream(
        space, sampler=sampler, seed=seed, points=points, position=len(table))
    return ConfigSource(space, stream)


def _check_same_call(*, space: Space, strategy: Strategy, devices: Any, **arguments: Any
                     ) -> None:
    """Refuses processes making different calls (see `check_same_on_every_process`).

    The strategy by its declared identity (`strategy_identity`), as a checkpoint knows it;
    with one process nothing is compared, and a strategy need not declare one.
    """
    identity = strategy_identity(strategy) if jax.process_count() > 1 else None
    check_same_on_every_process("`jt.sweep`", {
        **arguments, "space": repr(space), "strategy": json.dumps(identity, default=str),
        "devices": None if devices is None else [d.id for d in devices]})


def _trainer_factory(loss_fn, make_optimizer, init_params, data, batch_size, eval_fn,
                     eval_data, seeds, seed, devices, chunk_form="auto"
                     ) -> Callable[[Mapping[str, Any]], Trainer]:
    """`make_trainer(static)`: the trainer of a static group; every group shares one device
    copy of the data. A bad `chunk_form` is refused here, before anything compiles."""
    shared: dict[str, Any] = {}
    chunk_form = check_chunk_form(chunk_form)

    def make_trainer(static: Mapping[str, Any]) -> Trainer:
        trainer = Trainer(
            loss_fn, make_optimizer, init_params=init_params,
            data=shared.get("data", data), batch_size=batch_size, eval_fn=eval_fn,
            eval_data=shared.get("eval_data", eval_data), static_hparams=static,
            num_seeds=seeds, key=seed, devices=devices, chunk_form=chunk_form,
        )
        shared.update(data=data if trainer.data is None else trainer.data,  # one device copy
                      eval_data=trainer.eval_data)
        return trainer

    return make_trainer


def _checked_functions(table: Table, make_trainer: Callable, metric: str | None,
                       mode: str | None, keep_params: Any, seeds: int) -> tuple:
    """Every static group's trainer probed: `(probes, (eval_names, aux_names), (metric,
    mode))`, and the kept parameters checked against the host's memory."""
    probes = _probes(table, make_trainer)
    names = _metric_names(probes, table.space)
    ranking = _ranking(metric, mode, *names)
    check_kept_memory(keep_params, len(table) * seeds, seeds,
                      [(r.params, r.model_state) for r in (t.resolve(h) for t, h in probes.items())])
    return probes, names, ranking


def _probes(table: Table, make_trainer: Callable) -> dict[Trainer, dict[str, Any]]:
    """A trainer per static group of `table`, with one configuration's dynamic values.

    Raises ValueError when `eval_fn` returns other metrics for another group.
    """
    probes = {}
    for static, rows in table.static_groups():
        trainer = make_trainer(static)
        one = {k: v[rows[:1]] for k, v in table.dynamic().items()}
        probes[trainer] = one
        names = trainer.eval_names(one)
        first_trainer, first_one = next(iter(probes.items()))
        if names != first_trainer.eval_names(first_one):
            raise ValueError(f"`eval_fn` returns different metrics for static group {static}: "
                             f"{names}; return the same keys for every configuration.")
    return probes


def _metric_names(probes: Mapping[Trainer, Any], space: Space
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of `eval_fn`'s metrics and of `loss_fn`'s aux metrics, checked."""
    first_trainer, first_hparams = next(iter(probes.items()))
    eval_names = first_trainer.eval_names(first_hparams)
    aux_names = first_trainer.aux_names(first_hparams)
    for trainer, one in probes.items():
        if trainer.aux_names(one) != aux_names:
            raise ValueError("`loss_fn` returns different training metrics for different "
                             "static groups; return the same keys for every configuration.")
    for name in aux_names:
        if name in RESERVED_COLUMNS:
            raise ValueError(f"`loss_fn` returns a training metric named {name!r}, which is a "
                             "column of the result tables; rename it.")
    for name in eval_names:
        if name in RESERVED_COLUMNS:
            raise ValueError(f"`eval_fn` returns a metric named {name!r}, which is a column of "
                             "the result tables; rename it (e.g. 'eval_loss').")
    check_names({name: None for name in space.names}, dict.fromkeys((*eval_names, *aux_names)))
    return tuple(eval_names), tuple(aux_names)


def _ranking(metric: str | None, mode: str | None, eval_names: Sequence[str],
             aux_names: Sequence[str]) -> tuple[str, str]:
    """The sweep's (metric, mode): the first eval metric (else "train_loss") by default."""
    metric_names = ("train_loss", *eval_names, *aux_names)
    metric = metric_names[1] if metric is None and len(metric_names) > 1 else metric or "train_loss"
    if metric not in metric_names:
        raise ValueError(
            f"`metric` must be one of {', '.join(map(repr, metric_names))}, got metric={metric!r}."
        )
    return metric, mode or guess_mode(metric)


def strategy_identity(strategy: Strategy) -> dict[str, Any]:
    """What identifies a strategy, to a checkpoint and between processes: its class and
    its `config()`.

    Raises TypeError (from `Strategy.config`) for a strategy whose constructor arguments
    cannot be read back, with the fix.
    """
    kind = type(strategy)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", "config": strategy.config()}


def _check_data(data: Any, eval_data: Any, init_params: Any) -> None:
    """Data and initial parameters: numeric arrays without NaN, before anything compiles."""
    if check_data_form(data) is None and not is_stream(data):
        leading_length("data", data)
        check_finite_leaves("data", data)
    if eval_data is not None:
        leading_length("eval_data", eval_data)
        check_finite_leaves("eval_data", eval_data)
    if not is_init_function(init_params) and init_params is not None:
        check_finite_leaves("init_params", init_params)


def _configurations(space: Space, configs, sampler, trials, grid_points, seed) -> Table:
    if configs is not None:
        if trials is not None:
            raise ValueError("pass either `configs` or `trials`, not both.")
        return space.table(configs)
    one_of("sampler", sampler, ("random", "grid", "sobol", "halton"))
    if sampler == "grid":
        return space.sample(trials, sampler="grid", points=grid_points, seed=seed)
    if not space.names:
        return space.sample(1, sampler=sampler, seed=seed)
    if trials is None:
        if space.size is not None:  # every dimension discrete: the whole product
            return space.sample(sampler="grid", points=max(space.size, 1), seed=seed)
        raise ValueError(
            f"`trials` is required with sampler={sampler!r}: how many configurations to draw "
            "(e.g. trials=32); or use sampler='grid'."
        )
    return space.sample(positive_int("trials", trials), sampler=sampler, seed=seed)


def _fingerprint(loss_fn, init_params, make_optimizer, space, table, data, eval_fn, eval_data,
                 **settings) -> dict[str, Any]:
    """What identifies a sweep, for refusing another sweep's checkpoint.

    Functions (`loss_fn`, `make_optimizer`, `eval_fn`, a `batch_fn` or an `init_fn`) by
    name and code (`fingerprint_function`); `data`, `eval_data` and `init_params` by value
    (`fingerprint_values`); an iterable of batches by the shapes of a batch; and how
    minibatches are shuffled (`sources.ORDER_ALGORITHM`).
    """
    init = fingerprint_function(init_params) if is_init_function(init_params) else \
        fingerprint_values(init_params)
    return {
        "space": repr(space), "loss_fn": fingerprint_function(loss_fn),
        "make_optimizer": fingerprint_function(make_optimizer), "init_params": init,
        "eval_fn": fingerprint_function(eval_fn),
        "data": fingerprint_function(data) if callable(data) else repr(data) if is_stream(data)
        else fingerprint_values(data),
        "eval_data": fingerprint_values(eval_data),
        "configurations": json.dumps(table.to_dict(), default=str),
        "minibatch_order": ORDER_ALGORITHM,
        **settings,
    }
