"""Sphinx configuration for the jaxtune documentation.

Build (from the repository root, after `pip install -e '.[docs]'`):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

`-W` turns every warning into an error; `tests/test_docs.py` runs the same
command in the test suite. Nothing is executed: the notebooks in `notebooks/` are
rendered with the outputs they were committed with (Getting started includes
`notebooks/lr_sweep.ipynb` cell by cell, written to `_generated/`), and the API
reference is generated from the docstrings of every name in `jaxtune.__all__`.
Nothing is fetched either: MathJax comes from the `sphinx-mathjax-offline`
package and the intersphinx inventories from `_inventories/`, so the build and the
site work without a network.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import pathlib
import re
import shutil
import sys

import sphinx.util.inspect

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import jaxtune  # noqa: E402

project = "jaxtune"
author = "the jaxtune authors"
copyright = "the jaxtune authors"
release = version = jaxtune.__version__

# Where the project lives. It has no public home yet: these two addresses are
# placeholders (example.org is reserved for examples), and the pages that show them
# say so; set them here when it is published.
repository_url = "https://example.org/jaxtune.git"
issues_url = "https://example.org/jaxtune/issues"

extensions = [
    "myst_nb",                  # Markdown pages and executed notebooks (as optax and flax do)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",   # the one-line summary table at the top of each API section
    "sphinx.ext.napoleon",      # the Google-style `Args:` / `Returns:` of the docstrings
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",   # serves its pinned MathJax 3.2.2 from _static/: no CDN
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

# Markdown with `$...$` math; notebooks are shown as committed, never re-run.
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist", "substitution"]
myst_substitutions = {"repository_url": repository_url, "issues_url": issues_url}
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_merge_streams = True

# Docstrings write code names in single backticks, as in Markdown.
default_role = "code"
autodoc_member_order = "bysource"
# Types go beside each argument's description, not into the signature; a signature
# longer than a line shows one parameter per line.
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
python_display_short_literal_types = True
maximum_signature_line_length = 88
autosummary_generate = False
# Aliases the modules annotate with, shown by name instead of expanded (jax's ArrayLike
# is a union of eight types).
autodoc_type_aliases = {"ArrayLike": "jax.typing.ArrayLike", "Schedule": "optax.Schedule"}
# Sphinx 9 prints such an alias inside a union (`ArrayLike | None`) by its repr,
# "TypeAliasForwardRef('jax.typing.ArrayLike')"; its name is what a reader needs.
sphinx.util.inspect.TypeAliasForwardRef.__repr__ = lambda self: self.name
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True        # `Attributes:` as fields, not as duplicate object entries
napoleon_use_rtype = False

# The types of optax, JAX, NumPy and Optuna link to their documentation through
# inventories committed in docs/_inventories/ (no network at build time);
# docs/_inventories/make.py writes them again.
intersphinx_mapping = {
    name: (url, str(DOCS / "_inventories" / f"{name}.inv"))
    for name, url in {
        "optax": "https://optax.readthedocs.io/en/latest/",
        "jax": "https://docs.jax.dev/en/latest/",
        "numpy": "https://numpy.org/doc/stable/",
        "optuna": "https://optuna.readthedocs.io/en/stable/",
        "python": "https://docs.python.org/3/",
    }.items()
}

html_theme = "sphinx_book_theme"
html_title = "jaxtune"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
exclude_patterns = ["_build", "_generated", "_inventories", ".gitignore", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]


# --------------------------------------------------------------------------- docstrings

_QUOTED_STAR = re.compile(r"""(["'])\*""")


def _escape_quoted_wildcards(app, what, name, obj, options, lines) -> None:
    """Docstrings quote wildcard names such as "*_binary"; in reStructuredText that `*`
    would open an emphasis that never closes (a warning, so an error under -W)."""
    for i, line in enumerate(lines):
        if not line.lstrip().startswith((">>>", "...")):
            lines[i] = _QUOTED_STAR.sub(r"\1\\*", line)


def _factory_defaults(app, what, name, obj, options, signature, return_annotation):
    """A dataclass field with `default_factory` shows as `=<factory>`; show the value the
    factory makes instead (`{}`, `()`), which is what a reader needs to know."""
    if signature and "<factory>" in signature and dataclasses.is_dataclass(obj):
        for field in dataclasses.fields(obj):
            if field.default_factory is not dataclasses.MISSING:
                signature = signature.replace(
                    f"{field.name}=<factory>", f"{field.name}={field.default_factory()!r}")
    return signature, return_annotation


# Where a type's documented name differs from the module Python reports for it.
_PUBLIC_NAMES = {
    "jax.jaxlib._jax.Array": "jax.Array",
    "jaxlib._jax.Array": "jax.Array",
    "jaxlib._jax.Device": "jax.Device",
    "optax._src.base.GradientTransformation": "optax.GradientTransformation",
    "optax._src.base.GradientTransformationExtraArgs": "optax.GradientTransformationExtraArgs",
    "numpy.random._generator.Generator": "numpy.random.Generator",
    "'jax.typing.ArrayLike'": "jax.typing.ArrayLike",
    "'optax.Schedule'": "optax.Schedule",
}


def _public_name(app, env, node, contnode):
    """Points a reference to a private module path at its public name, which the
    inventories hold; intersphinx (which runs next) then resolves it."""
    target = node.get("reftarget")
    if target in _PUBLIC_NAMES:
        node["reftarget"] = _PUBLIC_NAMES[target]
    return None


def setup(app) -> None:
    # Before napoleon (priority 500), which itself writes `*type*` emphasis.
    app.connect("autodoc-process-docstring", _escape_quoted_wildcards, priority=100)
    app.connect("autodoc-process-signature", _factory_defaults)
    app.connect("missing-reference", _public_name, priority=100)


# --------------------------------------------------------------------------- notebooks

def _copy_notebooks() -> None:
    """Copies `notebooks/*.ipynb` under `docs/notebooks/` (Sphinx reads only its source dir)."""
    target = DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    wanted = {path.name for path in (ROOT / "notebooks").glob("*.ipynb")}
    for stale in target.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name in wanted:
        source, copy = ROOT / "notebooks" / name, target / name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copyfile(source, copy)


# --------------------------------------------------------------------------- API pages

# Section titles for the modules the public names come from, in reading order. A name
# from a module not listed here still gets documented, under a section of its own.
SECTIONS = {
    "jaxtune.sweep": "The one call",
    "jaxtune.space": "Search spaces and samplers",
    "jaxtune.results": "Results",
    "jaxtune.strategies": "Strategies",
    "jaxtune.hypergradient": "Hypergradients",
    "jaxtune.lr_find": "Learning-rate range test",
    "jaxtune.integrations": "Integrations",
    "jaxtune.runner": "Runner",
    "jaxtune.schedules": "Schedules",
    "jaxtune.transforms": "Transforms",
    "jaxtune.families": "Optimizer families",
    "jaxtune.hypergradient_descent": "Hypergradient descent",
    "jaxtune.loop": "Your own loop",
    "jaxtune.engine": "Population trainer",
    "jaxtune.devices": "Devices and compilation",
    "jaxtune.metrics": "Metrics",
    "jaxtune.data": "Data",
    "jaxtune.stream": "Host data streams",
}


def _section(obj) -> str:
    """The section of SECTIONS for the module that defines `obj`: the first part of its
    dotted path that names one (`jaxtune.engine.trainer` -> `jaxtune.engine`),
    so a module moved into a sub-package keeps its section."""
    module = getattr(obj, "__module__", None) or "jaxtune"
    for part in module.split(".")[1:]:
        if f"jaxtune.{part}" in SECTIONS:
            return f"jaxtune.{part}"
    return module


def _title(key: str) -> str:
    """A section's title: SECTIONS's, else the module's last name in words ("Engine")."""
    return SECTIONS.get(key) or key.rsplit(".", 1)[-1].replace("_", " ").capitalize()


def _directive(name: str, obj) -> str:
    if inspect.isclass(obj):
        if issubclass(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple states
            return f".. autoclass:: jaxtune.{name}\n"
        if issubclass(obj, BaseException):
            return f".. autoexception:: jaxtune.{name}\n"
        return f".. autoclass:: jaxtune.{name}\n   :members:\n"
    if callable(obj):
        return f".. autofunction:: jaxtune.{name}\n"
    return f".. autodata:: jaxtune.{name}\n   :annotation:\n"


def _write_api_pages() -> None:
    """One page per section, with every name of `jaxtune.__all__` (except `__version__`)."""
    groups: dict[str, list[str]] = {}
    for name in jaxtune.__all__:
        if name.startswith("__"):
            continue
        groups.setdefault(_section(getattr(jaxtune, name)), []).append(name)
    order = [key for key in SECTIONS if key in groups] + sorted(set(groups) - set(SECTIONS))

    pages = DOCS / "api"
    pages.mkdir(exist_ok=True)
    wanted = {"index.rst"}
    index = [
        "API reference",
        "=============",
        "",
        "Every public name, as ``jaxtune.<name>`` (``import jaxtune as jt``), generated from",
        "``jaxtune.__all__`` and the docstrings at build time.",
        "",
        ".. toctree::",
        "   :maxdepth: 2",
        "",
    ]
    for key in order:
        slug = key.replace("jaxtune.", "") or "jaxtune"
        title = _title(key)
        index.append(f"   {slug}")
        lines = [title, "=" * len(title), ""]
        doc = inspect.getdoc(sys.modules.get(key)) if key in sys.modules else None
        if doc:
            lines += [f"From ``{key}``: {doc.splitlines()[0]}", ""]
        lines += [".. currentmodule:: jaxtune", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {name}" for name in groups[key]] + [""]
        lines += [_directive(name, getattr(jaxtune, name)) for name in groups[key]]
        _write_if_changed(pages / f"{slug}.rst", "\n".join(lines) + "\n")
        wanted.add(f"{slug}.rst")
    _write_if_changed(pages / "index.rst", "\n".join(index) + "\n")
    for stale in pages.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()


def _write_if_changed(path: pathlib.Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# --------------------------------------------------------------------------- first sweep

FIRST_SWEEP = "lr_sweep"   # the notebook that Getting started shows, cell by cell


def _write_first_sweep() -> None:
    """Writes `_generated/first_sweep.md` from the committed `notebooks/lr_sweep.ipynb`:
    its cells after the title, each code cell followed by the outputs it was executed
    with (text, the pandas tables, the plot). Getting started includes it, so the code
    a reader copies is the code that produced the numbers beside it."""
    target = DOCS / "_generated"
    target.mkdir(exist_ok=True)
    cells = json.loads((ROOT / "notebooks" / f"{FIRST_SWEEP}.ipynb").read_text())["cells"]
    parts, images = [], set()
    for index, cell in enumerate(cells[1:], start=1):
        source = "".join(cell["source"]).rstrip()
        if cell["cell_type"] == "markdown":
            parts.append(re.sub(r"^(#+) ", r"#\1 ", source, flags=re.M))
            continue
        parts.append(f"```python\n{source}\n```")
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                name = f"{FIRST_SWEEP}_{index}.png"
                _write_if_changed_bytes(target / name, base64.b64decode(data["image/png"]))
                images.add(name)
                parts.append(f"![The plot of cell {index}](/_generated/{name})")
            elif "text/html" in data:
                parts.append("```{raw} html\n" + "".join(data["text/html"]).rstrip() + "\n```")
            else:
                text = "".join(output.get("text") or data.get("text/plain", "")).rstrip()
                if text:
                    parts.append(f"```text\n{text}\n```")
    _write_if_changed(target / "first_sweep.md", "\n\n".join(parts) + "\n")
    for stale in target.glob("*.png"):
        if stale.name not in images:
            stale.unlink()


def _write_if_changed_bytes(path: pathlib.Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


_copy_notebooks()
_write_api_pages()
_write_first_sweep()
