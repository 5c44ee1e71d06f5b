"""Plots of a `SweepResult`: its curves, its final metric against each hyperparameter, and
a hyperparameter's schedule.

matplotlib is imported only when a plot is drawn (``pip install 'jaxtune[demo]'``); the
figures are made without pyplot (no global figure state, no window opens), except
`plot_schedule`'s default axes.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxtune.results import intervals
from jaxtune.results.columns import format_value, require

if TYPE_CHECKING:
    from jaxtune.results.result import SweepResult


def plot(result: SweepResult, metric: str | None, hparam: str | None,
         path: str | os.PathLike | None):
    """Training curves and final metric against each hyperparameter (see `SweepResult.plot`)."""
    require("matplotlib", "SweepResult.plot")
    from matplotlib.figure import Figure

    metric = result._check_metric(metric)
    numeric = [name for name in result.hparams if _numeric(result.hparams[name]) is not None]
    if hparam is None:
        hparam = "learning_rate" if "learning_rate" in numeric else next(iter(numeric), None)
    elif hparam not in numeric:
        raise ValueError(
            f"`hparam` must name a numeric hyperparameter {numeric}, got hparam={hparam!r}."
        )
    # a panel for each hyperparameter that varies: numeric ones on their scale, the others
    # (an optimizer family, a string choice) with a tick per value
    panels = [name for name in result.hparams if np.unique(_axis(result.hparams[name])[0]).size > 1]

    _show_figures_in_notebooks()
    figure = Figure(figsize=(4.8 * (1 + len(panels)) + 1.0, 4.0), layout="constrained")
    axes = figure.subplots(1, 1 + len(panels), squeeze=False)[0]
    _plot_curves(result, figure, axes[0], hparam)
    _plot_finals(result, metric, dict(zip(panels, axes[1:])))
    if path is not None:
        figure.savefig(os.fspath(path), dpi=110)
    return figure


def _plot_curves(result: SweepResult, figure: Any, ax: Any, hparam: str | None) -> None:
    """The left panel: every member's training loss against step, coloured by `hparam`;
    diverged members dashed grey, ending in an x; members stopped early end in a bar."""
    from matplotlib import cm, colors
    from matplotlib.lines import Line2D

    steps, n = result.steps, result.n_members
    alive = np.flatnonzero(~result.diverged)
    dead = np.flatnonzero(result.diverged)
    marker = "o" if steps.size == 1 else None
    alpha = 0.8 if n <= 50 else max(0.15, 0.8 * (50 / n) ** 0.5)
    if alive.size:
        lines = ax.plot(steps, result.train_loss[alive].T, lw=1.1, alpha=alpha, marker=marker)
        if hparam is not None:
            values = _numeric(result.hparams[hparam])
            norm = _norm(colors, values)
            mappable = cm.ScalarMappable(norm=norm, cmap="viridis")
            for line, member in zip(lines, alive):
                line.set_color(mappable.to_rgba(values[member]))
            mappable.set_array(values)
            figure.colorbar(mappable, ax=ax, label=hparam)
        else:
            for line in lines:
                line.set_color("C0")
    handles, labels = [], []
    if dead.size:
        ax.plot(steps, result.train_loss[dead].T, color="0.6", ls="--", lw=0.9, marker=marker)
        # an x at each diverged member's last finite point, where its curve stops
        x, y = _last_finite(steps, result.train_loss[dead])
        ax.plot(x, y, ls="none", marker="x", color="0.45", ms=5)
        handles.append(Line2D([], [], color="0.6", ls="--", marker="x", mec="0.45"))
        labels.append(f"diverged: {dead.size} of {n}")
    stopped = np.flatnonzero(result.status == "stopped")
    if stopped.size:
        # a bar where each stopped member's curve ends (NaN after it)
        x, y = _last_finite(steps, result.train_loss[stopped])
        ax.plot(x, y, ls="none", marker="|", color="0.25", ms=8, mew=1.2)
        handles.append(Line2D([], [], ls="none", marker="|", color="0.25", ms=8, mew=1.2))
        labels.append(f"stopped early: {stopped.size} of {n}")
    if handles:
        ax.legend(handles=handles, labels=labels, loc="upper right", fontsize=8)
    finite = result.train_loss[np.isfinite(result.train_loss)]
    if finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{n} members ({result.n_trials} trials × {result.n_seeds} seeds)")


def _plot_finals(result: SweepResult, metric: str, panels: dict[str, Any]) -> None:
    """One panel per hyperparameter (name -> axes; a tick per category for one that is not
    numeric, `_axis`): each trial's final `metric` (mean and
    95% t-interval over seeds) against it; completed trials filled, those stopped early hollow, the
    best starred."""
    try:
        metric, mode = result._resolve(metric, None)
    except ValueError:
        mode = None  # direction unknown: plot the metric, star no best
    stats = result._trial_stats(metric, mode or "min")
    shown = np.isfinite(stats.mean)
    completed = shown & (stats.status == "completed")
    early = shown & ~completed  # stopped early or still running: score when it stopped
    first = stats.order[0]
    best = first if mode is not None and completed[first] else None
    yerr, ylabel = _error_bars(stats, metric)
    for name, ax in panels.items():
        values, categories = _axis(result.hparams[name])
        x = values[stats.first]
        ax.errorbar(
            x[completed], stats.mean[completed], yerr=yerr[:, completed], fmt="o",
            ms=4, color="C0", ecolor="0.55", elinewidth=1, capsize=2,
        )
        if early.any():
            ax.errorbar(
                x[early], stats.mean[early], yerr=yerr[:, early], fmt="o", ms=4,
                mfc="none", color="C0", ecolor="0.75", elinewidth=1, capsize=2,
                label="stopped early",
            )
        if best is not None:
            ax.plot(x[best], stats.mean[best], marker="*", ms=14, color="C3",
                    ls="none", label="best", zorder=3)
        if best is not None or early.any():
            ax.legend(loc="best", fontsize=8)
        if not shown.all():
            missing = int((~shown).sum())
            ax.set_title(
                f"{missing} trial{'s' if missing > 1 else ''} not shown (diverged or NaN)",
                fontsize=9, color="0.35",
            )
        if categories is None:
            _set_hparam_axis(ax, values)
        else:
            ax.set_xticks(np.arange(len(categories)), categories)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        means = stats.mean[shown]
        if means.size and np.all(means > 0) and means.max() > 100 * means.min():
            ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(ylabel)


def _error_bars(stats: Any, metric: str) -> tuple[np.ndarray, str]:
    """The error bars [2, T] (below, above the mean) of the metric panels, each trial's
    95% t-interval over its seeds (none for one seed), and the y label that says so."""
    bounds = intervals.trial_intervals(stats.final, stats.inverse, stats.trials.size, "t", 0.95)
    yerr = np.stack([stats.mean - bounds.low, bounds.high - stats.mean])
    yerr = np.where(np.isfinite(yerr), yerr, 0.0)
    counts = np.unique(stats.count[bounds.defined])
    if counts.size == 0:
        return yerr, f"final {metric}"
    seeds = f"{counts[0]}" if counts.size == 1 else f"{counts[0]}–{counts[-1]}"
    return yerr, f"final {metric} (mean, bars: {bounds.label} over {seeds} seeds)"


def plot_schedule(result: SweepResult, name: str | None, members: Any, ax: Any):
    """Hyperparameter `name` over steps, copies marked (see `SweepResult.plot_schedule`)."""
    require("matplotlib", "plot_schedule")
    import matplotlib.pyplot as plt

    if not result.hparam_history:
        raise ValueError("this result has no `hparam_history` to plot.")
    name = next(iter(result.hparam_history)) if name is None else name
    if name not in result.hparam_history:
        raise ValueError(f"`name` must be one of {sorted(result.hparam_history)}, got "
                         f"name={name!r}.")
    history = result.hparam_history[name]
    members = np.arange(result.n_members) if members is None else np.asarray(members, int)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for m in members:
        ax.plot(result.steps, history[m], drawstyle="steps-post", alpha=0.7, linewidth=1)
    for step, target, source in (result.lineage if result.lineage is not None else []):
        if target in members:
            column = int(np.searchsorted(result.steps, step))
            after = min(column + 1, result.steps.size - 1)
            ax.plot([step, step], [history[source, column], history[target, after]],
                    ":", color="grey", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    positive = history[np.isfinite(history)]
    if positive.size and np.all(positive > 0) and positive.max() / positive.min() > 20:
        ax.set_yscale("log")
    return ax


def _axis(column: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """Where a hyperparameter column's values lie on a panel's x axis: the values, when
    numeric (categories None); else each value's index among the distinct values, shown
    as text in order of first appearance (the categories)."""
    values = _numeric(column)
    if values is not None:
        return values, None
    shown = np.array([str(v) for v in column], dtype=object)
    categories = list(dict.fromkeys(shown.tolist()))
    return np.array([categories.index(v) for v in shown], np.float64), categories


def _numeric(column: np.ndarray) -> np.ndarray | None:
    """A hyperparameter column as float64 if it is numeric (not bool), else None."""
    if column.dtype.kind in "iuf":
        return column.astype(np.float64)
    if column.dtype == object and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in column
    ):
        return column.astype(np.float64)
    return None


# Scales for hyperparameter axes and colours: log once positive values span more than a
# decade; symmetric-log (linear near 0) for values with 0 or negatives only from two
# decades on, as its linear region around 0 takes room of its own.
_LOG_SPAN = 10.0
_SYMLOG_SPAN = 100.0
_CATEGORICAL_MAX = 8  # at most this many distinct values: a tick at each one


def _scale(values: np.ndarray) -> tuple[str, float | None]:
    """("log" | "symlog" | "linear", the symlog linthresh) for a numeric column."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "linear", None
    magnitudes = np.abs(values[values != 0])
    if magnitudes.size == 0:
        return "linear", None
    low, high = float(magnitudes.min()), float(magnitudes.max())
    if np.all(values > 0):
        return ("log", None) if high > _LOG_SPAN * low else ("linear", None)
    if high >= _SYMLOG_SPAN * low:
        return "symlog", low
    return "linear", None


