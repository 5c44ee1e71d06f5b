"""`ConfigStream`: the configurations of a space handed out in batches, resumable.

The stream a search asks for new configurations (`Search.ask`, ASHA's growth). It is a
position in a sampler's sequence (`jaxtune.space.samplers`): `ask(n)` gives the next n
and moves past them, and `Space.sample(n)` gives the first n of the same sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jaxtune._checks import nonnegative_int

from .samplers import resolve
from .table import Table, space_argument
from .values import DEFAULT_POINTS, check_count_limit, show

if TYPE_CHECKING:
    from .space import Space

__all__ = ["ConfigStream"]


_STATE_KEYS = ("names", "sampler", "seed", "points", "position")


class ConfigStream:
    """A deterministic, resumable stream of configurations: `ask(n)` gives the next n.

    Adaptive searches (successive halving, ASHA, ask/tell optimizers) start
    configurations over time. A stream hands them out in batches, and the sequence
    depends only on the space, the sampler, the seed and (for the grid) `points`,
    never on how it was split into batches: `ask(3)` then `ask(5)` gives the same
    eight configurations as `ask(8)`.

    The first n configurations are `Space.sample(n, sampler=..., seed=...,
    points=...)`, for every sampler (`jaxtune.space.samplers` states each one's rule):

    - "random": configuration i is a pure function of (seed, i), from the
      counter-based `np.random.Philox(seed)`: reaching position i costs nothing.
    - "sobol", "halton": the scrambled quasi-random sequence continued
      (reproducible for a given scipy version).
    - "grid": the rows of `Space.sample(sampler="grid", points=...)` in order
      (grids larger than `MAX_CONFIGURATIONS` are refused, as there). The grid is
      finite: `ask(n)` gives at most `remaining` rows, like a file's `read(n)`, so
      an exhausted stream returns an empty table.

    `state_dict()` and `ConfigStream.from_state` checkpoint and resume a stream:
    the resumed stream continues with exactly the configurations the original
    would have given.

    Args:
      space: static; the `Space` to draw from.
      sampler: static; one of "random", "grid", "sobol", "halton".
      seed: static; a non-negative int. Unused by "grid".
      points: static; grid points per continuous or integer dimension, an int or a
        mapping name -> int (missing names get 5). Used only by "grid".
      position: static; how many configurations to skip, a non-negative int
        (at most the grid size for "grid").

    Example:
      >>> import jaxtune as jt
      >>> space = jt.Space(lr=jt.loguniform(1e-4, 1e-1), act=jt.choice(["relu", "tanh"]))
      >>> stream = space.stream(seed=0)
      >>> batch = stream.ask(4)
      >>> state = stream.state_dict()            # JSON-able; save it with the checkpoint
      >>> from jaxtune.space import ConfigStream
      >>> resumed = ConfigStream.from_state(space, state)
      >>> resumed.ask(2).to_dict() == stream.ask(2).to_dict()
      True
      >>> grid = space.stream(sampler="grid", points=2)
      >>> grid.remaining, len(grid.ask(3)), len(grid.ask(3)), grid.remaining
      (4, 3, 1, 0)
    """

    __slots__ = ("_position", "_sampler", "_space", "_total")

    def __init__(
        self,
        space: Space,
        *,
        sampler: str = "random",
        seed: int = 0,
        points: int | Mapping[str, int] = DEFAULT_POINTS,
        position: int = 0,
    ) -> None:
        self._space = space_argument(space, "; build one with jaxtune.Space(name=dimension, ...)")
        self._sampler = resolve(space, sampler, seed=seed, points=points)
        self._total = self._sampler.size(space)
        self._position = nonnegative_int("position", position)
        if self._total is not None and self._position > self._total:
            raise ValueError(
                f"`position` must be at most the grid size {self._total}, got "
                f"position={position}; the grid has no configuration there (check the "
                "`points` the stream was built with)."
            )

    @property
    def space(self) -> Space:
        return self._space

    @property
    def sampler(self) -> str:
        return self._sampler.name

    @property
    def seed(self) -> int:
        return self._sampler.seed

    @property
    def position(self) -> int:
        """How many configurations the stream has handed out (or skipped) so far."""
        return self._position

    @property
    def remaining(self) -> int | None:
        """How many configurations are left: for "grid" an int, else None (unbounded)."""
        return None if self._total is None else self._total - self._position

    def ask(self, n: int) -> Table:
        """The next `n` configurations, and the stream moves past them.

        Args:
          n: static; a non-negative int, at most `MAX_CONFIGURATIONS` per call.

        Returns:
          A `Table` of `n` rows; for "grid", of min(n, remaining) rows (empty once
          the grid is exhausted).
        """
        n = nonnegative_int("n", n)
        if self._total is not None:
            n = min(n, self._total - self._position)
        check_count_limit("n", n, "ask in smaller batches.")
        columns, codes = self._sampler.columns(self._space, self._position, n)
        self._position += n
        return Table._make(self._space, columns, codes, n)

    def state_dict(self) -> dict[str, Any]:
        """The stream's state as JSON-able values, for `ConfigStream.from_state`.

        Returns:
          A new dict with "names" (the space's names, checked on resume),
          "sampler", "seed", "points" (name -> int for "grid", else None) and
          "position".
        """
        return {
            "names": list(self._space.names),
            "sampler": self._sampler.name,
            "seed": self._sampler.seed,
            "points": self._sampler.points(self._space),
            "position": self._position,
        }

    @classmethod
    def from_state(cls, space: Space, state: Mapping[str, Any]) -> ConfigStream:
        """Resumes a stream from `state_dict()`: it continues exactly where that one was.

        Args:
          space: the same `Space` the saved stream drew from (its names are checked;
            changing a dimension's range changes the values the stream gives).
          state: a mapping as returned by `state_dict()` (e.g. after a JSON round trip).

        Returns:
          A new `ConfigStream` at the saved position.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"`state` must be a mapping from ConfigStream.state_dict(), got "
                f"{type(state).__name__} {show(state)}."
            )
        missing = [key for key in _STATE_KEYS if key not in state]
        unknown = [key for key in state if key not in _STATE_KEYS]
        if missing or unknown:
            problems = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"has unknown {', '.join(map(repr, unknown))}"] if unknown else []
            )
            raise ValueError(
                f"`state` {' and '.join(problems)}; pass the dict ConfigStream.state_dict() "
                f"returned, with keys {', '.join(map(repr, _STATE_KEYS))}."
            )
        space = space_argument(space)
        if list(state["names"]) != list(space.names):
            raise ValueError(
                f"`state` was saved from a stream over {list(state['names'])!r}, but `space` "
                f"has {list(space.names)!r}; resume with the space the stream was built from."
            )
        points = state["points"]
        return cls(
            space,
            sampler=state["sampler"],
            seed=state["seed"],
            points=DEFAULT_POINTS if points is None else points,
            position=state["position"],
        )

    def __repr__(self) -> str:
        return (
            f"ConfigStream(sampler={self._sampler.name!r}, seed={self._sampler.seed}, "
            f"position={self._position}, remaining={self.remaining})"
        )
