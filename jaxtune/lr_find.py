"""The learning-rate range test (`lr_find`): one short run with an exponentially growing rate.

The learning rate grows from `min_lr` to `max_lr` over `steps` steps,

    lr(t) = min_lr * (max_lr / min_lr) ** (t / (steps - 1)),   t = 0 .. steps - 1,

in every member at once: `seeds` seeds of every configuration of an optional small
`space` of other hyperparameters (one curve per weight decay, per momentum ...).
The growth is applied as a scale on the optimizer's updates, with `make_optimizer`
built at `learning_rate=min_lr`: for every optimizer whose update is proportional to
its learning rate (SGD, momentum, Adam(W), RMSProp, LAMB ...) that *is* the rate
`lr(t)`, and when `make_optimizer` feeds the rate into a schedule (e.g.
`jt.warmup_cosine_decay_schedule(0, learning_rate, ...)`) it drives the schedule's
peak value. A member stops once its smoothed loss exceeds `stop_factor` times its
best. Suggestions follow the usual rules (fastai, Lightning):

  * "steepest": where the smoothed loss falls fastest against log(lr), after the
    first tenth of the curve;
  * "minimum": the rate at the smoothed loss's minimum, divided by 10;
  * "valley": fastai's rule: a third of the way (and a half-third) into the longest
    stretch over which the smoothed loss keeps falling.

References:
  Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from jaxtune._checks import positive_int, real
from jaxtune.results import SweepResult
from jaxtune.space import Choice, Fixed, RandInt, Space, fixed
from jaxtune.strategies.base import CONTINUE, Decision, Report, Search, Strategy
from jaxtune.sweep import sweep

RULES = ("valley", "steepest", "minimum")


@dataclasses.dataclass(frozen=True, eq=False)
class LRFindResult:
    """The curves and suggestions of a learning-rate range test.

    Attributes:
      learning_rates: float [steps], the rate at every step.
      loss: float [N, steps], every member's training loss (NaN once stopped).
      smoothed: float [N, steps], the debiased exponential moving average of `loss`,
        NaN from the step where it exceeded `stop_factor` times its best on.
      trial: int [N], each member's configuration; seed: int [N], its seed.
      hparams: name -> [N], the other hyperparameters of each member.
      member_suggestions: rule -> float [N], each member's suggested rate.
      sweep: the underlying `SweepResult`.
    """

    learning_rates: np.ndarray
    loss: np.ndarray
    smoothed: np.ndarray
    trial: np.ndarray
    seed: np.ndarray
    hparams: dict[str, np.ndarray]
    member_suggestions: dict[str, np.ndarray]
    sweep: SweepResult

    @property
    def n_trials(self) -> int:
        return int(self.trial.max()) + 1

    @property
    def suggestions(self) -> dict[str, np.ndarray]:
        """rule -> float [T]: per configuration, the geometric mean over seeds."""
        return {rule: np.array([math.exp(np.nanmean(np.log(v[self.trial == t])))
                                for t in range(self.n_trials)])
                for rule, v in self.member_suggestions.items()}

    @property
    def spread(self) -> dict[str, np.ndarray]:
        """rule -> float [T]: per configuration, the standard deviation over seeds of log10(lr)."""
        return {rule: np.array([np.nanstd(np.log10(v[self.trial == t]))
                                for t in range(self.n_trials)])
                for rule, v in self.member_suggestions.items()}

    def suggestion(self, rule: str = "valley", trial: int = 0) -> float:
        """The suggested learning rate of configuration `trial` by `rule`."""
        if rule not in RULES:
            raise ValueError(f"`rule` must be one of {', '.join(map(repr, RULES))}, got "
                             f"rule={rule!r}.")
        if not (isinstance(trial, int | np.integer) and 0 <= trial < self.n_trials):
            raise ValueError(f"`trial` must be a configuration index 0..{self.n_trials - 1}, "
                             f"got trial={trial!r}.")
        return float(self.suggestions[rule][trial])

    def plot(self, ax: Any = None, rule: str = "valley"):
        """Smoothed loss against the learning rate (log scale), suggestions marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for t in range(self.n_trials):
            color = colors[t % len(colors)]
            label = ", ".join(f"{k}={self.hparams[k][self.trial == t][0]:g}"
                              for k in self.hparams) or "loss"
            for row, m in enumerate(np.flatnonzero(self.trial == t)):
                ax.plot(self.learning_rates, self.smoothed[m], color=color, alpha=0.8,
                        label=label if row == 0 else None)
            lr = self.suggestion(rule, t)
            ax.axvline(lr, color=color, linestyle="--", linewidth=1)
            ax.annotate(f"{rule}: {lr:.2g}", (lr, 0.98 - 0.06 * t), xycoords=("data", "axes fraction"),
                        color=color, fontsize=8, ha="left", va="top")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if finite.size:
            ax.set_ylim(finite.min() - 0.05 * np.ptp(finite),
                        min(finite.max(), 2 * np.nanmedian(self.smoothed[:, 0])))
        ax.legend(fontsize=8)
        return ax

    def __repr__(self) -> str:
        shown = ", ".join(f"{rule}={self.suggestions[rule][0]:.3g}" for rule in RULES)
        return (f"LRFindResult({self.n_trials} configuration(s) x {self.loss.shape[0] // self.n_trials}"
                f" seed(s), {self.learning_rates.size} steps; configuration 0: {shown})")


