"""The columns of a `SweepResult`: their names, and the one check of a result's fields.

The names are defined here once, for the whole package: `STATUSES` (how a member
ended, best first), `MODES` (whether lower or higher of a metric is better) and
`RESERVED_COLUMNS` (the table columns no hyperparameter may shadow). `validated` is the
one place a result's fields are normalised and checked against each other, whether the
result was built by a sweep, by hand, or loaded from a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

# Member statuses, best first: a trial's status is its worst seed's, and trials rank by
# status before score.
STATUSES = ("completed", "running", "stopped", "diverged")
# "min": lower of a metric is better; "max": higher is.
MODES = ("min", "max")
# Columns of `to_pandas` and `summary` that no hyperparameter may shadow (nor, for each
# metric m, `m`, `final_m`, `m_mean` and `m_std`: see `check_names`).
RESERVED_COLUMNS = ("member", "trial", "seed", "step", "train_loss", "diverged",
                    "diverged_step", "n_seeds", "n_diverged", "status", "steps_trained")
# Used only to pick a ranking direction for a metric other than the result's default
# one when no `mode` is given; anything else has to say its `mode`.
_MIN_WORDS = ("loss", "error", "mse", "mae", "rmse", "nll", "perplexity")
_MAX_WORDS = ("acc", "precision", "recall", "f1", "auc", "r2")
_DEMO_HINT = "install it with `pip install 'jaxtune[demo]'`"


def guess_mode(metric: str) -> str:
    """"min" or "max" for a metric, judged by its name; ValueError when unclear.

    Names containing loss, error, mse, mae, rmse, nll or perplexity are minimised;
    acc, precision, recall, f1, auc or r2 maximised.
    """
    lower = metric.lower()
    if any(word in lower for word in _MIN_WORDS):
        return "min"
    if any(word in lower for word in _MAX_WORDS):
        return "max"
    raise ValueError(
        f"Cannot tell whether lower or higher `{metric}` is better: pass "
        "mode='min' or mode='max'."
    )


def check_mode(mode: Any) -> str:
    """`mode` if it is one of `MODES`; ValueError otherwise."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"`mode` must be {' or '.join(map(repr, MODES))}, got mode={mode!r}.")
    return mode


def check_names(hparams: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    """Hyperparameter names must not collide with the columns `to_pandas`/`summary` make."""
    taken = set(RESERVED_COLUMNS)
    for name in ("train_loss", *metrics):
        taken.update((name, f"final_{name}", f"{name}_mean", f"{name}_std",
                      f"{name}_low", f"{name}_high"))  # the last two: `interval=`
    for name in hparams:
        if name in taken:
            raise ValueError(
                f"hyperparameter name `{name}` collides with a column of `to_pandas` or "
                "`summary` (or an eval metric); rename the hyperparameter."
            )


def require(module: str, caller: str):
    """The optional dependency `module` (pandas, matplotlib), or an ImportError saying
    how to install it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"`{caller}` needs {module}: {_DEMO_HINT}.") from err


def plain(value: Any) -> Any:
    """A hyperparameter value as a plain Python value for `BestConfig`."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return float(str(value))  # shortest decimal that rounds to the same float32
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_value(value: Any) -> str:
    """A hyperparameter value as it reads in a `BestConfig` or on a plot's axis."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------- validation


def validated(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A result's fields, normalised and checked against each other.

    Args:
      fields: every field of a `SweepResult`, by name, as given.

    Returns:
      The fields to store: arrays of checked shapes and dtypes, plain dicts, `status`
      and `steps_trained` filled in when None, `member_params` and
      `member_model_state` None when they keep nothing.

    Raises:
      ValueError, TypeError: naming the first field that does not fit, and why.
    """
    trial, seed = _members(fields["trial"], fields["seed"])
    n = trial.shape[0]
    steps = _record_points(fields["steps"])
    c = steps.shape[0]
    train_loss = _curve_array("train_loss", fields["train_loss"], n, c)
    metrics = _metrics(fields["metrics"], n, c)
    diverged, diverged_step = _divergence(fields["diverged"], fields["diverged_step"], n)
    status = _status_vector(fields["status"], diverged, n)
    steps_trained = _steps_trained(fields["steps_trained"], steps, n)
    hparams = _hparams(fields["hparams"], n)
    check_names(hparams, metrics)
    metric = fields["metric"]
    if not isinstance(metric, str) or metric not in ("train_loss", *metrics):
        raise ValueError(
            f"`metric` must be 'train_loss' or a key of `metrics` "
            f"{sorted(metrics)}, got metric={metric!r}."
        )
    check_mode(fields["mode"])
    step_loss = _step_loss(fields["step_loss"], n)
    hparam_history, lineage = _schedules(fields["hparam_history"], fields["lineage"], n, c)
    member_params, member_model_state = _kept_trees(fields, n)
    timing = _timing(fields["timing"])
    _check_unique_pairs(trial, seed)
    _check_shared_hparams(hparams, trial)
    return {
        **fields, "hparams": hparams, "trial": trial, "seed": seed, "steps": steps,
        "train_loss": train_loss, "metrics": metrics, "diverged": diverged,
        "diverged_step": diverged_step, "timing": timing, "step_loss": step_loss,
        "status": status, "steps_trained": steps_trained, "hparam_history": hparam_history,
        "lineage": lineage, "member_params": member_params,
        "member_model_state": member_model_state,
    }


def _members(trial: Any, seed: Any) -> tuple[np.ndarray, np.ndarray]:
    trial = _int_vector("trial", trial)
    n = trial.shape[0]
    if n == 0:
        raise ValueError("`trial` is empty: a SweepResult needs at least one member.")
    if np.any(trial < 0):
        raise ValueError(f"`trial` must be non-negative, got trial={_show(trial)}.")
    seed = _int_vector("seed", seed, n)
    if np.any(seed < 0):
        raise ValueError(f"`seed` must be non-negative, got seed={_show(seed)}.")
    return trial, seed


def _record_points(steps: Any) -> np.ndarray:
    steps = _int_vector("steps", steps)
    if steps.shape[0] == 0:
        raise ValueError("`steps` is empty: a SweepResult needs at least one record point.")
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"`steps` must be strictly increasing, got steps={_show(steps)}.")
    return steps


