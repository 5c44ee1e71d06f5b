"""Which hyperparameters a user's function takes, read from its signature.

`read_signature` reads a function's keyword parameters once; `route` picks, from a
mapping of hyperparameter values, those it takes. The engine (`engine.contract`) routes
every call of the user's functions through these, and so does the own-loop
`jaxtune.hypergradient`, which must not import the engine: one reading of a signature
for both, so a function receives the same hyperparameters from either.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class Signature(NamedTuple):
    """Which hyperparameter names a user function accepts."""

    names: frozenset[str]  # parameters it takes by keyword
    var_keyword: bool  # has **kwargs
    required: tuple[str, ...]  # keyword parameters without a default
    positional: int  # how many parameters it can take positionally (-1: any number)
    text: str  # how to show it in an error


def read_signature(fn: Callable, role: str, positional: int) -> Signature:
    """Reads `fn`'s keyword parameters after its first `positional` ones."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and some C callables
        return Signature(frozenset(), True, (), -1, f"{role}(...)")
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    leading = [p for p in parameters if p.kind != inspect.Parameter.KEYWORD_ONLY][:positional]
    rest = [p for p in parameters if p not in leading and p.kind in kinds]
    var_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
    takes = -1 if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters) else len(
        [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                             inspect.Parameter.POSITIONAL_OR_KEYWORD)])
    required = tuple(p.name for p in rest if p.default is inspect.Parameter.empty)
    shown = ", ".join(p.name for p in parameters)
    return Signature(frozenset(p.name for p in rest), var_keyword, required, takes,
                     f"{role}({shown})")


def route(values: Mapping[str, Any], signature: Signature, use_var_keyword: bool) -> dict:
    """The entries of `values` a function of `signature` takes by keyword; all of them
    for a function with `**kwargs` when `use_var_keyword` (the engine passes it for
    `make_optimizer` and `init_fn`, which build from every hyperparameter, not for
    `loss_fn` and `eval_fn`, whose `**kwargs` are the user's own)."""
    if signature.var_keyword and use_var_keyword:
        return dict(values)
    return {k: v for k, v in values.items() if k in signature.names}
