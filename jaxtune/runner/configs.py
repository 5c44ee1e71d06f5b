"""New configurations on demand: the sweep's sampler, asked through `search.ask(n)`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxtune.space import ConfigStream, Space, Table

_MSG_NO_SAMPLER = (
    "this sweep has no sampler to ask for new configurations (it was given explicit "
    "`configs`, or a grid); use a random, sobol or halton sampler.")


class ConfigSource:
    """The sweep's `ConfigStream` (None without a sampler), checkpointed with the sweep.

    Attributes:
      asked: configurations drawn so far with `ask`.
    """

    def __init__(self, space: Space, stream: ConfigStream | None):
        self.space = space
        self._stream = stream
        self.asked = 0

    def ask(self, n: int) -> Table:
        """The next `n` configurations of the sampler (deterministic, resumable)."""
        if self._stream is None:
            raise ValueError(_MSG_NO_SAMPLER)
        table = self._stream.ask(n)
        self.asked += n
        return table

    def state_dict(self) -> dict[str, Any]:
        return {"asked": self.asked,
                "stream": None if self._stream is None else self._stream.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.asked = state["asked"]
        if state["stream"] is not None:
            self._stream = ConfigStream.from_state(self.space, state["stream"])
