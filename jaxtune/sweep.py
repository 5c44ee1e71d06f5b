"""`sweep`: sample a search space, train every configuration x seed, return results.

The one call on top of `Trainer`. Each static group of the space (an optimizer
name, a layer width ...) is one compiled program; inside a group the members run
in slices of `members_per_slice`, each slice `jit(shard_map(vmap(scan)))` over the
local devices, and Python regains control only every `eval_every` steps to
evaluate, record curves and draw progress.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax

from jaxtune.population import PopulationState, Trainer, default_eval_every
from jaxtune.results import SweepResult, guess_mode
from jaxtune.space import Space, Table

# Members per device per slice on a CPU. One core runs one slice's vmapped step:
# too narrow wastes the vectorisation, too wide grows compile time and cache
# pressure. Measured with `bench/sweep_speed.py --slice-sizes` on the digits MLP
# (1 device, N=32: 1 -> 2,837, 4 -> 3,491, 16 -> 4,014, 32 -> 3,995 member-steps/s).
CPU_MEMBERS_PER_DEVICE = 16


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive int, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {name}={value}.")
    return int(value)


def auto_members_per_slice(members: int, devices: Sequence[jax.Device]) -> int:
    """Slice size: the whole population on accelerators, a few members per core on CPU."""
    devices = list(devices)
    whole = _round_up(members, len(devices))
    if devices[0].platform == "cpu":
        return min(whole, CPU_MEMBERS_PER_DEVICE * len(devices))
    return whole


def _round_up(count: int, multiple: int) -> int:
    return math.ceil(count / multiple) * multiple


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    try:  # notebook widgets when they can be drawn; tqdm.auto warns when they cannot
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        pass
    return tqdm(total=total, unit="step", desc="sweep", leave=True)


def sweep(
    loss_fn: Callable,
    init_params: Any,
    make_optimizer: Callable[..., optax.GradientTransformation],
    space: Space,
    *,
    data: Any,
    batch_size: int,
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
    members_per_slice: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    record_step_loss: bool = False,
    keep_params: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Trains every configuration of `space` x `seeds` in parallel; returns the results.

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
        per-step PRNG key if it has a `key` parameter.
      init_params: initial parameters shared by every member, or `init_fn(key,
        **hparams) -> params`, called once per seed.
      make_optimizer: `make_optimizer(**hparams) -> optax.GradientTransformation`,
        built inside the traced step from each member's hyperparameters.
      space: the `Space` to search.
      data: a pytree of training arrays with a common leading example axis.
      batch_size: static; examples per step. Members with the same seed see the
        same minibatches, drawn without replacement within an epoch.
      steps: static; optimizer steps per member.
      trials: number of configurations for the "random", "sobol" and "halton"
        samplers; for "grid", None (the whole product) or the product's size.
      sampler: "random", "grid", "sobol" or "halton".
      grid_points: points per continuous dimension for the grid sampler (an int,
        or a dict from dimension name to int).
      configs: explicit configurations instead of sampling: a list of dicts or a
        dict of columns, validated against `space`.
      seeds: static; seeds per configuration (members = configurations x seeds).
      seed: the root of all randomness: sampling, initialisation, minibatches.
      eval_fn: `eval_fn(params, eval_data, **hparams)` returning a scalar or a dict
        of scalars, run on every member every `eval_every` steps. Defaults to the
        loss on `eval_data` ("eval_loss") when `eval_data` is given.
      eval_data: validation data, passed whole to `eval_fn`.
      eval_every: static; steps per chunk between records (default: about ten
        records, dividing `steps` when possible).
      metric: the metric that ranks configurations (default: the first eval metric,
        else "train_loss").
      mode: "min" or "max" (default: judged from the metric's name, e.g. "min" for
        names with "loss" or "error", "max" for "accuracy" or "f1"; an error if
        the name does not tell).
      members_per_slice: static; members trained at once per compiled call (default:
        all on accelerators, 16 per device on CPU). Results do not depend on it.
      devices: devices to shard the members over (default: all local devices).
      record_step_loss: also keep the training loss of every step.
      keep_params: keep every member's final parameters in the result.
      progress: draw a progress bar (tqdm) when tqdm is installed.

    Returns:
      A `SweepResult`: hyperparameter table, curves, final metrics, divergence
      flags, the best configuration, pandas export, plots, save/load.
    """
    start_time = time.perf_counter()
    if not isinstance(space, Space):
        raise TypeError(
            f"`space` must be a jaxtune.Space, got {type(space).__name__}; build one with "
            "jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1), ...)."
        )
    steps = _positive_int("steps", steps)
    seeds = _positive_int("seeds", seeds)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__} {seed!r}.")
    eval_every = default_eval_every(steps) if eval_every is None else _positive_int("eval_every", eval_every)
    if eval_every > steps:
        raise ValueError(f"`eval_every` must be at most `steps`={steps}, got eval_every={eval_every}.")
    if members_per_slice is not None:
        members_per_slice = _positive_int("members_per_slice", members_per_slice)
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"`mode` must be 'min' or 'max', got mode={mode!r}.")

    table = _configurations(space, configs, sampler, trials, grid_points, seed)

    num_trials = len(table)
    members = num_trials * seeds
    member_trial = np.repeat(np.arange(num_trials), seeds)
    member_seed = np.tile(np.arange(seeds), num_trials)
    member_table = table.take(member_trial)
    dynamic = member_table.dynamic()

    groups = []
    for static_values, trial_rows in table.static_groups():
        trainer = Trainer(
            loss_fn, make_optimizer, init_params=init_params, data=data, batch_size=batch_size,
            eval_fn=eval_fn, eval_data=eval_data, static_hparams=static_values,
            num_seeds=seeds, key=seed, devices=devices,
        )
        data, eval_data = trainer.data, trainer.eval_data  # one device copy for all groups
        rows = (np.asarray(trial_rows)[:, None] * seeds + np.arange(seeds)).reshape(-1)
        # Names, loss shape and eval_fn, checked abstractly before anything compiles.
        trainer.validate({k: v[rows[:1]] for k, v in dynamic.items()})
        groups.append((trainer, rows))

    eval_names = groups[0][0].eval_names
    metric_names = ("train_loss", *eval_names)
    metric = metric_names[1] if metric is None and len(metric_names) > 1 else metric or "train_loss"
    if metric not in metric_names:
        raise ValueError(
            f"`metric` must be one of {', '.join(map(repr, metric_names))}, got metric={metric!r}."
        )
    mode = mode or guess_mode(metric)

    # Slices: equal shapes within a group (the last one padded with copies), so
    # each group compiles its programs once.
    slices = []
    for trainer, rows in groups:
        size = members_per_slice or auto_members_per_slice(len(rows), trainer.mesh.devices.flat)
        size = _round_up(min(size, len(rows)), trainer.num_devices)
        for begin in range(0, len(rows), size):
            chunk = rows[begin:begin + size]
            padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk))])
            state = trainer.init(
                {k: v[padded] for k, v in dynamic.items()}, member_seed[padded]
            )
            slices.append((trainer, chunk, state))

    chunk_lengths = [eval_every] * (steps // eval_every) + ([steps % eval_every] if steps % eval_every else [])
    record_steps = np.cumsum(chunk_lengths)
    train_loss = np.full((members, len(chunk_lengths)), np.nan, np.float32)
    metrics = {name: np.full((members, len(chunk_lengths)), np.nan, np.float32) for name in eval_names}
    step_loss = np.full((members, steps), np.nan, np.float32) if record_step_loss else None

    bar = _progress_bar(progress, steps)
    try:
        for c, length in enumerate(chunk_lengths):
            begin_step = int(record_steps[c] - length)
            pending = []  # dispatch every slice before reading any back: no idle gaps
            for i, (trainer, rows, state) in enumerate(slices):
                state, losses = trainer.train(state, length)
                slices[i] = (trainer, rows, state)
                pending.append((rows, losses, trainer.evaluate(state) if eval_names else {}))
            for rows, losses, evaluated in pending:
                losses = np.asarray(losses)[: len(rows)]
                train_loss[rows, c] = losses.mean(axis=1)
                if step_loss is not None:
                    step_loss[rows, begin_step:begin_step + length] = losses
                for name, values in evaluated.items():
                    metrics[name][rows, c] = np.asarray(values)[: len(rows)]
            if bar is not None:
                current = (train_loss if metric == "train_loss" else metrics[metric])[:, c]
                current = current[np.isfinite(current)]
                best = (current.min() if mode == "min" else current.max()) if current.size else np.nan
                bar.set_postfix({f"best {metric}": f"{best:.4g}"})
                bar.update(length)
    finally:
        if bar is not None:
            bar.close()

    diverged = np.zeros(members, bool)
    diverged_step = np.full(members, -1, np.int32)
    for trainer, rows, state in slices:
        diverged[rows] = ~np.asarray(state.alive)[: len(rows)]
        diverged_step[rows] = np.asarray(state.diverged_step)[: len(rows)]

    total = time.perf_counter() - start_time
    compile_s = sum(trainer.compile_seconds for trainer, _ in groups)
    timing = {
        "compile_s": compile_s,
        "run_s": total - compile_s,
        "total_s": total,
        "compiles": float(sum(trainer.compiles for trainer, _ in groups)),
        "member_steps_per_s": members * steps / max(total - compile_s, 1e-9),
    }
    return SweepResult(
        hparams=dict(member_table.columns),
        trial=member_trial,
        seed=member_seed,
        steps=record_steps.astype(np.int64),
        train_loss=train_loss,
        metrics=metrics,
        diverged=diverged,
        diverged_step=diverged_step,
        metric=metric,
        mode=mode,
        params=_gather_params(slices) if keep_params else None,
        timing=timing,
        step_loss=step_loss,
    )


def _configurations(space: Space, configs, sampler, trials, grid_points, seed) -> Table:
    if configs is not None:
        if trials is not None:
            raise ValueError("pass either `configs` or `trials`, not both.")
        return space.table(configs)
    if sampler == "grid":
        return space.sample(trials, sampler="grid", points=grid_points, seed=seed)
    if not space.names:
        return space.sample(1, sampler=sampler, seed=seed)
    if trials is None:
        raise ValueError(
            f"`trials` is required with sampler={sampler!r}: how many configurations to draw "
            "(e.g. trials=32); or use sampler='grid'."
        )
    return space.sample(_positive_int("trials", trials), sampler=sampler, seed=seed)


def _gather_params(slices: list[tuple[Trainer, np.ndarray, PopulationState]]):
    """Every member's final params as one pytree [members, ...], or None.

    None when static groups have parameters of different structure or shape
    (e.g. a swept layer width): they cannot share one leading axis.
    """
    trees = [jax.tree_util.tree_map(lambda a, n=len(rows): np.asarray(a)[:n], state.params)
             for _, rows, state in slices]
    structures = {jax.tree_util.tree_structure(t) for t in trees}
    shapes = {tuple(a.shape[1:] for a in jax.tree_util.tree_leaves(t)) for t in trees}
    if len(structures) != 1 or len(shapes) != 1:
        return None
    order = np.argsort(np.concatenate([rows for _, rows, _ in slices]))
    return jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves)[order], *trees)
