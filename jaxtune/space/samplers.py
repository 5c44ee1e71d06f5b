"""Samplers: where configuration i of a space comes from.

A sampler gives configuration i of a space as a pure function of its settings (the seed,
the grid's points) and of i alone. So drawing n configurations at once
(`Space.sample(n)`) and asking for them in batches of any sizes (`ConfigStream.ask`) give
the same configurations, and a stream resumes from its position.

- `Random`: configuration i maps the 64-bit words i*d, ..., i*d + d - 1 of
  `np.random.Philox(seed)` (d dimensions, in the space's order), each turned into a
  float in [0, 1) from its top 53 bits. Philox is counter-based: reaching position i
  costs nothing.
- `Sobol`, `Halton`: point i of the scrambled sequence of `scipy.stats.qmc` (reproducible
  for a given scipy version); they cover the space more evenly than random points.
- `Grid`: row i of every combination of each dimension's `grid(points)`, the first
  dimension varying slowest. The only finite sampler.

The first three are `UnitSampler`s: a point of [0, 1)^d, mapped by each dimension's
`from_unit`. The names users pass (`sampler="sobol"`) are aliases of these classes
(`SAMPLERS`, `resolve`). A new sampler is one `UnitSampler` subclass (its `unit`) and
its name in `_CLASSES`.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from jaxtune._checks import nonnegative_int, one_of, positive_int

from .values import DEFAULT_POINTS, check_count_limit, check_grid_size, show

if TYPE_CHECKING:
    from .space import Space

#: Configurations as name -> stored values, and name -> option indices (None for a
#: dimension without options), the two halves of a `Table`.
Columns = tuple[dict[str, np.ndarray], dict[str, "np.ndarray | None"]]


class Sampler(abc.ABC):
    """Configurations start, ..., start + n - 1 of a space, as a pure function of (settings, i).

    Args:
      seed: static; a non-negative int (recorded, and unused, by `Grid`).
    """

    __slots__ = ("seed",)

    #: The string users pass as `sampler=`.
    name: ClassVar[str]

    def __init__(self, seed: int = 0) -> None:
        self.seed = nonnegative_int("seed", seed)

    @abc.abstractmethod
    def columns(self, space: Space, start: int, n: int) -> Columns:
        """Stored values and option indices, by name, of configurations start, ..., start + n - 1."""

    def size(self, space: Space) -> int | None:
        """How many configurations the sampler gives over `space`; None when endless."""
        return None

    def points(self, space: Space) -> dict[str, int] | None:
        """The grid points per name, for a stream's saved state; None but for `Grid`."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


class UnitSampler(Sampler):
    """Configuration i is point i of a sequence in [0, 1)^d, mapped by `Dimension.from_unit`."""

    __slots__ = ()

    @abc.abstractmethod
    def unit(self, start: int, n: int, d: int) -> np.ndarray:
        """Points start, ..., start + n - 1 of the sequence in [0, 1)^d, a float64 [n, d] array.

        They depend on (seed, position) only: never on how the positions are split into calls.
        """

    def columns(self, space: Space, start: int, n: int) -> Columns:
        dims = list(space.items())
        unit = self.unit(start, n, len(dims)) if dims and n else np.empty((n, len(dims)))
        columns: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray | None] = {}
        for j, (name, dim) in enumerate(dims):
            columns[name], codes[name] = dim._map_unit(unit[:, j])
        return columns, codes


# Philox4x64 emits its 64-bit words in blocks of four; `advance` counts blocks.
_PHILOX_BLOCK = 4


