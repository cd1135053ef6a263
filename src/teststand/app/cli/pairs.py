"""The one KEY=VALUE parser of the command line (`--param`, `-o/--option`)."""

from __future__ import annotations

import json
from typing import Any

from teststand.errors import TeststandError


class PairError(TeststandError, ValueError):
    """An argument that is not KEY=VALUE."""


def parse_pairs(items: list[str], option: str, example: str) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a value is JSON when it parses (20, [1, 2], true), else text.

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
        try:
            pairs[key] = json.loads(raw)
        except ValueError:
            pairs[key] = raw
    return pairs
