"""Ragged histories of a population: what every member recorded, at which step.

Record points are the same step counts for every member: every `eval_every` of its
own steps and the budget's end. Members that stop early leave NaN after their last
record, members that start late simply record later (their columns are their own
steps), and a member whose hyperparameters change records them at every point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def record_steps(steps: int, eval_every: int) -> np.ndarray:
    """int [C]: every `eval_every`-th step, and `steps` itself."""
    grid = np.arange(eval_every, steps + 1, eval_every)
    return grid if grid.size and grid[-1] == steps else np.append(grid, steps)


class Recorder:
    """Curves [N, C] of every metric, losses per step, hyperparameter history, lineage.

    Training metrics (`train_loss` and the `aux_names` of `loss_fn`'s aux dict) are
    recorded as their mean over the steps since the member's previous record point.
    """

    def __init__(self, steps: int, eval_every: int, metric_names: Sequence[str],
                 record_step_loss: bool, dynamic_names: Sequence[str],
                 aux_names: Sequence[str] = ()):
        self.steps = steps
        self.record_steps = record_steps(steps, eval_every)
        self.aux_names = tuple(aux_names)
        self.metric_names = tuple(metric_names) + self.aux_names
        columns = self.record_steps.size
        self.curves = {name: np.zeros((0, columns), np.float32) for name in self.metric_names}
        self.hparam_history = {name: np.zeros((0, columns), np.float32) for name in dynamic_names}
        self.step_loss = np.zeros((0, steps), np.float32) if record_step_loss else None
        self.latest = np.zeros(0, np.int64)  # column of each member's latest record, -1 if none
        self.loss_sum = np.zeros(0, np.float64)  # training loss since the latest record
        self.loss_count = np.zeros(0, np.int64)
        self.aux_sum = {name: np.zeros(0, np.float64) for name in self.aux_names}
        self.lineage: list[tuple[int, int, int]] = []  # (step, target, source) of every copy

    def add_members(self, count: int) -> None:
        def grow(array: np.ndarray, fill: float) -> np.ndarray:
            extra = np.full((count,) + array.shape[1:], fill, array.dtype)
            return np.concatenate([array, extra])

        self.curves = {k: grow(v, np.nan) for k, v in self.curves.items()}
        self.hparam_history = {k: grow(v, np.nan) for k, v in self.hparam_history.items()}
        if self.step_loss is not None:
            self.step_loss = grow(self.step_loss, np.nan)
        self.latest = grow(self.latest, -1)
        self.loss_sum = grow(self.loss_sum, 0.0)
        self.loss_count = grow(self.loss_count, 0)
        self.aux_sum = {k: grow(v, 0.0) for k, v in self.aux_sum.items()}

    def add_losses(self, members: np.ndarray, begin: np.ndarray, losses: np.ndarray,
                   aux: Mapping[str, np.ndarray] | None = None) -> None:
        """Training losses [K, L] of `members`, from their steps `begin` [K] on.

        `aux` holds the training metrics [K, L] of the same steps, by name.
        """
        finite = np.isfinite(losses)
        self.loss_sum[members] += np.where(finite, losses, 0.0).sum(axis=1)
        for name, values in (aux or {}).items():
            # Summed where the loss is finite: a NaN metric shows in its own curve.
            self.aux_sum[name][members] += np.where(finite, values, 0.0).sum(axis=1)
        self.loss_count[members] += finite.sum(axis=1)
        # A NaN poisons the chunk's mean, as a diverged member's curve should show.
        self.loss_count[members[~finite.all(axis=1)]] = -(10**9)
        if self.step_loss is not None:
            length = losses.shape[1]
            for row, (member, start) in enumerate(zip(members, begin)):
                self.step_loss[member, start:start + length] = losses[row]

    def record(self, members: np.ndarray, steps: np.ndarray, metrics: Mapping[str, np.ndarray],
               hparams: Mapping[str, np.ndarray]) -> None:
        """Members at record points: their mean training loss since the last one, metrics."""
        if members.size == 0:
            return
        column = np.searchsorted(self.record_steps, steps)
        count = self.loss_count[members]
        self.curves["train_loss"][members, column] = np.where(
            count > 0, self.loss_sum[members] / np.maximum(count, 1), np.nan)
        for name, sums in self.aux_sum.items():
            self.curves[name][members, column] = np.where(
                count > 0, sums[members] / np.maximum(count, 1), np.nan)
            sums[members] = 0.0
        for name, values in metrics.items():
            self.curves[name][members, column] = values
        for name, values in hparams.items():
            self.hparam_history[name][members, column] = values
        self.latest[members] = column
        self.loss_sum[members] = 0.0
        self.loss_count[members] = 0

    def copy(self, target: int, source: int, step: int) -> None:
        """`target` took `source`'s state at `step`: it continues from there."""
        self.lineage.append((step, int(target), int(source)))
        self.loss_sum[target] = 0.0
        self.loss_count[target] = 0
        for sums in self.aux_sum.values():
            sums[target] = 0.0

    def curve(self, metric: str) -> np.ndarray:
        if metric not in self.curves:
            raise ValueError(f"metric {metric!r} is not recorded; recorded: "
                             f"{', '.join(map(repr, self.metric_names))}.")
        return self.curves[metric]

    def latest_values(self, metric: str) -> np.ndarray:
        """Each member's value of `metric` at its latest record point (NaN if none)."""
        curve = self.curve(metric)
        rows = np.flatnonzero(self.latest >= 0)
        out = np.full(curve.shape[0], np.nan, np.float32)
        out[rows] = curve[rows, self.latest[rows]]
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything recorded, as named arrays (for checkpoints)."""
        out = {f"curve:{k}": v for k, v in self.curves.items()}
        out.update({f"hparam:{k}": v for k, v in self.hparam_history.items()})
        if self.step_loss is not None:
            out["step_loss"] = self.step_loss
        out["latest"] = self.latest
        out["loss_sum"] = self.loss_sum
        out["loss_count"] = self.loss_count
        out.update({f"aux_sum:{k}": v for k, v in self.aux_sum.items()})
        out["lineage"] = np.asarray(self.lineage, np.int64).reshape(-1, 3)
        return out

    def load_state_dict(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restores what `state_dict` returned."""
        self.curves = {k: arrays[f"curve:{k}"] for k in self.curves}
        self.hparam_history = {k: arrays[f"hparam:{k}"] for k in self.hparam_history}
        if self.step_loss is not None:
            self.step_loss = arrays["step_loss"]
        self.latest = arrays["latest"]
        self.loss_sum = arrays["loss_sum"]
        self.loss_count = arrays["loss_count"]
        self.aux_sum = {k: arrays[f"aux_sum:{k}"] for k in self.aux_sum}
        self.lineage = [tuple(int(x) for x in row) for row in arrays["lineage"]]