class _StopAboveBest(Strategy):
    """Stops a member once its chunk-mean loss exceeds `factor` times its best so far."""

    def __init__(self, factor: float):
        self.factor = factor

    def decide(self, search: Search, report: Report) -> Decision:
        curve = search.scores("train_loss", "min")
        stop = []
        for member in report.reached.tolist():
            column = int(search.record_index([member])[0])
            seen = curve[member, :column + 1]
            if not np.isfinite(seen[-1]) or seen[-1] > self.factor * np.nanmin(seen):
                stop.append(member)
        return Decision(stop=tuple(stop)) if stop else CONTINUE

    def __repr__(self) -> str:
        return f"_StopAboveBest({self.factor!r})"


def lr_find(
    loss_fn: Callable,
    init_params: Any,
    make_optimizer: Callable[..., optax.GradientTransformation],
    *,
    data: Any,
    batch_size: int | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    seeds: int = 3,
    space: Space | None = None,
    stop_factor: float = 4.0,
    smoothing: float = 0.98,
    learning_rate: str = "learning_rate",
    seed: int = 0,
    progress: bool = False,
    **sweep_kwargs: Any,
) -> LRFindResult:
    """Runs the learning-rate range test on every seed (and configuration) at once.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> import jaxtune as jt
      >>> x = np.linspace(-1, 1, 128, dtype=np.float32)[:, None]; y = 2 * x
      >>> loss = lambda w, batch: jnp.mean((batch[0] @ w - batch[1]) ** 2)
      >>> found = jt.lr_find(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
      ...                    data=(x, y), batch_size=32, min_lr=1e-4, max_lr=100.0, steps=100)
      >>> 1e-3 < found.suggestion("valley") < 3.0
      True

    Args:
      loss_fn, init_params, data, batch_size: as in `jt.sweep`.
      make_optimizer: `make_optimizer(learning_rate, **other_hparams)`; the rate may
        feed a schedule (the test then drives its peak value).
      min_lr, max_lr: the first and last learning rate, 0 < min_lr < max_lr.
      steps: static; steps of the test (the rate's growth spans them).
      seeds: static; seeds per configuration (the suggestions' spread is over them).
      space: a `jt.Space` of other hyperparameters, each a `choice`, `fixed` or
        `randint`: one curve per combination.
      stop_factor: a member stops once its smoothed loss exceeds this multiple of
        its best (> 1).
      smoothing: the exponential moving average's factor, in [0, 1).
      learning_rate: the name of `make_optimizer`'s learning-rate argument.
      seed: the root of all randomness.
      progress: draw a progress bar.
      **sweep_kwargs: passed on to `jt.sweep` (e.g. `devices`, `members_per_slice`).

    Returns:
      An `LRFindResult`: learning rates, raw and smoothed curves, suggestions per
      rule with their spread over seeds, `plot()`.
    """
    min_lr, max_lr = real("min_lr", min_lr), real("max_lr", max_lr)
    if min_lr <= 0:
        raise ValueError(f"`min_lr` must be positive, got min_lr={min_lr!r}; e.g. min_lr=1e-7.")
    if max_lr <= min_lr:
        raise ValueError(f"`max_lr` must be greater than `min_lr`, got min_lr={min_lr!r}, "
                         f"max_lr={max_lr!r}; the rate grows from min_lr to max_lr.")
    steps = positive_int("steps", steps)
    if steps < 2:
        raise ValueError(f"`steps` must be at least 2, got steps={steps}.")
    stop_factor = real("stop_factor", stop_factor)
    if stop_factor <= 1:
        raise ValueError(f"`stop_factor` must be greater than 1, got stop_factor={stop_factor!r};"
                         " e.g. 4.0 stops a member at four times its best loss.")
    smoothing = real("smoothing", smoothing)
    if not 0 <= smoothing < 1:
        raise ValueError(f"`smoothing` must lie in [0, 1), got smoothing={smoothing!r}.")
    space = Space() if space is None else space
    if not isinstance(space, Space):
        raise TypeError(f"`space` must be a jaxtune.Space or None, got {type(space).__name__}.")
    if learning_rate in space:
        raise ValueError(f"`space` must not contain the learning rate {learning_rate!r}: the "
                         "range test sets it; remove it, or pass `learning_rate=` naming another "
                         "argument.")
    for name in space.names:
        if not isinstance(space[name], Choice | Fixed | RandInt):
            raise TypeError(f"`space` dimension {name!r} is {space[name]!r}; the range test "
                            "draws one curve per combination, so list values with "
                            f"jt.choice([...]) (e.g. {name}=jt.choice([0.0, 1e-4])).")
    accepts = _accepted(make_optimizer)
    if accepts is not None and learning_rate not in accepts:
        raise ValueError(f"`make_optimizer` has no argument {learning_rate!r}; the range test "
                         "passes the learning rate by name: pass learning_rate='<its name>'.")

    growth = math.log(max_lr / min_lr) / (steps - 1)

    def driven(**hparams):
        own = hparams if accepts is None else {k: v for k, v in hparams.items() if k in accepts}
        return optax.chain(make_optimizer(**own),
                           optax.scale_by_schedule(lambda count: jnp.exp(growth * count)))

    full = Space({learning_rate: fixed(min_lr, static=False), **dict(space.items())})
    result = sweep(loss_fn, init_params, driven, full, data=data, batch_size=batch_size,
                   steps=steps, seeds=positive_int("seeds", seeds), seed=seed,
                   eval_every=max(1, steps // 25), metric="train_loss", mode="min",
                   strategy=_StopAboveBest(stop_factor), record_step_loss=True,
                   keep_params=False, progress=progress, **sweep_kwargs)
    rates = min_lr * np.exp(growth * np.arange(steps))
    loss = np.asarray(result.step_loss, np.float64)
    smoothed = _smooth(loss, smoothing, stop_factor)
    per_member = {rule: np.array([_suggest(rule, rates, row) for row in smoothed])
                  for rule in RULES}
    others = {name: result.hparams[name] for name in space.names}
    return LRFindResult(rates, loss, smoothed, result.trial, result.seed, others, per_member,
                        result)


def _accepted(fn: Callable) -> frozenset[str] | None:
    """The keyword names `fn` takes, or None if it takes any (**kwargs)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def _smooth(loss: np.ndarray, beta: float, stop_factor: float) -> np.ndarray:
    """Debiased EMA of each row, NaN from where it passes `stop_factor` x its best (or NaN)."""
    out = np.full_like(loss, np.nan)
    for row in range(loss.shape[0]):
        average, best = 0.0, np.inf
        for t, value in enumerate(loss[row]):
            if not np.isfinite(value):
                break
            average = beta * average + (1 - beta) * value
            smooth = average / (1 - beta ** (t + 1))
            if smooth > stop_factor * best:
                break
            best = min(best, smooth)
            out[row, t] = smooth
    return out


def _suggest(rule: str, rates: np.ndarray, smoothed: np.ndarray) -> float:
    valid = np.flatnonzero(np.isfinite(smoothed))
    if valid.size < 3:
        return float("nan")
    rates, losses = rates[valid], smoothed[valid]
    if rule == "minimum":
        return float(rates[np.argmin(losses)] / 10)
    if rule == "steepest":  # the first tenth is noise around the initial loss (as Lightning)
        slope = np.gradient(losses, np.log(rates))
        skip = losses.size // 10
        return float(rates[skip + np.argmin(slope[skip:])])
    # valley (fastai): the longest decreasing subsequence, a third and a half-third in
    n = losses.size
    longest = np.ones(n, np.int64)
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            longest[i] = longest[:i][higher].max() + 1
    end = int(np.argmax(longest))
    start = end - int(longest[end]) + 1
    sections = (end - start) / 3
    return float(rates[start + int(sections) + int(sections / 2)])
