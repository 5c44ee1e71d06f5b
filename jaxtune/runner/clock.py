"""Where a sweep's seconds go: compiling, training, and the record points between.

A round trains every slice to its next record point, then records, decides, applies,
repacks and checkpoints. `Clock` splits each round's wall time into the training
(dispatching the chunks and waiting for the devices), the compiles the sweep's thread
waited for, and the rest: the record point's own cost (`timing["record_s"]`), which an
adaptive search pays at every decision.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from jaxtune.runner.slices import Groups


class Clock:
    """Times the rounds of one `Runner.run` over the static `groups` (their compilers)."""

    def __init__(self, groups: Groups):
        self.groups = groups
        self.record_seconds = 0.0  # rounds' seconds outside training and compile waits
        self.record_points = 0  # rounds timed
        self._training = 0.0  # this round's seconds dispatching and waiting for training
        self._round: tuple[float, float] | None = None
        self._train: tuple[float, float] | None = None

    def compile_waits(self) -> float:
        """Seconds the sweep's thread spent compiling or waiting for compiles, every group's."""
        return sum(group.trainer.wait_seconds for group in self.groups)

    def compile_seconds(self) -> float:
        """Seconds spent compiling, in any thread, every group's."""
        return sum(group.trainer.compile_seconds for group in self.groups)

    def start_round(self) -> None:
        self._round = (time.perf_counter(), self.compile_waits())
        self._training = 0.0

    def end_round(self) -> None:
        """Counts the round begun by `start_round` as a record point."""
        began, waited = self._round
        self.record_seconds += (time.perf_counter() - began - self._training
                                - (self.compile_waits() - waited))
        self.record_points += 1

    def start_training(self) -> None:
        self._train = (time.perf_counter(), self.compile_waits())

    def end_training(self, outputs: Any) -> None:
        """Waits for the training `outputs` (the chunks dispatched since `start_training`)."""
        jax.block_until_ready(outputs)
        began, waited = self._train
        self._training += time.perf_counter() - began - (self.compile_waits() - waited)

    def timing(self, seconds: float, member_steps: int) -> dict[str, float | str]:
        """`result.timing`: seconds compiling (in any thread) and waited for by the sweep's
        thread; running (the total less that wait); at record points outside training and
        compiling, and how many; throughput; the chunk form the trainers ran with."""
        waited = self.compile_waits()
        run_s = max(seconds - waited, 1e-9)
        timing: dict[str, float | str] = {
            "compile_s": self.compile_seconds(),
            "compile_wait_s": waited,
            "run_s": run_s,
            "total_s": seconds,
            "compiles": float(sum(group.trainer.compiles for group in self.groups)),
            "member_steps_per_s": member_steps / run_s,
            "record_s": self.record_seconds,
            "record_points": float(self.record_points),
        }
        forms = [getattr(group.trainer, "chunk_form", None) for group in self.groups]
        forms = [str(form) for form in dict.fromkeys(forms) if form is not None]
        if forms:
            timing["chunk_form"] = ",".join(forms)
        return timing
