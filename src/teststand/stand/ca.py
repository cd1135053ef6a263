"""ophyd-async's Channel Access backend, made strict for a served stand.

- A refused put fails. ophyd-async's `SignalW.set` runs the put inside a stamina/tenacity retry
  context, which stores the exception in a `concurrent.futures.Future` and re-raises it with
  `Future.result()`; that tests `if self._exception:`, and aioca's `CANothing` is *falsy*
  (`__bool__` is its `ok` flag, False for an error). So a failed `caput(wait=True)` vanished and
  `set()` reported success. Here a `CANothing` becomes a (truthy) typed error carrying the
  IOC's reason, read from the device's `…:MSG` PV.
- A value in INVALID alarm (the IOC lost the instrument's link) is never returned as valid:
  reads raise `StaleValue`.
- Reads time out (the IOC gone) instead of waiting for ever.
"""

from __future__ import annotations

import logging
from typing import Any

from aioca import DBR_CHAR_STR, FORMAT_TIME, CANothing, caget, caput
from bluesky.protocols import Reading
from ophyd_async.core import SignalDatatypeT
from ophyd_async.epics.core import CaSignalBackend

from teststand.errors import TeststandError

log = logging.getLogger("teststand.stand")
INVALID = 3  # CA alarm severity
READ_TIMEOUT = 8.0  # below ophyd-async's 10 s signal timeout, so the error says why


class ServedError(TeststandError, RuntimeError):
    """The IOC refused a put or a move failed there; the message is the IOC's reason."""


class ServerUnavailable(TeststandError, ConnectionError):
    """No IOC answers for the stand's PVs (not started, wrong prefix, or gone)."""


class StaleValue(TeststandError, ConnectionError):
    """A PV in INVALID alarm: the IOC has lost the instrument behind it."""


def _error_classes() -> dict[str, type[TeststandError]]:
    """The library's error classes by name (not the applications': the IOC's own refusals,
    `PutRefused`, stay `ServedError` whether or not this process imported the IOC)."""
    found: dict[str, type[TeststandError]] = {}
    todo: list[type[TeststandError]] = [TeststandError]
    while todo:
        cls = todo.pop()
        if not cls.__module__.startswith("teststand.app."):
            found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return found


def served_error(pv: str, message: str) -> TeststandError:
    """The IOC's `Type: reason` as that `TeststandError` subclass when known (a CaenError stays a
    CaenError, so the plans treat a trip the same way in both modes), else `ServedError`."""
    kind, sep, reason = message.partition(": ")
    if sep and kind.isidentifier():
        cls = _error_classes().get(kind)
        if cls is not None:
            try:
                return cls(reason)
            except TypeError:
                pass
    return ServedError(f"{pv}: {message or 'put failed on the IOC (no reason given)'}")


def message_pv(pv: str) -> str:
    """The `…:MSG` PV of the device holding `pv`."""
    return f"{pv.rpartition(':')[0]}:MSG"


async def read_text(pv: str, timeout: float = READ_TIMEOUT) -> str:
    """A text PV (a char array) as a str."""
    return str(await caget(pv, datatype=DBR_CHAR_STR, timeout=timeout))


async def put_checked(
    pv: str, value: Any, *, wait: bool = True, timeout: float | None = None
) -> None:
    """`caput` that raises the IOC's reason (see the module docstring) when the put fails."""
    try:
        if isinstance(value, str):  # a text PV: chars with a null, as the CLI caput sends
            await caput(pv, value + "\0", datatype=DBR_CHAR_STR, wait=wait, timeout=timeout)
        else:
            await caput(pv, value, wait=wait, timeout=timeout)
    except CANothing as exc:
        try:
            reason = await read_text(message_pv(pv))
        except CANothing:
            reason = ""
        raise served_error(pv, reason or str(exc)) from None


class StrictCaBackend(CaSignalBackend[SignalDatatypeT]):
    """`CaSignalBackend` whose put failures, INVALID values and lost IOC raise typed errors."""

    async def put(self, value: SignalDatatypeT | None) -> None:
        try:
            await super().put(value)
        except CANothing as exc:
            try:
                reason = await read_text(message_pv(self.write_pv))
            except CANothing:
                reason = ""
            raise served_error(self.write_pv, reason or str(exc)) from None

    async def _timed_get(self, pv: str) -> Any:
        try:
            value = await caget(
                pv, datatype=self.converter.read_dbr, format=FORMAT_TIME, timeout=READ_TIMEOUT
            )
        except CANothing as exc:
            raise ServerUnavailable(
                f"{pv}: no answer from the IOC ({exc}); is `teststand ioc` running?"
            ) from None
        if value.severity >= INVALID:
            raise StaleValue(
                f"{pv} is INVALID: the IOC has lost the instrument's link; its last value is "
                "not used. Check the instrument and its cable"
            )
        return value

    async def get_reading(self) -> Reading[SignalDatatypeT]:
        return self._make_reading(await self._timed_get(self.read_pv))

    async def get_value(self) -> SignalDatatypeT:
        value: SignalDatatypeT = self.converter.value(await self._timed_get(self.read_pv))
        return value

    async def get_setpoint(self) -> SignalDatatypeT:
        value: SignalDatatypeT = self.converter.value(await self._timed_get(self.write_pv))
        return value
