"""The one KEY=VALUE parser of the command line (`--param`, `-o/--option`)."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any

from teststand.errors import TeststandError


class PairError(TeststandError, ValueError):
    """An argument that is not KEY=VALUE."""


def parse_pairs(
    items: list[str], option: str, example: str, types: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a value is JSON when it parses (20, [1, 2], true), else text, or, for
    a key in `types`, converted to the type declared there (text stays text for `str`).

    `option` and `example` name the flag in the error, e.g. ("--param", "stop=150").
    """
    pairs: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise PairError(
                f"{option} {item!r}: give KEY=VALUE with a name, e.g. {option} {example}"
            )
        if key in pairs:
            raise PairError(f"{option} {key}=... given twice: give each key once")
        if types is not None and key in types:
            pairs[key] = _typed(f"{option} {item}", key, raw, types[key])
            continue
        try:
            pairs[key] = json.loads(raw)
        except ValueError:
            pairs[key] = raw
    return pairs


def declared_types(function: Callable[..., Any]) -> dict[str, Any]:
    """The annotated types of a function's keyword parameters (for `parse_pairs`)."""
    hints = typing.get_type_hints(function)
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        name: hints[name]
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind in keyword and name in hints
    }


def _typed(given: str, key: str, raw: str, declared: Any) -> Any:
    """`raw` as the `declared` type: text for str, else its JSON value, checked."""
    accepted = typing.get_args(declared) or (declared,)
    if str in accepted:
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if float in accepted and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    simple = [kind for kind in accepted if kind in (int, float, bool)]
    if simple and not any(type(value) is kind for kind in simple):  # True is no int here
        names = " or ".join(kind.__name__ for kind in simple)
        raise PairError(f"{given}: {key} takes {names}")
    return value
