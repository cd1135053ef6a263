"""The CAEN devices against the simulators over real ptys, in a RunEngine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.devices.caen import CaenError, CaenHV, PowerDown, protocol
from teststand.devices.caen.client import CaenClient, ChannelStatus, Dialect, decode_status
from teststand.errors import GarbledReply, InstrumentRefused, ReplyFormatError, TransportTimeout
from teststand.sim.runner import RunningSim, start_simulator


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    simulator = start_simulator("caen-dt8033", speed=50, breakdown=[450, 150] + [450] * 6)
    yield simulator
    simulator.stop()


@pytest.fixture
def hv(RE: RunEngine, sim: RunningSim) -> Iterator[CaenHV]:
    with init_devices():
        hv = CaenHV(f"serial://{sim.address}")
    yield hv
    run(RE, lambda: hv.close())


def test_readings_describe_and_units(RE: RunEngine, hv: CaenHV) -> None:
    description = run(RE, lambda: hv.describe())
    assert description["hv-channels-3"]["units"] == "V"
    assert description["hv-channels-3-current"]["units"] == "A"
    configuration = run(RE, lambda: hv.channels[0].describe_configuration())
    units = {key.rsplit("-", 1)[-1]: value.get("units") for key, value in configuration.items()}
    assert units["rate_up"] == "V/s"
    assert units["current_limit"] == "A"
    assert units["trip_time"] == "s"
    reading = run(RE, lambda: hv.channels[0].read_configuration())
    assert reading["hv-channels-0-current_limit"]["value"] == pytest.approx(100e-6)
    assert reading["hv-channels-0-power_down"]["value"] == PowerDown.RAMP
    assert reading["hv-channels-0-polarity"]["value"] == "+"


def test_whole_supply_read_is_three_group_commands(
    RE: RunEngine, hv: CaenHV, sim: RunningSim
) -> None:
    before = sim.server.commands
    reading = run(RE, lambda: hv.read())
    assert len(reading) == 24  # 8 × voltage, current, status
    assert sim.server.commands - before == 3


def test_ramp_within_tolerance_and_timeout_from_rate(RE: RunEngine, hv: CaenHV) -> None:
    channel = hv.channels[2]
    run(RE, lambda: channel.rate_up.set(100))
    timeout = run(RE, lambda: channel.movable_logic.calculate_timeout(0.0, 300.0))
    assert timeout == pytest.approx(300 / 100 * 1.2 + 10)
    run(RE, lambda: channel.on())
    run(RE, lambda: channel.set(300))
    assert abs(run(RE, lambda: channel.voltage.get_value()) - 300) < 2
    assert run(RE, lambda: channel.status.get_value()) == "ON"


def test_set_on_a_channel_that_is_off_is_refused(RE: RunEngine, hv: CaenHV) -> None:
    with pytest.raises(CaenError, match="OFF: switch it on"):
        run(RE, lambda: hv.channels[4].set(100))


def test_set_above_maxv_is_refused_before_any_write(
    RE: RunEngine, hv: CaenHV, sim: RunningSim
) -> None:
    run(RE, lambda: hv.channels[0].max_voltage.set(500))
    before = sim.server.commands
    with pytest.raises(CaenError, match=r"outside 0\.\.500"):
        run(RE, lambda: hv.channels[0].set(800))
    # only the MAXV and VMON reads went out, no VSET
    assert sim.server.commands - before <= 2


def test_trip_during_ramp_raises_naming_the_channel(RE: RunEngine, hv: CaenHV) -> None:
    channel = hv.channels[1]  # breaks down at 150 V
    run(RE, lambda: channel.current_limit.set(20e-6))
    run(RE, lambda: channel.trip_time.set(0))
    run(RE, lambda: channel.rate_up.set(50))
    run(RE, lambda: channel.on())
    with pytest.raises(CaenError, match=r"hv-channels-1: ramp to 300.0 V failed: TRIP"):
        run(RE, lambda: channel.set(300.0))
    with pytest.raises(CaenError, match=r"hv-channels-1 tripped \(TRIP\) and is off"):
        run(RE, lambda: channel.set(100.0))  # the next step says it tripped, not "switch it on"


def test_local_control_gives_a_clear_error(RE: RunEngine, hv: CaenHV, sim: RunningSim) -> None:
    sim.set_faults("local")
    with pytest.raises(InstrumentRefused, match="LOCAL") as info:
        run(RE, lambda: hv.channels[0].rate_up.set(20))
    assert info.value.code == "LOC:ERR"


def test_hung_supply_times_out_naming_the_device(RE: RunEngine, sim: RunningSim) -> None:
    with init_devices():
        hv = CaenHV(f"serial://{sim.address}?timeout=0.1&attempts=2&backoff=0", name="bias")
    sim.set_faults("hang")
    with pytest.raises(TransportTimeout, match="bias"):
        run(RE, lambda: hv.channels[0].voltage.get_value())
    run(RE, lambda: hv.close())


def test_n1470_dialect_with_board_and_rdwn(RE: RunEngine) -> None:
    with start_simulator("caen-n1470", board=7, rdw_name="RDWN") as sim:
        with init_devices():
            supply = CaenHV(f"serial://{sim.address}", dialect="14xx", board=7)
        assert supply.client.ramp_down_name == "RDWN"
        assert len(supply.channels) == 4
        run(RE, lambda: supply.channels[3].rate_down.set(25))
        assert run(RE, lambda: supply.channels[3].rate_down.get_value()) == 25
        run(RE, lambda: supply.close())


def test_count_and_scan_in_a_run_engine(RE: RunEngine, hv: CaenHV) -> None:
    documents: list[tuple[str, dict[str, object]]] = []
    RE(bp.count([hv], num=2), lambda name, doc: documents.append((name, doc)))
    events = [doc for name, doc in documents if name == "event"]
    assert len(events) == 2
    run(RE, lambda: hv.channels[5].rate_up.set(200))
    run(RE, lambda: hv.channels[5].on())
    documents.clear()
    RE(bp.scan([hv], hv.channels[5], 0, 100, 3), lambda name, doc: documents.append((name, doc)))
    voltages = [doc["data"]["hv-channels-5"] for name, doc in documents if name == "event"]
    assert voltages == pytest.approx([0, 50, 100], abs=2)


def test_mock_mode_needs_no_instrument(RE: RunEngine) -> None:
    with init_devices(mock=True):
        hv = CaenHV("serial:///dev/ttyUSB-not-here")
    RE(bp.count([hv]))
    run(RE, lambda: hv.channels[0].set(100))
    assert run(RE, lambda: hv.channels[0].voltage.get_value()) == 100


# The status bits as PROTOCOLS.md gives them from the manuals, bit 0 first.
MANUAL_BITS = {
    "803x": "ON RUP RDW OVC OVV UNV TRIP OVP TWN OVT KILL ILK DIS FAIL",
    "14xx": "ON RUP RDW OVC OVV UNV MAXV TRIP OVP OVT DIS KILL ILK NOCAL",
}


@pytest.mark.parametrize(
    ("dialect", "bit", "flag"),
    [(d, bit, flag) for d, names in MANUAL_BITS.items() for bit, flag in enumerate(names.split())],
)
def test_status_word_of_each_flag(dialect: Dialect, bit: int, flag: str) -> None:
    status = decode_status(1 << bit, dialect)
    assert status.flags == {flag} and status.word == 1 << bit
    assert status.in_compliance == (flag in {"OVC", "TRIP"})
    assert decode_status((1 << bit) | 1, dialect).flags == {"ON", flag} | {"ON"}
    assert decode_status(1 << 14 | 1 << 15, dialect).flags == set()  # bits the manuals leave unused


async def flags_when(channel: Any, wanted: set[str], timeout: float = 20) -> set[str]:
    """The channel's status flags once they hold `wanted` and it no longer ramps (or whatever
    they are at `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        flags = set((await channel.read_status()).flags)
        if (wanted <= flags and not {"RUP", "RDW"} & flags) or time.monotonic() > deadline:
            return flags
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("model", ["caen-dt8033", "caen-n1470"])
def test_ovc_trip_and_maxv_come_through_the_wire(RE: RunEngine, model: str) -> None:
    dialect: Dialect = "803x" if model == "caen-dt8033" else "14xx"
    channels = 8 if dialect == "803x" else 4
    breakdown = [450, 100, 100] + [450] * (channels - 3)
    with start_simulator(model, speed=50, breakdown=breakdown) as sim:
        with init_devices():
            supply = CaenHV(f"serial://{sim.address}", dialect=dialect)
        held, tripped, capped = supply.channels[1], supply.channels[2], supply.channels[3]

        async def drive() -> dict[str, set[str]]:
            for channel, trip in ((held, 1000.0), (tripped, 0.0)):
                await channel.current_limit.set(20e-6)
                await channel.trip_time.set(trip)  # 1000 s: never trips, holds in OVC
            for channel in (held, tripped, capped):
                await channel.rate_up.set(500)
                await channel.on()
                await channel.setpoint.set(200)
            await capped.max_voltage.set(50)  # below VSET: the output is held at MAXV
            return {
                "held": await flags_when(held, {"OVC"}),
                "tripped": await flags_when(tripped, {"TRIP"}),
                "capped": await flags_when(capped, {"MAXV"} if dialect == "14xx" else set()),
            }

        flags = run(RE, drive)
        statuses = run(
            RE, lambda: asyncio.gather(*(c.read_status() for c in supply.channels.values()))
        )
        run(RE, lambda: supply.close())
    assert flags["held"] == {"ON", "OVC", "UNV"}  # held below VSET by the current limit
    assert flags["tripped"] == {"TRIP"}  # switched off
    assert [s.in_compliance for s in statuses] == [False, True, True] + [False] * (channels - 3)
    if dialect == "14xx":
        assert flags["capped"] == {"ON", "MAXV"}


def test_client_verbs_are_retried_over_a_noisy_link(RE: RunEngine, hv: CaenHV, sim: RunningSim):
    client = hv.client
    sim.set_faults("garble=0.5,seed=2")  # every verb is idempotent: retried until it gets through

    async def verbs() -> list[ChannelStatus]:
        statuses = []
        for verb in (client.on, client.off):
            await verb(3)
            statuses.append(decode_status(int(await client.mon("STAT", 3)), "803x"))
        group = await client.mon_all("STAT")
        return [*statuses, decode_status(int(group[3]), "803x")]

    on, off, group = run(RE, verbs)
    sim.set_faults("none")
    assert (str(on), str(off), str(group)) == ("ON", "OFF", "OFF")
    assert str(decode_status(0b1001001, "803x")) == "ON|OVC|TRIP"
    assert client.transport.stats.retries > 0


def test_group_reply_with_a_value_missing_is_garbled() -> None:
    with pytest.raises(ReplyFormatError, match="expected 8 values, got 7"):
        protocol.parse_numbers("#CMD:OK,VAL:1;2;3;4;5;6;7", count=8)
    with pytest.raises(ReplyFormatError, match="not from board 3"):
        protocol.parse_numbers("#BD:02,CMD:OK,VAL:1", board=3)
    with pytest.raises(ReplyFormatError, match="expected a value"):
        protocol.parse_values("#CMD:OK,VAL:")
    with pytest.raises(ReplyFormatError, match="expected a bare OK"):
        protocol.parse_ok("#CMD:OK,VAL:1")


# -- the client's link defaults, format checks and retries, on the real pty -------------------


async def open_client(sim: RunningSim, query: str = "", **kwargs: Any) -> CaenClient:
    client = CaenClient(f"serial://{sim.address}{query}", **kwargs)
    await client.open()
    return client


async def test_client_defaults_are_the_manuals(sim: RunningSim) -> None:
    client = await open_client(sim)
    try:
        options = client.transport.options
        assert (client.dialect, client.board, client.channels) == ("803x", None, 8)
        assert options.name == client.name == "caen"
        assert options.write_terminator == "\r\n" and options.baudrate == 9600
        assert options.timeout == 1.0 and options.strict_formats is True
    finally:
        await client.close()
    assert CaenClient("serial:///dev/null", dialect="14xx").board == 0
    assert CaenClient("serial:///dev/null", dialect="14xx", board=31).board == 31
    with pytest.raises(ValueError, match=r"board address 32 out of range 0\.\.31"):
        CaenClient("serial:///dev/null", dialect="14xx", board=32)
    with pytest.raises(ValueError, match="unknown CAEN dialect '1470'; use 803x or 14xx"):
        CaenClient("serial:///dev/null", dialect="1470")  # type: ignore[arg-type]


async def reads(client: CaenClient, count: int, group: bool) -> list[object]:
    """`count` VMON reads (of channel 0, or of the whole supply): each value or its error."""
    results: list[object] = []
    for _ in range(count):
        try:
            results.append(await (client.mon_all("VMON") if group else client.mon("VMON", 0)))
        except GarbledReply as exc:
            results.append(exc)
    return results


@pytest.mark.parametrize("group", [False, True], ids=["single", "group"])
async def test_truncated_values_are_refused_unless_the_formats_are_lenient(
    sim: RunningSim, group: bool
) -> None:
    # Every reply loses a run of bytes; where only a value's digits went, a single value still
    # has the lenient shape (`000.0`), which only the manual's exact format refuses.
    results = {}
    for formats in ("strict", "lenient"):
        lenient = "&strict_formats=0" if formats == "lenient" else ""
        client = await open_client(sim, "?attempts=1&flush_quiet=0.01&timeout=0.3" + lenient)
        try:
            sim.set_faults("truncate=1.0,seed=5")
            results[formats] = await reads(client, 30, group)
        finally:
            sim.set_faults("none")
            await client.close()
    refused, taken = results["strict"], results["lenient"]
    assert all(isinstance(r, GarbledReply) for r in refused), refused
    if group:  # the values of one read share one shape: a shortened one is refused even so
        assert all(isinstance(r, GarbledReply) for r in taken), taken
    else:
        assert any(not isinstance(r, GarbledReply) for r in taken), taken


@pytest.mark.parametrize("group", [False, True], ids=["single", "group"])
async def test_reads_are_retried_over_a_noisy_link(sim: RunningSim, group: bool) -> None:
    client = await open_client(sim, "?attempts=8&backoff=0&flush_quiet=0.01")
    try:
        sim.set_faults("garble=0.3,seed=4")
        values = await reads(client, 15, group)
        sim.set_faults("none")
        assert values == [["0000.0"] * 8 if group else "0000.0"] * 15
        assert client.transport.stats.retries > 0
    finally:
        sim.set_faults("none")
        await client.close()


def test_lenient_formats_take_signs_and_widths_but_one_shape_per_read() -> None:
    def lenient(text: str, parameter: str = "VMON") -> list[str]:
        return protocol.parse_parameter(
            f"#CMD:OK,VAL:{text}", parameter, text.count(";") + 1, strict=False
        )

    assert lenient("-1.5;1.5;+1.5") == ["-1.5", "1.5", "+1.5"]  # a sign is not part of the shape
    assert lenient("12.34") == ["12.34"]
    with pytest.raises(ReplyFormatError, match="the values of VMON differ in format"):
        lenient("1.5;1.25")
    assert lenient("1.23;1.234", "IMON") == ["1.23", "1.234"]  # IMON's decimals follow the range
    with pytest.raises(ReplyFormatError, match=r"expected the format XXXX\.X, got '-0001\.5'"):
        protocol.parse_parameter("#CMD:OK,VAL:-0001.5", "VMON", 1)
    with pytest.raises(ReplyFormatError, match="expected one of RAMP/KILL, got 'SLOW'"):
        protocol.parse_parameter("#CMD:OK,VAL:SLOW", "PDWN", 1, strict=False)