def _metrics(metrics: Any, n: int, c: int) -> dict[str, np.ndarray]:
    if not isinstance(metrics, Mapping):
        raise TypeError(
            "`metrics` must be a dict of metric name -> float [N, C] array, got "
            f"{type(metrics).__name__}; pass {{}} when there are no eval metrics."
        )
    out = {}
    for name, curve in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"`metrics` keys must be non-empty strings, got {name!r}.")
        if name == "train_loss":
            raise ValueError(
                "`metrics` must not have a 'train_loss' entry: the training loss is the "
                "`train_loss` field; name the eval metric differently (e.g. 'eval_loss')."
            )
        out[name] = _curve_array(f"metrics[{name!r}]", curve, n, c)
    return out


def _divergence(diverged: Any, diverged_step: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    diverged = np.asarray(diverged)
    if diverged.ndim != 1 or diverged.dtype.kind != "b":
        raise TypeError(
            "`diverged` must be a 1-D bool array [N], got "
            f"{diverged.dtype} array of shape {diverged.shape}."
        )
    _check_length("diverged", diverged, n)
    diverged_step = _int_vector("diverged_step", diverged_step, n)
    bad = np.flatnonzero(diverged & (diverged_step < 0))
    if bad.size:
        raise ValueError(
            f"member {bad[0]} is marked diverged but has diverged_step="
            f"{diverged_step[bad[0]]}; `diverged_step` must be the (non-negative) first "
            "non-finite step of every diverged member."
        )
    bad = np.flatnonzero(~diverged & (diverged_step != -1))
    if bad.size:
        raise ValueError(
            f"member {bad[0]} is not marked diverged but has diverged_step="
            f"{diverged_step[bad[0]]}; `diverged_step` must be -1 for members that "
            "never diverged."
        )
    return diverged, diverged_step


def _status_vector(value: Any, diverged: np.ndarray, n: int) -> np.ndarray:
    """`status` as a str array [N], derived from `diverged` when None, else checked."""
    if value is None:
        return np.where(diverged, "diverged", "completed")
    allowed = ", ".join(repr(s) for s in STATUSES)
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`status` must be a 1-D array [N], got shape {array.shape}.")
    if array.dtype.kind not in "UO" or not all(isinstance(v, str) for v in array):
        raise TypeError(
            f"`status` must hold strings, one of {allowed} per member, got dtype "
            f"{array.dtype}."
        )
    _check_length("status", array, n)
    array = array.astype(str)
    bad = np.flatnonzero(~np.isin(array, STATUSES))
    if bad.size:
        raise ValueError(
            f"member {bad[0]} has status={str(array[bad[0]])!r}; `status` must be one of "
            f"{allowed}."
        )
    bad = np.flatnonzero(diverged != (array == "diverged"))
    if bad.size:
        member = bad[0]
        raise ValueError(
            f"member {member} has status={str(array[member])!r} but diverged="
            f"{bool(diverged[member])}; `status` is 'diverged' exactly for the members "
            "marked in `diverged` (pass status=None to derive it from `diverged`)."
        )
    return array


def _steps_trained(value: Any, steps: np.ndarray, n: int) -> np.ndarray:
    if value is None:
        return np.full(n, steps[-1], dtype=steps.dtype)
    steps_trained = _int_vector("steps_trained", value, n)
    if np.any(steps_trained < 0):
        raise ValueError(
            "`steps_trained` must be non-negative (optimizer steps each member "
            f"trained), got steps_trained={_show(steps_trained)}."
        )
    return steps_trained


def _hparams(hparams: Any, n: int) -> dict[str, np.ndarray]:
    if not isinstance(hparams, Mapping):
        raise TypeError(
            "`hparams` must be a dict of hyperparameter name -> column [N], got "
            f"{type(hparams).__name__}."
        )
    out = {}
    for name, column in hparams.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"`hparams` keys must be non-empty strings, got {name!r}.")
        out[name] = _hparam_column(name, column, n)
    return out