class Random(UnitSampler):
    """Point i: the words i*d, ..., i*d + d - 1 of `np.random.Philox(seed)`, as floats in [0, 1)."""

    __slots__ = ()
    name = "random"

    def unit(self, start: int, n: int, d: int) -> np.ndarray:
        # Counter-based, so any stretch costs the same to reach as the first one: the
        # generator jumps to word start * d instead of generating the words before it.
        bit_generator = np.random.Philox(self.seed)
        bit_generator.advance(start * d // _PHILOX_BLOCK)
        bit_generator.random_raw(start * d % _PHILOX_BLOCK)
        # Generator.random turns each word into a double from its top 53 bits, in C
        # (random_raw returns the words ~15x slower).
        return np.random.Generator(bit_generator).random(n * d).reshape(n, d)


class Sobol(UnitSampler):
    """Point i of the scrambled Sobol sequence (`scipy.stats.qmc.Sobol`, seeded)."""

    __slots__ = ()
    name = "sobol"
    _engine = "Sobol"  # the class of scipy.stats.qmc

    def unit(self, start: int, n: int, d: int) -> np.ndarray:
        try:
            from scipy.stats import qmc
        except ImportError as error:  # scipy is optional: only these samplers need it
            raise ImportError(
                f"sampler={self.name!r} needs scipy; install it (pip install scipy) or use "
                "sampler='random'."
            ) from error
        engine_type = getattr(qmc, self._engine)
        try:
            engine = engine_type(d=d, scramble=True, rng=self.seed)
        except TypeError:  # scipy < 1.15 names the argument `seed`
            engine = engine_type(d=d, scramble=True, seed=self.seed)
        with warnings.catch_warnings():
            # Sobol warns when n is not a power of two: its balance properties then
            # hold only approximately. Sweeps pick n freely, and the points remain
            # far more even than random ones, so the warning is deliberately silenced.
            warnings.filterwarnings(
                "ignore", message="The balance properties of Sobol", category=UserWarning
            )
            if start:
                engine.fast_forward(start)
            return engine.random(n)


class Halton(Sobol):
    """Point i of the scrambled Halton sequence (`scipy.stats.qmc.Halton`, seeded)."""

    __slots__ = ()
    name = "halton"
    _engine = "Halton"


_GRID_FIX = (
    "use fewer `points` (an int for every continuous or integer dimension, or a "
    "mapping name -> int, e.g. points={'learning_rate': 8}), or draw a fixed "
    "number of configurations with sampler='random' or 'sobol' "
    "(Space.sample(n, ...), or `trials=` in jaxtune.sweep)."
)


class Grid(Sampler):
    """Row i of every combination of each dimension's `grid(points)`, the first varying slowest.

    Args:
      points: static; grid points per continuous or integer dimension, an int or a
        mapping name -> int (missing names get 5); checked against a space by `counts`.
      seed: static; recorded with the stream's state, unused.
    """

    __slots__ = ("_grids", "_grids_of", "_points")
    name = "grid"

    def __init__(self, points: int | Mapping[str, int] = DEFAULT_POINTS, seed: int = 0) -> None:
        super().__init__(seed)
        self._points = points
        self._grids_of: Space | None = None
        self._grids: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def points(self, space: Space) -> dict[str, int]:
        return point_counts(space, self._points)

    def grids(self, space: Space) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Each dimension's grid values (and option indices), sizes checked first."""
        if self._grids_of is space:
            return self._grids
        counts = self.points(space)
        # A dimension's grid is built only once its own size is known to be allowed.
        for name, dim in space.items():
            check_count_limit(
                f"points[{name!r}]", counts[name], _GRID_FIX, size=dim._grid_bound(counts[name])
            )
        grids = {name: dim._grid(counts[name]) for name, dim in space.items()}
        sizes = [len(values) for values, _ in grids.values()]
        check_grid_size(
            f"sampler='grid' gives {' x '.join(map(str, sizes))}", math.prod(sizes), _GRID_FIX
        )
        self._grids_of, self._grids = space, grids
        return grids

    def sizes(self, space: Space) -> list[int]:
        """The number of grid values of each dimension, in the space's order."""
        return [len(values) for values, _ in self.grids(space).values()]

    def size(self, space: Space) -> int:
        return math.prod(self.sizes(space))

    def columns(self, space: Space, start: int, n: int) -> Columns:
        grids = self.grids(space)
        sizes = [len(values) for values, _ in grids.values()]
        positions = np.unravel_index(np.arange(start, start + n), sizes) if sizes else ()
        columns: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray | None] = {}
        for (name, (values, value_codes)), position in zip(grids.items(), positions):
            columns[name] = values[position]
            codes[name] = None if value_codes is None else value_codes[position]
        return columns, codes

    def __repr__(self) -> str:
        return f"Grid(points={self._points!r})"


_CLASSES: dict[str, type[Sampler]] = {
    "random": Random, "grid": Grid, "sobol": Sobol, "halton": Halton,
}

#: The samplers' names, as `Space.sample(sampler=...)` and `ConfigStream` take them.
SAMPLERS = tuple(_CLASSES)


def point_counts(space: Space, points: Any) -> dict[str, int]:
    """`points` (an int, or a mapping name -> int) as name -> positive int for every name."""
    hint = " `points` is the number of grid values per continuous or integer dimension."
    if isinstance(points, Mapping):
        unknown = [name for name in points if name not in space]
        if unknown:
            raise ValueError(
                f"`points` names {', '.join(f'`{u}`' for u in unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not in the space; it has: "
                f"{', '.join(space) or 'nothing'}."
            )
        return {
            name: positive_int(f"points[{name!r}]", points.get(name, DEFAULT_POINTS), hint)
            for name in space
        }
    count = positive_int("points", points, hint)
    return {name: count for name in space}


def resolve(space: Space, sampler: Any, *, seed: Any, points: Any) -> Sampler:
    """The sampler a name stands for, with its settings checked against `space`.

    `points` is checked for every sampler (and used by the grid alone), as `seed` is.
    """
    if not isinstance(sampler, str):
        raise TypeError(
            f"`sampler` must be a string, one of {', '.join(map(repr, SAMPLERS))}; "
            f"got {type(sampler).__name__} {show(sampler)}."
        )
    one_of("sampler", sampler, SAMPLERS)
    counts = point_counts(space, points)
    seed = nonnegative_int("seed", seed)
    if sampler == "grid":
        return Grid(counts, seed)
    return _CLASSES[sampler](seed)
