"""Writes the intersphinx inventories of docs/conf.py, so that the build needs no network.

Each `<project>.inv` lists the names jaxtune's pages and type annotations refer to,
with the page of the project's public documentation that holds each; the format is
Sphinx's inventory version 2 (a four-line header, then zlib-compressed lines of
`name domain:role priority uri display-name`, where `$` in the uri stands for the
name). To link one more name, add it below and run, from the repository root:

    python docs/_inventories/make.py

The pages were read on 2026-12-05; if a project reorganises its documentation,
correct the page here.
"""

from __future__ import annotations

import pathlib
import zlib

HERE = pathlib.Path(__file__).resolve().parent

# project -> {name: (domain:role, page relative to the project's documentation root)}
INVENTORIES: dict[str, dict[str, tuple[str, str]]] = {
    "optax": {
        "optax.GradientTransformation": ("py:class", "api/transformations.html#$"),
        "optax.GradientTransformationExtraArgs": ("py:class", "api/transformations.html#$"),
        "optax.Schedule": ("py:class", "api/optimizer_schedules.html#$"),
        "optax.inject_hyperparams": ("py:function", "api/optimizer_schedules.html#$"),
        "optax.chain": ("py:function", "api/combining_optimizers.html#$"),
        "optax.adam": ("py:function", "api/optimizers.html#$"),
        "optax.adamw": ("py:function", "api/optimizers.html#$"),
        "optax.sgd": ("py:function", "api/optimizers.html#$"),
    },
    "jax": {
        "jax.Array": ("py:class", "_autosummary/jax.Array.html#$"),
        "jax.typing.ArrayLike": ("py:class", "_autosummary/jax.typing.ArrayLike.html#$"),
        "jax.jit": ("py:function", "_autosummary/jax.jit.html#$"),
        "jax.vmap": ("py:function", "_autosummary/jax.vmap.html#$"),
        "jax.devices": ("py:function", "_autosummary/jax.devices.html#$"),
    },
    "numpy": {
        "numpy.ndarray": ("py:class", "reference/generated/numpy.ndarray.html#$"),
        "numpy.dtype": ("py:class", "reference/generated/numpy.dtype.html#$"),
        "numpy.random.Generator": ("py:class", "reference/random/generator.html#$"),
    },
    "optuna": {
        "optuna.study.Study": ("py:class", "reference/generated/optuna.study.Study.html#$"),
        "optuna.trial.FrozenTrial": ("py:class", "reference/generated/optuna.trial.FrozenTrial.html#$"),
        "optuna.samplers.BaseSampler": ("py:class",
                                        "reference/samplers/generated/optuna.samplers.BaseSampler.html#$"),
        "optuna.pruners.BasePruner": ("py:class", "reference/generated/optuna.pruners.BasePruner.html#$"),
    },
    "python": {
        **{f"collections.abc.{name}": ("py:class", "library/collections.abc.html#$")
           for name in ["Callable", "Iterable", "Iterator", "Mapping", "Sequence"]},
        "os.PathLike": ("py:class", "library/os.html#$"),
        "typing.Any": ("py:class", "library/typing.html#$"),
        **{name: ("py:exception", "library/exceptions.html#$")
           for name in ["KeyboardInterrupt", "TypeError", "ValueError", "RuntimeError"]},
    },
}


def inventory(project: str, names: dict[str, tuple[str, str]]) -> bytes:
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
              "# The remainder of this file is compressed using zlib.\n")
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, (role, uri) in sorted(names.items()))
    return header.encode() + zlib.compress(body.encode(), 9)


def main() -> None:
    for project, names in INVENTORIES.items():
        path = HERE / f"{project}.inv"
        path.write_bytes(inventory(project, names))
        print(f"{path}: {len(names)} names")


if __name__ == "__main__":
    main()
