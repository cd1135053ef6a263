"""The plans with the stand bound: what the IPython profile and the queue server expose.

`bind_plans(stand)` gives each public plan as a generator function without its `stand`
parameter, keeping the rest of its signature, annotations and docstring, so that
`iv_scan(slots=[1, 2], stop=150)` works at the prompt and bluesky-queueserver lists and
validates the parameters as written.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from bluesky.utils import MsgGenerator

from teststand.stand import TestStand

PlanFunction = Callable[..., MsgGenerator[Any]]


def bind_stand(plan: PlanFunction, stand: TestStand) -> PlanFunction:
    """`plan` with its first parameter (`stand`) filled in."""
    signature = inspect.signature(plan, eval_str=True)
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].name != "stand":
        raise TypeError(f"{plan.__name__} does not take the stand as its first parameter")

    @functools.wraps(plan)
    def bound(*args: Any, **kwargs: Any) -> MsgGenerator[Any]:
        return (yield from plan(stand, *args, **kwargs))

    bound.__signature__ = signature.replace(parameters=parameters[1:])  # type: ignore[attr-defined]
    bound.__annotations__ = {
        p.name: p.annotation for p in parameters[1:] if p.annotation is not p.empty
    }
    del bound.__wrapped__  # inspect must not unwrap the signature back to `stand`
    return bound


def bind_plans(stand: TestStand, plans: dict[str, PlanFunction]) -> dict[str, PlanFunction]:
    """Every plan of `plans` bound to `stand`, by name."""
    return {name: bind_stand(plan, stand) for name, plan in plans.items()}
