"""The instrument registry: a toy instrument kind registered from this test (device, simulator,
one entry) builds into a simulated stand; unregistered kinds are refused with the known ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run, stand_dict
from ophyd_async.core import StandardReadableFormat

from teststand import errors, kinds
from teststand.config import ConfigError, load_stand
from teststand.devices._backend import client_signal_r
from teststand.devices._base import InstrumentDevice, SwitchedOutput
from teststand.devices._client import ProtocolClient
from teststand.errors import ReplyFormatError
from teststand.roles import SMU, RoleMismatch
from teststand.sim import SimInstrument
from teststand.sim import kinds as simulator_kinds
from teststand.stand import build


class ToyThermometer(SimInstrument):
    """A thermometer that answers `T?` with `T 21.50` and `OUT 1`/`OUT 0` with `OK`."""

    kind = "toy-thermometer"
    reply_terminator: ClassVar[bytes] = b"\n"

    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock)
        self.output = False

    def respond(self, line: str) -> str | None:
        if line == "T?":
            return "T 21.50"
        if line in ("OUT 1", "OUT 0"):
            self.output = line.endswith("1")
            return "OK"
        if line == "OUT?":
            return f"OUT {int(self.output)}"
        return "ERR"


def parse_temperature(text: str) -> float:
    label, _, value = text.partition(" ")
    if label != "T":
        raise ReplyFormatError(f"expected 'T <value>', got {text!r}")
    return float(value)


class ToyClient(ProtocolClient):
    def __init__(self, url: str, *, name: str = "toy") -> None:
        super().__init__(url, name=name, write_terminator="LF", read_terminator="LF")

    async def temperature(self) -> float:
        return await self.transport.query("T?", parse_temperature, idempotent=True)

    async def output(self) -> bool:
        return await self.transport.query("OUT?", idempotent=True) == "OUT 1"

    async def set_output(self, on: bool) -> None:
        await self.transport.query(f"OUT {int(on)}")


class ToyDevice(SwitchedOutput, InstrumentDevice[ToyClient]):
    def __init__(self, url_or_client: str | ToyClient, name: str = "") -> None:
        client = self.adopt(url_or_client, lambda url: ToyClient(url, name=name or "toy"))
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.temperature = client_signal_r(
                float, client.temperature, source=f"{client.url}#T", units="degC"
            )
        self.output = client_signal_r(bool, client.output, source=f"{client.url}#OUT")
        super().__init__(name=name)


@pytest.fixture
def toy_kind() -> Iterator[kinds.InstrumentKind]:
    kind = kinds.register(
        kinds.InstrumentKind(
            "toy-thermometer", device=ToyDevice, roles=frozenset(), description="a toy"
        )
    )
    yield kind
    kinds.unregister(kind.name)


def test_a_toy_kind_registered_here_builds_into_a_simulated_stand(
    RE: RunEngine, toy_kind: kinds.InstrumentKind
) -> None:
    assert "toy-thermometer" in simulator_kinds()  # defining the simulator registered it
    stand = build({"name": "toy", "sim": True, "instruments": {"thermo": {"kind": toy_kind.name}}})
    try:
        device = stand.instruments["thermo"]
        assert isinstance(device, ToyDevice)
        assert device.name == "thermo"
        assert run(RE, device.temperature.get_value) == 21.5
        documents: list[tuple[str, Any]] = []
        RE(bp.count([device]), lambda name, doc: documents.append((name, doc)))
        (event,) = [doc for name, doc in documents if name == "event"]
        assert event["data"]["thermo-temperature"] == 21.5
        assert stand.role(SMU) == {}  # it plays no role
    finally:
        run(RE, stand.close)


def test_an_unregistered_kind_in_a_stand_file_names_the_known_kinds() -> None:
    data = stand_dict()
    data["instruments"]["hv"]["kind"] = "caen-dt9999"
    with pytest.raises(ConfigError) as caught:
        load_stand(data)
    message = str(caught.value)
    assert "instruments.hv.kind" in message
    assert "unknown instrument kind 'caen-dt9999'" in message
    for known in ("caen-dt8033", "coldbox", "hmp4040", "keithley2410", "lauda"):
        assert known in message


def test_the_registry_refuses_an_unknown_kind_and_a_bad_entry() -> None:
    with pytest.raises(kinds.UnknownInstrumentKind, match="known kinds: caen-dt8033, caen-n1470"):
        kinds.get("nope")
    assert isinstance(kinds.UnknownInstrumentKind("x"), errors.TeststandError)
    with pytest.raises(kinds.RegistryError, match="unknown role"):
        kinds.InstrumentKind("x", device=ToyDevice, roles=frozenset({"fridge"}))
    with pytest.raises(kinds.RegistryError, match="needs max_voltage"):
        kinds.InstrumentKind("x", device=ToyDevice, roles=frozenset({"hv"}), channels=range(2))
    with pytest.raises(kinds.RegistryError, match="already registered"):
        kinds.register(kinds.get("lauda"))


def test_every_registered_kind_has_a_simulator_and_a_device() -> None:
    simulators = simulator_kinds()
    for name, kind in kinds.KINDS.items():
        assert name in simulators, f"{name}: no simulator with kind {name!r}"
        assert callable(kind.device_factory())


def test_a_device_without_a_roles_members_is_refused_for_the_role() -> None:
    device = ToyDevice("serial:///dev/null", name="thermo")
    with pytest.raises(RoleMismatch, match="thermo cannot serve as a source-measure unit"):
        SMU.check(device)


def test_the_coldbox_entry_has_the_drivers_set_point_range() -> None:
    from teststand.devices.coldbox.client import SETPOINT_RANGE

    assert kinds.get("coldbox").setpoint_range == SETPOINT_RANGE


def test_a_kind_whose_device_lacks_a_member_of_its_role_is_refused_at_build(
    RE: RunEngine, toy_kind: kinds.InstrumentKind
) -> None:
    kinds.register(
        kinds.InstrumentKind("toy-smu", device=ToyDevice, roles=frozenset({"smu"})),
    )
    try:
        stand = {"name": "toy", "instruments": {"smu": {"kind": "toy-smu", "url": "tcp://x:1"}}}
        with pytest.raises(RoleMismatch, match="smu cannot serve as a source-measure unit"):
            build(stand, mock=True)
    finally:
        kinds.unregister("toy-smu")


def test_the_registry_and_the_role_protocols_name_the_same_roles() -> None:
    from teststand.roles import ROLES

    assert set(ROLES) == kinds.INSTRUMENT_ROLES
    assert set(kinds.SLOT_ROLES) <= set(ROLES)
