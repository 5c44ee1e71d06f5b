"""`Space`: named hyperparameters and the dimension each is drawn from.

`Space.sample` draws a `Table` of configurations with a sampler
(`jaxtune.space.samplers`), `Space.stream` hands the same configurations out in batches
(`ConfigStream`), and `Space.table` checks configurations you list.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from jaxtune._checks import positive_int

from .dimensions import Dimension
from .samplers import Grid, resolve
from .stream import ConfigStream
from .table import Table, build
from .values import DEFAULT_POINTS, check_count_limit, is_number, show

__all__ = ["Space"]


def _describe_non_dimension(name: str, value: Any) -> str:
    if is_number(value):
        return (
            f"`{name}` must be a dimension, got the number {show(value)}; write "
            f"{name}=fixed({show(value)}) for a constant."
        )
    if isinstance(value, (list, tuple)):
        return (
            f"`{name}` must be a dimension, got the {type(value).__name__} {show(value)}; "
            f"write {name}=choice({show(list(value))}) to choose among these values."
        )
    return (
        f"`{name}` must be a dimension (uniform, loguniform, randint, choice or fixed), "
        f"got {type(value).__name__} {show(value)}; wrap a constant in fixed(...)."
    )


class Space:
    """Named hyperparameters and the set each is drawn from.

    Names are keyword arguments of your model/optimizer factory, so they must be
    valid Python identifiers. Insertion order is kept: it is the column order of
    tables and the order in which dimensions consume the random generator.
    An empty space is allowed: one configuration, no hyperparameters.

    Args:
      dims: static; a mapping name -> `Dimension` (positional only), merged with
      **dims: static; more dimensions by keyword.

    Example:
      >>> import jaxtune as jt
      >>> space = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1),
      ...                  activation=jt.choice(["relu", "tanh"]))
      >>> space.names, space.static_names
      (('learning_rate', 'activation'), ('activation',))
      >>> len(space.sample(sampler="grid", points=3))
      6
    """

    __slots__ = ("_dims",)

    def __init__(self, dims: Mapping[str, Dimension] | None = None, /, **kwargs: Dimension):
        merged: dict[str, Dimension] = {}
        if dims is not None:
            if isinstance(dims, Space):
                dims = dims._dims
            if not isinstance(dims, Mapping):
                raise TypeError(
                    f"`dims` must be a mapping name -> dimension, got {type(dims).__name__}; "
                    "or pass the dimensions as keyword arguments."
                )
            merged.update(dims)
        for name, dim in kwargs.items():
            if name in merged:
                raise ValueError(
                    f"`{name}` is given twice, in `dims` and as a keyword argument; give it once."
                )
            merged[name] = dim
        for name, dim in merged.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"dimension names must be strings, got {type(name).__name__} {name!r}."
                )
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(
                    f"dimension name {name!r} is not a valid Python identifier; names become "
                    "keyword arguments, so use letters, digits and underscores "
                    f"(e.g. {_suggest_identifier(name)!r})."
                )
            if not isinstance(dim, Dimension):
                raise TypeError(_describe_non_dimension(name, dim))
        object.__setattr__(self, "_dims", MappingProxyType(merged))

    @property
    def names(self) -> tuple[str, ...]:
        """All names, in insertion order."""
        return tuple(self._dims)

    @property
    def static_names(self) -> tuple[str, ...]:
        """Names of the static dimensions, in insertion order."""
        return tuple(name for name, dim in self._dims.items() if dim.static)

    @property
    def dynamic_names(self) -> tuple[str, ...]:
        """Names of the dynamic dimensions, in insertion order."""
        return tuple(name for name, dim in self._dims.items() if not dim.static)

    @property
    def size(self) -> int | None:
        """The number of distinct configurations, or None if any dimension is continuous.

        When every dimension is discrete it is the product of their counts: a
        `choice` counts its values, a `fixed` 1, `randint(low, high)` high - low. An
        empty space has 1 configuration. It is an exact Python int, however large
        (compare it with `MAX_CONFIGURATIONS` before enumerating). The grid sampler
        enumerates all of them when `points` covers every `randint` range
        (points[name] >= high - low); choices and fixed values always give all their
        values.

        Example:
          >>> import jaxtune as jt
          >>> jt.Space(a=jt.choice([0.1, 0.2, 0.3]), b=jt.randint(0, 4), c=jt.fixed(1)).size
          12
          >>> jt.Space(a=jt.choice([0.1, 0.2]), lr=jt.loguniform(1e-4, 1e-1)).size is None
          True
        """
        counts = [dim._count for dim in self._dims.values()]
        if any(count is None for count in counts):
            return None
        return math.prod(counts)

    def __getitem__(self, name: str) -> Dimension:
        try:
            return self._dims[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not in the space; it has: {', '.join(self._dims) or 'nothing'}."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._dims

    def __len__(self) -> int:
        return len(self._dims)

    def __iter__(self) -> Iterator[str]:
        return iter(self._dims)

    def items(self):
        """(name, dimension) pairs, in insertion order."""
        return self._dims.items()

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={dim!r}" for name, dim in self._dims.items())
        return f"Space({inner})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Space):
            return NotImplemented
        return self.names == other.names and all(
            self._dims[name] == other._dims[name] for name in self.names
        )

    def __hash__(self) -> int:
        return hash(self.names)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Space is immutable; build a new Space instead of setting `{name}`.")

    def __reduce__(self):
        return Space, (dict(self._dims),)

    # ---- sampling

    def sample(
        self,
        n: int | None = None,
        *,
        sampler: str = "random",
        seed: int = 0,
        points: int | Mapping[str, int] = DEFAULT_POINTS,
    ) -> Table:
        """Draws configurations.

        Samplers (`jaxtune.space.samplers` states each one's rule):

        - "random": configuration i is a pure function of (seed, i), from the
          counter-based `np.random.Philox(seed)`, one coordinate per dimension mapped
          with `Dimension.from_unit`.
        - "sobol", "halton": scrambled quasi-random points from `scipy.stats.qmc`
          (mapped the same way); they cover the space more evenly than random draws.
          Any `n` works for Sobol (powers of two balance best).
        - "grid": every combination of each dimension's `grid(points)`, the first
          dimension varying slowest. `choice` and `fixed` use all their values.

        Draws are reproducible for a given seed (and, for Sobol and Halton, scipy
        version). A table holds at most `MAX_CONFIGURATIONS` rows: a larger `n` or
        grid is refused before anything is allocated. To draw configurations in
        batches as a search needs them, use `Space.stream`: its first n
        configurations are these, for every sampler.

        Args:
          n: static; the number of configurations, a positive int. For "grid" it is
            optional (None: the whole grid) and, if given, must equal the grid size.
          sampler: static; one of "random", "grid", "sobol", "halton".
          seed: static; a non-negative int. Unused by "grid".
          points: static; grid points per continuous or integer dimension, an int
            or a mapping name -> int (missing names get 5). Used only by "grid".

        Returns:
          A `Table` with one row per configuration.
        """
        chosen = resolve(self, sampler, seed=seed, points=points)
        if isinstance(chosen, Grid):
            n = self._grid_rows(chosen, n)
        elif n is None:
            raise TypeError(
                f"`n` is required for sampler={sampler!r}: the number of configurations to draw."
            )
        else:
            n = positive_int("n", n)
            check_count_limit(
                "n", n,
                "draw fewer (a few hundred configurations already cover a space well), or "
                "draw them in batches as the search needs them with Space.stream(...).ask(n).",
            )
        columns, codes = chosen.columns(self, 0, n)
        return Table._make(self, columns, codes, n)

    def _grid_rows(self, grid: Grid, n: int | None) -> int:
        """The number of rows of the whole grid; `n`, when given, must be it."""
        total = grid.size(self)
        if n is not None and positive_int("n", n) != total:
            sizes = grid.sizes(self)
            product = " x ".join(map(str, sizes)) if sizes else "1 (an empty space)"
            raise ValueError(
                f"`n`={n} does not match the grid, which has {product} = {total} "
                f"configurations; pass n=None (or n={total}), or change `points`."
            )
        return total

    def stream(
        self,
        *,
        sampler: str = "random",
        seed: int = 0,
        points: int | Mapping[str, int] = DEFAULT_POINTS,
    ) -> ConfigStream:
        """A deterministic, resumable stream of configurations, for searches that ask for more over time.

        `ConfigStream(self, sampler=..., seed=..., points=...)`; see `ConfigStream`
        for the rule each sampler follows.

        Example:
          >>> import jaxtune as jt
          >>> space = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1))
          >>> stream = space.stream(sampler="sobol", seed=0)
          >>> first, more = stream.ask(3), stream.ask(5)
          >>> stream.position, len(more)
          (8, 5)
        """
        return ConfigStream(self, sampler=sampler, seed=seed, points=points)

    # ---- explicit tables

    def table(self, data: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | Table
              ) -> Table:
        """Builds a table from configurations you list.

        Every value is checked against its dimension.

        Args:
          data: a mapping name -> sequence of values (all the same length), a list
            of mappings name -> value (one per configuration), or a `Table`.

        Returns:
          A `Table` with one row per configuration.

        Example:
          >>> import jaxtune as jt
          >>> space = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1))
          >>> space.table([{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]).row(0)
          {'learning_rate': 0.0010000000474974513}
        """
        return build(self, data)


def _suggest_identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    if keyword.iskeyword(cleaned):
        cleaned += "_"
    return cleaned

