"""A `SweepResult` as one ``.npz`` file: `save` and `load`, without pickle.

The file holds the result's arrays as they are, and one JSON entry, ``__meta__``, with
the format's name and version, the metric, mode and timing, the static hyperparameter
columns, and where each array went. Each `params` / `model_state` leaf is stored with its
`jax.tree_util` key path, from which `load` rebuilds a tree of plain containers. Files
are read with ``allow_pickle=False``, and what a file asks for is bounded by what it
holds: a crafted key path cannot make `load` allocate more than the file's arrays fill.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxtune._io import write_atomically

if TYPE_CHECKING:
    from jaxtune.results.result import SweepResult

_FORMAT = "jaxtune.SweepResult"
# 2: `status`, `steps_trained`, params by structured key path; 3: model_state;
# 4: `member_params` and `member_model_state` (one tree per member, of any shape)
_FORMAT_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, 4)
# The per-member arrays every version stores under their field's name.
_MEMBER_ARRAYS = ("trial", "seed", "steps", "train_loss", "diverged", "diverged_step")


def save(result: SweepResult, path: str | os.PathLike) -> None:
    """Writes `result` to one ``.npz`` file at exactly `path`, atomically (see
    `SweepResult.save`)."""
    arrays: dict[str, np.ndarray] = {
        "trial": result.trial,
        "seed": result.seed,
        "steps": result.steps,
        "train_loss": result.train_loss,
        "diverged": result.diverged,
        "diverged_step": result.diverged_step,
        "status": result.status,
        "steps_trained": result.steps_trained,
    }
    if result.step_loss is not None:
        arrays["step_loss"] = result.step_loss
    for name, history in (result.hparam_history or {}).items():
        arrays[f"hparam_history:{name}"] = history
    if result.lineage is not None:
        arrays["lineage"] = result.lineage
    hparams_meta = []
    for i, (name, column) in enumerate(result.hparams.items()):
        if column.dtype == object:
            hparams_meta.append({"name": name, "static": True,
                                 "values": _json_column(name, column)})
        else:
            arrays[f"hparam_{i}"] = column
            hparams_meta.append({"name": name, "static": False, "key": f"hparam_{i}"})
    metrics_meta = []
    for i, (name, curve) in enumerate(result.metrics.items()):
        arrays[f"metric_{i}"] = curve
        metrics_meta.append({"name": name, "key": f"metric_{i}"})
    meta = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "metric": result.metric,
        "mode": result.mode,
        "timing": result.timing,
        "hparams": hparams_meta,
        "metrics": metrics_meta,
        "params": _store_tree("params", result.params, "param_", arrays),
        "model_state": _store_tree("model_state", result.model_state, "model_state_", arrays),
        "member_params": _store_members("member_params", result.member_params, arrays),
        "member_model_state": _store_members("member_model_state", result.member_model_state,
                                             arrays),
    }
    arrays["__meta__"] = np.array(json.dumps(meta))
    write_atomically(os.fspath(path), lambda file: np.savez_compressed(file, **arrays))


def load(cls: type[SweepResult], path: str | os.PathLike) -> SweepResult:
    """The result `save` wrote at `path`, built as `cls` (see `SweepResult.load`)."""
    where = os.fspath(path)
    problem = (
        f"`path` {where!r} is not a readable SweepResult file written by `SweepResult.save`"
    )
    arrays = _read_archive(where, problem)
    meta = _read_meta(arrays, where, problem)

    def array(key: str) -> np.ndarray:
        if key not in arrays:
            raise ValueError(f"{problem}: it is missing the array {key!r}.")
        return arrays[key]

    try:
        fields = _fields(meta, arrays, array, problem)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{problem}: its metadata lacks or mangles {err}.") from err
    for key in _MEMBER_ARRAYS:
        fields[key] = array(key)
    if meta["version"] >= 2:
        fields["status"] = array("status")
        fields["steps_trained"] = array("steps_trained")
    try:
        return cls(**fields)
    except (ValueError, TypeError) as err:
        raise ValueError(f"`path` {where!r} holds an inconsistent SweepResult: {err}") from err


def _read_archive(where: str, problem: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file at `where`, read without pickle."""
    try:
        with open(where, "rb") as file:
            magic = file.read(6)
            file.seek(0)
            if magic == b"\x93NUMPY":
                raise ValueError("it holds a single array, not an .npz archive")
            if not magic.startswith(b"PK"):
                raise ValueError("it is not an .npz (zip) archive")
            data = np.load(file, allow_pickle=False)
            with data:
                return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{problem}: {err}") from err


