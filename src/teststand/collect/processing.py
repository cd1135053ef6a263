"""Processing devices: PVs in, a Python function, PVs out (with units), served by caproto.

A processing device is one decorated function::

    @processing(inputs=("temperature", "humidity"), outputs={"DEW_POINT": Output("degC", 2)})
    def dew_point(temperature: float, humidity: float) -> float:
        return magnus(temperature, humidity)

`ProcessingServer(spec, prefix, bindings)` binds each input to a PV, computes on any input
change (or every `period` s) and serves each output as `PREFIX<OUTPUT>`, with `PREFIX MSG` and
`PREFIX COUNT`. An input that disconnects (or is INVALID) puts every output in INVALID alarm; a
function that raises puts them in MAJOR/CALC alarm with its message in MSG, and the device
keeps running. A function that does not take the declared inputs is refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioca import DBR_DOUBLE, FORMAT_TIME, camonitor
from caproto import AlarmSeverity, AlarmStatus
from caproto.server import PVGroup, pvproperty

from teststand.collect.caserver import TEXT, ServerContext, ready_hook
from teststand.collect.errors import ProcessingError

log = logging.getLogger("teststand.collect")
INVALID_SEVERITY = 3
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Output:
    """An output PV: units, precision, and the MAJOR alarm below a limit (a number, or the name
    of an option that must be given at start: a safety limit has no default)."""

    units: str = ""
    precision: int = 3
    alarm_below: float | str | None = None


Outputs = Mapping[str, Output] | Callable[[Sequence[str]], Mapping[str, Output]]


@dataclass(frozen=True)
class Processing:
    """A function of named inputs and the outputs it returns (a number for one output, else a
    mapping of output name to number). `more_inputs`: further inputs go to its `**kwargs`."""

    name: str
    function: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: Outputs
    period: float | None = None
    more_inputs: bool = False
    options: tuple[str, ...] = field(default=())
    description: str = ""

    def expected_signature(self) -> str:
        args = [f"{name}: float" for name in self.inputs]
        if self.more_inputs:
            args.append("**more: float")
        returns = (
            "float"
            if isinstance(self.outputs, Mapping) and len(self.outputs) == 1
            else ("dict[str, float]")
        )
        return f"def {self.function.__name__}({', '.join(args)}) -> {returns}"

    def output_specs(self, inputs: Sequence[str]) -> Mapping[str, Output]:
        return self.outputs if isinstance(self.outputs, Mapping) else self.outputs(inputs)


def processing(
    *,
    inputs: Sequence[str],
    outputs: Outputs,
    period: float | None = None,
    more_inputs: bool = False,
    options: Sequence[str] = (),
    name: str | None = None,
) -> Callable[[Callable[..., Any]], Processing]:
    """Decorator: make a `Processing` of a function (see the module docstring)."""

    def wrap(function: Callable[..., Any]) -> Processing:
        return Processing(
            name or function.__name__.replace("_", "-"),
            function,
            tuple(inputs),
            outputs,
            period,
            more_inputs,
            tuple(options),
            (function.__doc__ or "").strip().split("\n")[0],
        )

    return wrap


def check_signature(spec: Processing) -> None:
    """Refuse a function that cannot be called with the declared inputs as keywords."""
    parameters = inspect.signature(spec.function).parameters.values()
    named = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = {p.name for p in parameters if p.name in named and p.default is p.empty}
    takes_more = any(p.kind is p.VAR_KEYWORD for p in parameters)
    problems = []
    if set(spec.inputs) - named and not takes_more:
        problems.append(f"it does not take {', '.join(sorted(set(spec.inputs) - named))}")
    if required - set(spec.inputs):
        problems.append(f"it also requires {', '.join(sorted(required - set(spec.inputs)))}")
    if spec.more_inputs and not takes_more:
        problems.append("it takes no **kwargs for the further inputs")
    if any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in parameters):
        problems.append("inputs are passed by name, not by position")
    if problems:
        raise ProcessingError(
            f"processing {spec.name}: {spec.function.__name__}({_names(parameters)}) has the "
            f"wrong signature ({'; '.join(problems)}); "
            f"expected: {spec.expected_signature()}"
        )


def _names(parameters: Any) -> str:
    marks = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return ", ".join(marks.get(p.kind, "") + p.name for p in parameters)


def check_bindings(
    spec: Processing, bindings: Mapping[str, str], options: Mapping[str, float]
) -> None:
    """Every declared input bound to a PV, no unknown input, every required option given."""
    missing = [name for name in spec.inputs if name not in bindings]
    extra = [name for name in bindings if name not in spec.inputs]
    usage = " ".join(f"--input {name}=PV" for name in spec.inputs)
    if missing:
        raise ProcessingError(f"processing {spec.name} needs the inputs: {usage}")
    if extra and not spec.more_inputs:
        raise ProcessingError(
            f"processing {spec.name} has no input {', '.join(extra)}; its inputs: {usage}"
        )
    for option in spec.options:
        if option not in options:
            raise ProcessingError(
                f"processing {spec.name} needs --option {option}=VALUE (no default: it is a "
                "safety limit of your set-up)"
            )
    unknown = [name for name in options if name not in spec.options]
    if unknown:
        raise ProcessingError(
            f"processing {spec.name} has no option {', '.join(unknown)} "
            f"(options: {', '.join(spec.options) or 'none'})"
        )


def _attribute(name: str) -> str:
    return "out_" + "".join(c if c.isalnum() else "_" for c in name)


class ProcessingServer:
    """Serve `spec` under `prefix` with its inputs bound to PVs; `await run(interfaces)`."""

    def __init__(
        self,
        spec: Processing,
        prefix: str,
        bindings: Mapping[str, str],
        options: Mapping[str, float] | None = None,
    ) -> None:
        check_signature(spec)
        self.options = dict(options or {})
        check_bindings(spec, bindings, self.options)
        self.spec = spec
        self.prefix = prefix
        self.bindings = dict(bindings)
        self.outputs = dict(spec.output_specs(list(bindings)))
        self.values: dict[str, float | None] = dict.fromkeys(bindings)
        self.lost: dict[str, str] = {name: "not connected yet" for name in bindings}
        body: dict[str, Any] = {
            "MSG": pvproperty(value="", read_only=True, **TEXT),
            "COUNT": pvproperty(value=0, read_only=True),
        }
        for name, output in self.outputs.items():
            body[_attribute(name)] = pvproperty(
                value=0.0,
                name=name,
                read_only=True,
                units=output.units,
                precision=output.precision,
                alarm_group=name,  # each output its alarm (a group shares one by default)
            )
        self.group = type("ProcessingPVs", (PVGroup,), body)(prefix)
        self.pvdb: dict[str, Any] = dict(self.group.pvdb)
        self._changed = asyncio.Event()
        self._message = ""

    def _limit(self, output: Output) -> float | None:
        if isinstance(output.alarm_below, str):
            return self.options[output.alarm_below]
        return output.alarm_below

    def _update(self, name: str, value: Any) -> None:
        if not getattr(value, "ok", False):
            self.lost[name] = "disconnected"
        elif value.severity >= INVALID_SEVERITY:
            self.lost[name] = "INVALID (its source lost its instrument)"
        else:
            self.lost.pop(name, None)
            self.values[name] = float(value)
        self._changed.set()

    async def _say(self, text: str) -> None:
        if text != self._message:
            self._message = text
            if text:
                log.warning("%s: %s", self.prefix, text)
            await self.group.MSG.write(text[:511])

    async def _alarm_all(self, status: AlarmStatus, severity: AlarmSeverity) -> None:
        for name in self.outputs:
            channel = getattr(self.group, _attribute(name))
            await channel.write(channel.value, verify_value=False, status=status, severity=severity)

    async def compute(self) -> None:
        """One evaluation: the outputs, or their alarm and the reason in MSG."""
        if self.lost:
            why = "; ".join(f"{n} ({self.bindings[n]}) {r}" for n, r in sorted(self.lost.items()))
            await self._alarm_all(AlarmStatus.COMM, AlarmSeverity.INVALID_ALARM)
            await self._say(f"input {why}")
            return
        try:
            result = self.spec.function(**self.values)
            results = self._results(result)
        except Exception as exc:
            await self._alarm_all(AlarmStatus.CALC, AlarmSeverity.MAJOR_ALARM)
            await self._say(f"{type(exc).__name__}: {exc}")
            return
        for name, value in results.items():
            limit = self._limit(self.outputs[name])
            alarm = (AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM)
            if limit is not None and value < limit:
                alarm = (AlarmStatus.LOLO, AlarmSeverity.MAJOR_ALARM)
            channel = getattr(self.group, _attribute(name))
            # verify_value=False: caproto's own limit check would replace the alarm given here
            await channel.write(value, verify_value=False, status=alarm[0], severity=alarm[1])
        await self.group.COUNT.write(self.group.COUNT.value + 1)
        await self._say("")

    def _results(self, result: Any) -> dict[str, float]:
        if not isinstance(result, Mapping):
            if len(self.outputs) != 1:
                raise TypeError(
                    f"{self.spec.function.__name__} returned {result!r}; with several outputs it "
                    f"must return a dict of {', '.join(self.outputs)}"
                )
            result = {next(iter(self.outputs)): result}
        if set(result) != set(self.outputs):
            raise TypeError(
                f"{self.spec.function.__name__} returned {', '.join(map(str, result))}; "
                f"expected {', '.join(self.outputs)}"
            )
        values = {str(name): float(value) for name, value in result.items()}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"{', '.join(bad)} is not a finite number")
        return values

    async def _loop(self) -> None:
        await self._alarm_all(AlarmStatus.UDF, AlarmSeverity.INVALID_ALARM)
        period = self.spec.period
        while True:
            if period is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), CONNECT_TIMEOUT)
            else:
                await asyncio.sleep(period)
            self._changed.clear()
            await self.compute()

    async def run(
        self, interfaces: Sequence[str], on_ready: Callable[[], None] | None = None
    ) -> None:
        """Serve until cancelled; `on_ready()` once the server answers searches."""
        subscriptions = [
            camonitor(
                pv,
                lambda value, name=name: self._update(name, value),
                datatype=DBR_DOUBLE,
                format=FORMAT_TIME,
                notify_disconnect=True,
            )
            for name, pv in self.bindings.items()
        ]
        try:
            async with asyncio.TaskGroup() as tasks:
                server = ServerContext(self.pvdb, list(interfaces))
                tasks.create_task(server.run(startup_hook=ready_hook(on_ready)))
                tasks.create_task(self._loop())
        finally:
            for subscription in subscriptions:
                subscription.close()
