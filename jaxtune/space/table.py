"""The hyperparameter table: one row per configuration of a `Space`.

`Space.sample`, `Space.table` and `ConfigStream.ask` return tables; `build` (what
`Space.table` and `Table(space, data)` run) checks configurations you list against their
dimensions and stores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .values import is_integer, object_array, readonly, show

if TYPE_CHECKING:
    from .space import Space

__all__ = ["Table"]


def space_argument(space: Any, what: str = "") -> Space:
    """`space` if it is a `Space`; TypeError otherwise.

    `Space` builds tables and streams (its module imports this one), so a space is
    recognised here by what makes it one, its read-only mapping of dimensions, not by
    `isinstance`.
    """
    if not hasattr(type(space), "_dims") or not callable(getattr(space, "items", None)):
        raise TypeError(f"`space` must be a Space, got {type(space).__name__}{what}.")
    return space


class Table:
    """The hyperparameter table: one row per configuration.

    Dynamic columns are float32/int32 arrays of shape [N], ready to become the
    hyperparameter arrays of a population (`dynamic`); static columns are 1-D object
    arrays of Python values. A `Family` column is dynamic (int32 indices) but shown by
    name (`columns`, `row`, `to_dict`). All arrays are read-only. Build tables with `Space.sample`
    or `Space.table` (`Table(space, data)` is `space.table(data)`).

    Attributes:
      space: the `Space` the table belongs to.
    """

    __slots__ = ("_codes", "_columns", "_n", "_space")

    def __init__(self, space: Space, data: Any, /) -> None:
        other = build(space_argument(space), data)
        self._space, self._n = other._space, other._n
        self._columns, self._codes = other._columns, other._codes

    @classmethod
    def _make(
        cls, space: Space, columns: dict[str, np.ndarray],
        codes: dict[str, np.ndarray | None], n: int,
    ) -> Table:
        table = cls.__new__(cls)
        table._space = space
        table._n = int(n)
        table._columns = {name: readonly(np.asarray(columns[name])) for name in space.names}
        table._codes = {
            name: None if codes[name] is None else readonly(np.asarray(codes[name], np.intp))
            for name in space.names
        }
        return table

    def __reduce__(self):
        return _restore_table, (self._space, dict(self._columns), dict(self._codes), self._n)

    @property
    def space(self) -> Space:
        return self._space

    @property
    def names(self) -> tuple[str, ...]:
        return self._space.names

    @property
    def static_names(self) -> tuple[str, ...]:
        return self._space.static_names

    @property
    def dynamic_names(self) -> tuple[str, ...]:
        return self._space.dynamic_names

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """name -> read-only array of shape [N] (a new dict each call), as results show it.

        A `Family` column holds its names here (an object array); `dynamic` gives the
        int32 indices the compiled program takes.
        """
        return {name: readonly(self._space[name]._shown(column))
                for name, column in self._columns.items()}

    def dynamic(self) -> dict[str, np.ndarray]:
        """The dynamic columns only: name -> read-only float32/int32 array [N], as stored."""
        return {name: self._columns[name] for name in self.dynamic_names}

    def __len__(self) -> int:
        return self._n

    def _value(self, name: str, i: int) -> Any:
        codes = self._codes[name]
        dim = self._space[name]
        return dim._to_python(self._columns[name][i], None if codes is None else int(codes[i]))

    def _index(self, i: Any) -> int:
        if not is_integer(i):
            raise TypeError(f"`i` must be an integer row index, got {type(i).__name__} {show(i)}.")
        if not -self._n <= i < self._n:
            raise IndexError(f"row {int(i)} is out of range for a table of {self._n} rows.")
        return int(i) % self._n

    def row(self, i: int) -> dict[str, Any]:
        """Configuration `i` as name -> plain Python value (float, int, str, ...).

        Choice and fixed values come back exactly as declared (e.g. 1e-4, not
        its float32 rounding); uniform and loguniform values are the stored
        float32 value as a Python float.
        """
        i = self._index(i)
        return {name: self._value(name, i) for name in self.names}

    def rows(self) -> list[dict[str, Any]]:
        """Every configuration, as `row` gives it."""
        columns = self.to_dict()
        return [{name: columns[name][i] for name in self.names} for i in range(self._n)]

    def to_dict(self) -> dict[str, list[Any]]:
        """name -> list of plain Python values, one per row."""
        out: dict[str, list[Any]] = {}
        for name, dim in self._space.items():
            codes = self._codes[name]
            if codes is None:
                out[name] = [dim._to_python(v, None) for v in self._columns[name].tolist()]
            else:
                out[name] = [dim._to_python(None, c) for c in codes.tolist()]
        return out

    def take(self, indices: Any) -> Table:
        """The rows at `indices`, in that order (repeats allowed, negatives count from the end).

        Args:
          indices: a 1-D sequence or array of integer row indices.

        Returns:
          A new `Table` with len(indices) rows.
        """
        index = np.asarray(indices)
        if index.dtype == np.bool_:
            raise TypeError(
                "`indices` must be integer row indices, got booleans; convert a mask "
                "with np.flatnonzero(mask)."
            )
        if index.size == 0:
            index = index.astype(np.intp)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise TypeError(
                f"`indices` must be a 1-D sequence of integers, got {show(indices)}."
            )
        bad = np.flatnonzero((index < -self._n) | (index >= self._n))
        if bad.size:
            raise IndexError(
                f"`indices`[{int(bad[0])}] = {int(index[bad[0]])} is out of range for a "
                f"table of {self._n} rows."
            )
        index = index.astype(np.intp) % max(self._n, 1)
        columns = {name: column[index] for name, column in self._columns.items()}
        codes = {name: None if c is None else c[index] for name, c in self._codes.items()}
        return Table._make(self._space, columns, codes, len(index))

    def static_groups(self) -> list[tuple[dict[str, Any], np.ndarray]]:
        """Rows grouped by their static values, one group per compiled program.

        Returns:
          A list of (static values as name -> Python value, row indices as an int
          array), groups in order of first appearance, indices ascending. With no
          static dimensions: one group `({}, arange(N))`.
        """
        static = self.static_names
        if not static:
            return [({}, np.arange(self._n))]
        keys = zip(*(self._codes[name].tolist() for name in static))  # type: ignore[union-attr]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        return [
            (
                {name: self._space[name]._to_python(None, code) for name, code in zip(static, key)},
                np.asarray(rows, dtype=np.intp),
            )
            for key, rows in groups.items()
        ]

    def __repr__(self) -> str:
        return f"Table(N={self._n}, names={list(self.names)!r})"


def _restore_table(space, columns, codes, n) -> Table:
    return Table._make(space, columns, codes, n)


def build(space: Space, data: Any) -> Table:
    """A table of the configurations listed in `data`, each value checked against its dimension.

    `data` is a mapping name -> sequence of values, a list of mappings name -> value, or
    a `Table` (see `Space.table`).
    """
    if isinstance(data, Table):
        data = data.to_dict()
    if isinstance(data, Mapping):
        columns = _columns_from_mapping(space, data)
        # An empty space has one configuration, so `{}` is one row.
        n = len(next(iter(columns.values()))) if columns else 1
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        columns = _columns_from_rows(space, data)
        n = len(data)
    else:
        hint = (
            " For a pandas DataFrame pass df.to_dict('list')."
            if hasattr(data, "to_dict") else ""
        )
        raise TypeError(
            "`data` must be a mapping name -> list of values or a list of mappings "
            f"name -> value, got {type(data).__name__}.{hint}"
        )
    if n == 0:
        raise ValueError("`data` has no configurations; give at least one.")
    stored: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray | None] = {}
    for name, dim in space.items():
        values = columns[name]
        encoded = []
        for i, value in enumerate(values):
            member = dim._encode(value)
            if member is None:
                raise ValueError(
                    f"`{name}`: row {i} has value {show(value)}, outside {dim!r}."
                )
            encoded.append(member)
        if dim.static:
            stored[name] = object_array([s for s, _ in encoded])
        else:
            stored[name] = np.asarray([s for s, _ in encoded], dtype=dim.dtype)
        # A dimension that indexes its values (a list of options, a static randint)
        # encodes each with its index; the others encode every value with None.
        indices = [c for _, c in encoded]
        codes[name] = None if indices[0] is None else np.asarray(indices, dtype=np.intp)
    return Table._make(space, stored, codes, n)


def _check_names(space: Space, given: Sequence[str], where: str) -> None:
    unknown = [name for name in given if name not in space]
    if unknown:
        raise ValueError(
            f"{where} has unknown name{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(f'`{u}`' for u in unknown)}; the space has: "
            f"{', '.join(space) or 'nothing'}."
        )
    missing = [name for name in space if name not in given]
    if missing:
        raise ValueError(
            f"{where} is missing {', '.join(f'`{m}`' for m in missing)}; every "
            "configuration needs a value for each name in the space (put a constant "
            "in the space as fixed(...))."
        )

def _columns_from_mapping(space: Space, data: Mapping[str, Any]) -> dict[str, list[Any]]:
    _check_names(space, list(data), "`data`")
    columns: dict[str, list[Any]] = {}
    for name in space:
        column = data[name]
        if isinstance(column, np.ndarray):
            if column.ndim != 1:
                raise ValueError(
                    f"column `{name}` must be one-dimensional, got shape {column.shape}."
                )
            columns[name] = list(column)
        elif isinstance(column, (str, bytes, Mapping)) or not hasattr(column, "__len__") \
                or not hasattr(column, "__iter__"):
            raise TypeError(
                f"column `{name}` must be a sequence of values, got "
                f"{type(column).__name__} {show(column)}; for one configuration write "
                f"{name}=[{show(column)}]."
            )
        else:
            columns[name] = list(column)
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "columns of `data` must have equal lengths, got "
            + ", ".join(f"{name}: {length}" for name, length in lengths.items())
            + "."
        )
    return columns

def _columns_from_rows(space: Space, rows: Sequence[Any]) -> dict[str, list[Any]]:
    if not rows:
        raise ValueError("`data` has no configurations; give at least one.")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(
                f"row {i} of `data` must be a mapping name -> value, got "
                f"{type(row).__name__} {show(row)}."
            )
        _check_names(space, list(row), f"row {i} of `data`")
    return {name: [row[name] for row in rows] for name in space}