def _read_meta(arrays: dict[str, np.ndarray], where: str, problem: str) -> dict[str, Any]:
    """The file's ``__meta__`` entry, checked to name this format in a readable version."""
    if "__meta__" not in arrays:
        raise ValueError(f"{problem}: it has no `__meta__` entry.")
    try:
        meta = json.loads(str(arrays["__meta__"][()]))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{problem}: its metadata is not valid JSON ({err}).") from err
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{problem}: its metadata does not name the format {_FORMAT!r}.")
    version = meta.get("version")
    if version not in _READABLE_VERSIONS:
        raise ValueError(
            f"`path` {where!r} holds SweepResult format version {version!r}, this "
            f"jaxtune reads versions {', '.join(map(str, _READABLE_VERSIONS))}; load "
            "it with the jaxtune that wrote it."
        )
    return meta


def _fields(meta: dict[str, Any], arrays: dict[str, np.ndarray], array: Any, problem: str
            ) -> dict[str, Any]:
    """The result's fields that `meta` describes (all but the per-member arrays)."""
    version = meta["version"]
    hparams = {}
    for entry in meta["hparams"]:
        if entry["static"]:
            values = entry["values"]
            column = np.empty(len(values), dtype=object)
            for i, value in enumerate(values):
                column[i] = value
            hparams[entry["name"]] = column
        else:
            hparams[entry["name"]] = array(entry["key"])
    metrics = {entry["name"]: array(entry["key"]) for entry in meta["metrics"]}
    params = _load_tree("params", meta["params"], array, version, problem)
    model_state = _load_tree("model_state", meta["model_state"] if version >= 3
                             else None, array, version, problem)
    member_params, member_model_state = (
        _load_members(key, meta[key] if version >= 4 else None, array, version, problem)
        for key in ("member_params", "member_model_state"))
    return {
        "hparams": hparams, "metrics": metrics, "params": params,
        "model_state": model_state, "member_params": member_params,
        "member_model_state": member_model_state,
        "metric": meta["metric"], "mode": meta["mode"], "timing": meta["timing"],
        "step_loss": arrays.get("step_loss"),
        "lineage": arrays.get("lineage"),
        "hparam_history": {key.split(":", 1)[1]: arrays[key] for key in arrays
                           if key.startswith("hparam_history:")} or None,
    }


def _json_column(name: str, column: np.ndarray) -> list:
    values = list(column)
    try:
        text = json.dumps(values, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"Cannot save static hyperparameter `{name}`: {err}. `save` stores static values "
            "as JSON, so they must be str, int, float (finite), bool, None, or lists / "
            "str-keyed dicts of these."
        ) from err
    if not _same_json(json.loads(text), values):
        raise TypeError(
            f"Cannot save static hyperparameter `{name}`: its values {values!r} would not "
            "come back unchanged from JSON (tuples become lists, dict keys become str); "
            "use lists and str keys."
        )
    return values


def _same_json(loaded: Any, original: Any) -> bool:
    if type(loaded) is not type(original):
        return False
    if isinstance(original, list):
        return len(loaded) == len(original) and all(map(_same_json, loaded, original))
    if isinstance(original, dict):
        return loaded.keys() == original.keys() and all(
            _same_json(loaded[k], original[k]) for k in original
        )
    return loaded == original


def _store_tree(name: str, tree: Any, prefix: str, arrays: dict[str, np.ndarray]) -> list | None:
    """Puts each leaf of `tree` into `arrays` as `<prefix><i>`; the leaves' metadata, or None."""
    if tree is None:
        return None
    entries = []
    for i, (key_path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(tree)[0]):
        leaf = np.asarray(leaf)
        if leaf.dtype.kind == "O":
            raise TypeError(
                f"Cannot save `{name}` leaf {jax.tree_util.keystr(key_path)}: it is an object "
                "array, which needs pickle; make every leaf a numeric array."
            )
        arrays[f"{prefix}{i}"] = leaf
        entries.append({"path": _path_entries(key_path), "key": f"{prefix}{i}",
                        "dtype": str(leaf.dtype)})
    return entries


def _store_members(name: str, trees: dict[int, Any] | None, arrays: dict[str, np.ndarray]
                   ) -> list | None:
    """`_store_tree` for each member's tree: [{"member": m, "leaves": entries}, ...]."""
    if trees is None:
        return None
    return [{"member": member, "leaves": _store_tree(f"{name}[{member}]", tree,
                                                     f"{name}_{member}_", arrays)}
            for member, tree in trees.items()]


def _load_members(name: str, entries: list | None, array: Any, version: int, problem: str
                  ) -> dict[int, Any] | None:
    """The {member: tree} that `_store_members` saved as `entries`."""
    if entries is None:
        return None
    return {entry["member"]: _load_tree(name, entry["leaves"], array, version, problem)
            for entry in entries}