def _set_hparam_axis(ax: Any, values: np.ndarray) -> None:
    """The x axis of a metric-vs-hyperparameter panel: scale, and ticks at few values."""
    scale, linthresh = _scale(values)
    if scale == "symlog":
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
    else:
        ax.set_xscale(scale)
    distinct = np.unique(values[np.isfinite(values)])
    if 1 < distinct.size <= _CATEGORICAL_MAX:
        from matplotlib.ticker import NullLocator

        ax.set_xticks(distinct, [format_value(float(v)) for v in distinct])
        ax.xaxis.set_minor_locator(NullLocator())


def _norm(colors: Any, values: np.ndarray):
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scale, linthresh = _scale(values)
    if low > 0:
        if low == high:
            low, high = low / 2, high * 2
        return colors.LogNorm(vmin=low, vmax=high)
    if scale == "symlog":
        return colors.SymLogNorm(linthresh=linthresh, linscale=0.5, vmin=low, vmax=high, base=10)
    if low == high:
        low, high = low - 1, high + 1
    return colors.Normalize(vmin=low, vmax=high)


def _last_finite(steps: np.ndarray, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step and value of each curve's last finite point (curves with none skipped)."""
    seen = np.isfinite(curves)
    last = seen.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)
    rows = np.flatnonzero(seen.any(axis=1))
    return steps[last[rows]], curves[rows, last[rows]]


def _show_figures_in_notebooks() -> None:
    """Lets IPython display a pyplot-free `Figure` returned by a cell, as a PNG.

    pyplot registers this display hook only when it is imported; `plot` does not
    use pyplot (no global figure state), so it registers the hook itself.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    def png(figure: Figure) -> bytes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    shell.display_formatter.formatters["image/png"].for_type(Figure, png)