def _hparam_column(name: str, value: Any, n: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "U":
        array = array.astype(object)
    elif array.dtype.kind == "O":
        if any(isinstance(v, np.generic) for v in array.flat):
            plain_values = np.empty(array.shape, dtype=object)
            for index, v in np.ndenumerate(array):
                plain_values[index] = v.item() if isinstance(v, np.generic) else v
            array = plain_values
    elif array.dtype.kind not in "biuf":
        raise TypeError(
            f"hyperparameter `{name}` must be a numeric array or an object array of Python "
            f"values, got dtype {array.dtype}."
        )
    if array.ndim != 1:
        raise ValueError(
            f"hyperparameter `{name}` must be a 1-D column [N], got shape {array.shape}."
        )
    if array.shape[0] != n:
        raise ValueError(
            f"hyperparameter `{name}` has {array.shape[0]} entries but `trial` has {n}: every "
            f"column needs N={n} entries, one per member."
        )
    return array


def _step_loss(step_loss: Any, n: int) -> np.ndarray | None:
    if step_loss is None:
        return None
    step_loss = np.asarray(step_loss)
    if step_loss.ndim != 2 or step_loss.shape[0] != n:
        raise ValueError(
            f"`step_loss` must have shape [N, steps] with N={n} members (from "
            f"`trial`), got shape {step_loss.shape}."
        )
    if step_loss.dtype.kind not in "fiu":
        raise TypeError(f"`step_loss` must hold numbers, got dtype {step_loss.dtype}.")
    return step_loss


def _schedules(hparam_history: Any, lineage: Any, n: int, c: int
               ) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """`hparam_history` (name -> [N, C]) and `lineage` (rows of step, target, source)."""
    if hparam_history is not None:
        hparam_history = {name: _curve_array(f"hparam_history[{name!r}]", v, n, c)
                          for name, v in hparam_history.items()}
    if lineage is not None:
        lineage = np.asarray(lineage, np.int64).reshape(-1, 3)
        if lineage.size and (np.any(lineage[:, 1:] < 0) or np.any(lineage[:, 1:] >= n)):
            raise ValueError(f"`lineage` rows are (step, target, source) with members in "
                             f"0..{n - 1}, got {_show(lineage)}.")
    return hparam_history, lineage


def _kept_trees(fields: Mapping[str, Any], n: int) -> tuple[dict | None, dict | None]:
    """`member_params` and `member_model_state` checked, beside `params` and `model_state`."""
    _check_member_axis("params", fields["params"], n)
    _check_member_axis("model_state", fields["model_state"], n)
    member_params = _member_trees("member_params", fields["member_params"], n)
    member_model_state = _member_trees("member_model_state", fields["member_model_state"], n)
    if member_params is not None and fields["params"] is not None:
        raise ValueError("pass `params` (every member, stacked) or `member_params` (one "
                         "tree per kept member), not both.")
    for member in member_model_state or {}:
        if member not in (member_params or {}):
            raise ValueError(f"`member_model_state` has member {member}, whose `params` "
                             "are not kept: keep a member's state beside its parameters "
                             "in `member_params`.")
    return member_params, member_model_state


def _check_member_axis(name: str, tree: Any, n: int) -> None:
    """Every leaf of `tree` (`params` or `model_state`) needs the leading member axis N."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape = np.shape(leaf)
        if shape[:1] != (n,):
            raise ValueError(
                f"`{name}` leaf {jax.tree_util.keystr(path) or '(root)'} has shape {shape}; "
                f"every leaf needs the leading member axis N={n}."
            )


def _member_trees(name: str, trees: Any, n: int) -> dict[int, Any] | None:
    """`member_params` or `member_model_state` checked: {member: tree}, by member; None if
    empty or every tree is None (a model without state)."""
    if trees is None:
        return None
    if not isinstance(trees, Mapping):
        raise TypeError(f"`{name}` must be a dict member -> tree (one member's final "
                        f"parameters, no member axis), got {type(trees).__name__}.")
    out = {}
    for member in sorted(trees, key=lambda m: (not isinstance(m, (int, np.integer)), str(m))):
        if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not (
                0 <= member < n):
            raise ValueError(f"`{name}` has key {member!r}; keys are members 0..{n - 1}.")
        out[int(member)] = trees[member]
    return out if any(tree is not None for tree in out.values()) else None


# `timing` entries that are words, not figures: the chunk form(s) the trainers ran with.
TIMING_TEXT = ("chunk_form",)


def _timing(timing: Any) -> dict[str, float | str]:
    """`timing` checked: name -> a number (seconds, counts, rates) or, for the names in
    `TIMING_TEXT`, a string."""
    if not isinstance(timing, Mapping):
        raise TypeError(
            f"`timing` must be a dict of name -> seconds, got {type(timing).__name__}."
        )
    out: dict[str, float | str] = {}
    for name, value in timing.items():
        if not isinstance(name, str):
            raise TypeError(f"`timing` keys must be strings, got {name!r}.")
        if name in TIMING_TEXT:
            if not isinstance(value, str):
                raise TypeError(f"`timing[{name!r}]` must be a string, got {value!r}.")
            out[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"`timing[{name!r}]` must be a number, got {value!r}.")
        out[name] = float(value)
    return out


def _check_unique_pairs(trial: np.ndarray, seed: np.ndarray) -> None:
    order = np.lexsort((seed, trial))
    same = (np.diff(trial[order]) == 0) & (np.diff(seed[order]) == 0)
    if same.any():
        i = np.flatnonzero(same)[0]
        a, b = sorted((int(order[i]), int(order[i + 1])))
        raise ValueError(
            f"members {a} and {b} are both trial={trial[a]}, seed={seed[a]}; each (trial, "
            "seed) pair must occur once."
        )


def _check_shared_hparams(hparams: dict[str, np.ndarray], trial: np.ndarray) -> None:
    _, first, inverse = np.unique(trial, return_index=True, return_inverse=True)
    reference = first[inverse]
    for name, column in hparams.items():
        other = column[reference]
        if column.dtype == object:
            same = np.array([a is b or _equal(a, b) for a, b in zip(column, other)], dtype=bool)
        elif column.dtype.kind == "f":
            same = (column == other) | (np.isnan(column) & np.isnan(other))
        else:
            same = column == other
        if not same.all():
            member = int(np.flatnonzero(~same)[0])
            base = int(reference[member])
            first_value, other_value = plain(column[base]), plain(column[member])
            raise ValueError(
                f"members {base} and {member} share trial={trial[member]} but differ in "
                f"hyperparameter `{name}` ({first_value!r} vs {other_value!r}); members "
                "of one trial must share every hyperparameter."
            )


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _show(array: np.ndarray) -> str:
    return np.array2string(np.asarray(array), threshold=8)


def _check_length(name: str, array: np.ndarray, n: int) -> None:
    if array.shape[0] != n:
        raise ValueError(
            f"`{name}` has {array.shape[0]} entries but `trial` has {n}: every per-member "
            f"array needs N={n} entries, one per member."
        )


def _int_vector(name: str, value: Any, n: int | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array, got shape {array.shape}.")
    if array.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must hold integers, got dtype {array.dtype}.")
    if n is not None:
        _check_length(name, array, n)
    return array


def _curve_array(name: str, value: Any, n: int, c: int) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != (n, c):
        raise ValueError(
            f"`{name}` must have shape [N, C] = ({n}, {c}) (N members from `trial`, C record "
            f"points from `steps`), got shape {array.shape}."
        )
    if array.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must hold numbers, got dtype {array.dtype}.")
    return array