def _load_tree(name: str, entries: list | None, array: Any, version: int, problem: str) -> Any:
    """The tree `_store_tree` saved as `entries` (a flat {keystr: leaf} dict in version 1)."""
    if entries is None:
        return None
    leaves = [(entry["path"], _restore_dtype(array(entry["key"]), entry["dtype"], name, problem))
              for entry in entries]
    if version == 1:
        return dict(leaves)
    stored = sum(array(key).nbytes for key in {entry["key"] for entry in entries})
    return _tree_from_paths(leaves, name, problem, _EMPTY_LIST_POSITIONS + stored)


def _restore_dtype(array: np.ndarray, dtype_name: str, name: str, problem: str) -> np.ndarray:
    """Views leaves NumPy stores as raw bytes (bfloat16, float8, ...) as their dtype."""
    if str(array.dtype) == dtype_name:
        return array
    import ml_dtypes

    dtype = getattr(ml_dtypes, dtype_name, None)
    if dtype is None or np.dtype(dtype).itemsize != array.dtype.itemsize:
        raise ValueError(f"{problem}: a `{name}` leaf has dtype {array.dtype}, not {dtype_name}.")
    return array.view(dtype)


def _path_entries(key_path: tuple) -> list[dict[str, Any]]:
    """A `jax.tree_util` key path as JSON: {"key": k} (dict key), {"index": i} (sequence
    position) or {"attr": name} (named field), one per level."""
    entries: list[dict[str, Any]] = []
    for entry in key_path:
        if isinstance(entry, jax.tree_util.DictKey):
            key = entry.key
            if isinstance(key, np.integer):
                key = int(key)
            entries.append({"key": key if isinstance(key, (str, int)) else str(key)})
        elif isinstance(entry, jax.tree_util.SequenceKey):
            entries.append({"index": int(entry.idx)})
        elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
            entries.append({"index": int(entry.key)})
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            entries.append({"attr": entry.name})
        else:  # a custom node's own key type
            entries.append({"key": str(entry)})
    return entries


# A list position that no key path reaches holds None (an empty subtree, e.g. optax's
# EmptyState), so the key paths alone could ask for lists of any length: a crafted file of
# 1 kB asked for 8 GB of list (position 10**9), or 2**62 (a MemoryError). The lists of one
# tree may hold this many positions, plus one per byte of its distinct stored leaves.
_EMPTY_LIST_POSITIONS = 2**16


def _tree_from_paths(leaves: list[tuple[Any, np.ndarray]], name: str, problem: str,
                     positions: int) -> Any:
    """Rebuilds nested dicts and lists from (key path entries, leaf) pairs.

    Its lists may hold at most `positions` positions in all.
    """
    for path, _ in leaves:
        if not isinstance(path, list) or not all(_path_entry_ok(e) for e in path):
            raise ValueError(f"{problem}: a `{name}` key path is mangled: {path!r}.")
    highest: dict[str, int] = {}  # each list, by the key path to it: its highest position
    for path, _ in leaves:
        for depth, entry in enumerate(path):
            if "index" in entry:
                where = json.dumps(path[:depth])
                highest[where] = max(highest.get(where, 0), entry["index"])
    if sum(highest.values()) + len(highest) > positions:
        furthest = max((path for path, _ in leaves),
                       key=lambda path: max(entry.get("index", -1) for entry in path))
        index = max(entry.get("index", -1) for entry in furthest)
        raise ValueError(
            f"{problem}: its `{name}` key path {furthest!r} puts a leaf at list position "
            f"{index}, more than the file's arrays fill: its lists would hold "
            f"{sum(highest.values()) + len(highest)} positions, its leaves allow {positions}.")
    return _tree_node(leaves, name, problem)


def _path_entry_ok(entry: Any) -> bool:
    if not isinstance(entry, dict) or len(entry) != 1:
        return False
    (kind, value), = entry.items()
    if kind == "index":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return (kind == "attr" and isinstance(value, str)) or (
        kind == "key" and isinstance(value, (str, int))
    )


def _tree_node(leaves: list[tuple[list, np.ndarray]], name: str, problem: str) -> Any:
    if len(leaves) == 1 and not leaves[0][0]:
        return leaves[0][1]
    kinds = {"list" if path and "index" in path[0] else "dict" for path, _ in leaves}
    if any(not path for path, _ in leaves) or len(kinds) != 1:
        raise ValueError(f"{problem}: its `{name}` key paths do not form a tree.")
    children: dict[Any, list] = {}
    for path, leaf in leaves:
        (_, key), = path[0].items()
        children.setdefault(key, []).append((path[1:], leaf))
    if kinds == {"dict"}:
        return {key: _tree_node(child, name, problem) for key, child in children.items()}
    # Positions with no leaves (e.g. an optax EmptyState) hold None, an empty subtree.
    node: list[Any] = [None] * (max(children) + 1)
    for index, child in children.items():
        node[index] = _tree_node(child, name, problem)
    return node
