"""The package's shape: no import cycle between its modules, and no unit doing many jobs.

Read from the source with `ast`, so nothing is imported. `python tests/test_layout.py`
prints every finding, for use while changing the layout.

- An import cycle is a chain of modules each importing the next (at module level, inside a
  function, or through a package's `__init__`, which runs before any of its modules)
  that comes back to its start. Imports under `if TYPE_CHECKING:` do not run and do not
  count; neither does `jaxtune/__init__.py`, the public re-export list that sits above
  every layer.
- A class may span at most MAX_CLASS_LINES lines and a function MAX_FUNCTION_LINES,
  docstrings not counted: past that a unit is doing several jobs, each of which wants a
  name.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jaxtune"
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80


def _modules():
    """Module name -> path, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, inner.end_lineno + 1))
    return lines


def _imports(name, path, modules):
    """The package's modules that importing `name` runs (its own imports and parents)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    edges = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        # importing a.b.c runs a.b's __init__ first: count every parent package, but for
        # the packages `name` itself lies in, which are already being imported
        parts = target.split(".")
        edges.update(prefix for prefix in (".".join(parts[:i]) for i in range(2, len(parts) + 1))
                     if not name.startswith(prefix + "."))
    edges.discard(name)
    edges.discard("jaxtune")
    return edges


def import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()
             if name != "jaxtune"}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return [" -> ".join(cycle) for cycle in cycles]


def _docstring_lines(node):
    body = getattr(node, "body", [])
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return body[0].end_lineno - body[0].lineno + 1
    return 0


def _span(node):
    """Lines of `node`, without its docstring or (for a class) its methods' docstrings."""
    lines = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
    if isinstance(node, ast.ClassDef):
        lines -= sum(_docstring_lines(item) for item in node.body
                     if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return lines


def oversized():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = MAX_FUNCTION_LINES
            else:
                continue
            if _span(node) > limit:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: "
                             f"{_span(node)} lines (at most {limit})")
    return found


def test_no_import_cycle():
    assert not import_cycles(), "import cycles:\n" + "\n".join(import_cycles())


def test_no_class_or_function_does_many_jobs():
    assert not oversized(), "split these by job:\n" + "\n".join(oversized())


def test_the_checks_find_what_they_look_for(tmp_path, monkeypatch):
    """A cycle and an oversized function planted in a copy of a package are both found."""
    package = tmp_path / "jaxtune"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from jaxtune import b\n")
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    (package / "b.py").write_text(f"def f():\n    from jaxtune.a import g\n{body}\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    assert import_cycles() == ["jaxtune.a -> jaxtune.b -> jaxtune.a"]
    assert [line.split(":")[0] for line in oversized()] == ["jaxtune/b.py"]


if __name__ == "__main__":
    print("\n".join(import_cycles() + oversized()) or "clean")
