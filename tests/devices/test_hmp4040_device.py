"""The HMP4040 device against its simulator over a real pty, in a RunEngine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.devices.hmp4040 import HMP4040, HMPError, HMPValueError
from teststand.devices.hmp4040.client import HMPClient
from teststand.devices.scpi import ScpiError
from teststand.errors import TransportTimeout
from teststand.sim.runner import RunningSim, start_simulator

LOADS = [2.0, 4.0, 10.0, 1.0]  # Ω per channel


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    simulator = start_simulator("hmp4040", loads=LOADS)
    yield simulator
    simulator.stop()


@pytest.fixture
def lv(RE: RunEngine, sim: RunningSim) -> Iterator[HMP4040]:
    with init_devices():
        lv = HMP4040(f"serial://{sim.address}")
    yield lv
    run(RE, lambda: lv.close())


def power(RE: RunEngine, lv: HMP4040, volts: dict[int, float], limit: float = 5.0) -> None:
    """Set and arm the channels in `volts`, then switch the master output on."""

    async def apply() -> None:
        for number, value in volts.items():
            channel = lv.channels[number]
            await channel.voltage.set(value)
            await channel.current_limit.set(limit)
            await channel.on()
        await lv.on()

    run(RE, apply)


def test_readings_describe_and_units(RE: RunEngine, lv: HMP4040) -> None:
    assert sorted(lv.channels) == [1, 2, 3, 4]
    power(RE, lv, {1: 3.3, 2: 2.5})
    reading = run(RE, lambda: lv.read())
    assert len(reading) == 8
    assert reading["lv-channels-1-measured_voltage"]["value"] == pytest.approx(3.3)
    assert reading["lv-channels-1-measured_current"]["value"] == pytest.approx(3.3 / 2.0)
    assert reading["lv-channels-2-measured_current"]["value"] == pytest.approx(2.5 / 4.0)
    assert reading["lv-channels-3-measured_voltage"]["value"] == 0  # not armed
    description = run(RE, lambda: lv.describe())
    assert description["lv-channels-4-measured_voltage"]["units"] == "V"
    assert description["lv-channels-4-measured_current"]["units"] == "A"
    configuration = run(RE, lambda: lv.channels[1].read_configuration())
    assert configuration["lv-channels-1-voltage"]["value"] == pytest.approx(3.3)
    assert configuration["lv-channels-1-current_limit"]["value"] == pytest.approx(5.0)
    assert configuration["lv-channels-1-output"]["value"] is True
    keys = run(RE, lambda: lv.channels[1].describe_configuration())
    assert keys["lv-channels-1-voltage"]["units"] == "V"
    assert keys["lv-channels-1-current_limit"]["units"] == "A"
    assert run(RE, lambda: lv.read_configuration())["lv-output"]["value"] is True


def test_current_limit_gives_constant_current(RE: RunEngine, lv: HMP4040) -> None:
    power(RE, lv, {4: 5.0}, limit=1.0)  # 5 V into 1 Ω wants 5 A
    channel = lv.channels[4]
    assert run(RE, lambda: channel.measured_current.get_value()) == pytest.approx(1.0)
    assert run(RE, lambda: channel.measured_voltage.get_value()) == pytest.approx(1.0)


def test_channel_output_and_master_output(RE: RunEngine, lv: HMP4040) -> None:
    channel = lv.channels[2]
    run(RE, lambda: channel.voltage.set(6.0))
    run(RE, lambda: channel.current_limit.set(2.0))
    run(RE, lambda: channel.on())
    assert run(RE, lambda: channel.measured_voltage.get_value()) == 0  # master still off
    run(RE, lambda: lv.on())
    assert run(RE, lambda: channel.measured_voltage.get_value()) == pytest.approx(6.0)
    run(RE, lambda: channel.off())
    assert run(RE, lambda: channel.output.get_value()) is False
    assert run(RE, lambda: channel.measured_voltage.get_value()) == 0
    assert run(RE, lambda: lv.output.get_value()) is True
    run(RE, lambda: lv.off())
    assert run(RE, lambda: lv.output.get_value()) is False


def test_concurrent_channel_reads_get_their_own_values(
    RE: RunEngine, lv: HMP4040, sim: RunningSim
) -> None:
    volts = {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}
    power(RE, lv, volts)

    async def read_all() -> list[float]:
        reads = [
            signal.get_value()
            for _ in range(3)
            for channel in lv.channels.values()
            for signal in (channel.measured_voltage, channel.measured_current)
        ]
        return list(await asyncio.gather(*reads))

    expected = [value for n in volts for value in (volts[n], volts[n] / LOADS[n - 1])] * 3
    assert run(RE, read_all) == pytest.approx(expected)
    before = sim.server.commands
    run(RE, lambda: lv.read())
    assert sim.server.commands - before == 8  # per channel: select, then one query line


def test_values_out_of_range_are_refused_before_sending(
    RE: RunEngine, lv: HMP4040, sim: RunningSim
) -> None:
    before = sim.server.commands
    with pytest.raises(HMPValueError, match=r"outside 0\.\.32"):
        run(RE, lambda: lv.channels[1].voltage.set(40))
    with pytest.raises(HMPValueError, match=r"channels 1\.\.4, not 5"):
        run(RE, lambda: lv.client.measure(5))
    assert sim.server.commands == before


def test_error_queue_is_surfaced(RE: RunEngine, lv: HMP4040) -> None:
    with pytest.raises(ScpiError, match=r"after 'VOLT:PROT 50' on channel 3: -222") as info:
        run(RE, lambda: lv.client.channel_configure(3, "VOLT:PROT 50"))
    assert info.value.codes == (-222,)
    run(RE, lambda: lv.channels[3].voltage.set(1.5))  # the queue was drained: no stale error


def test_local_control_gives_a_clear_error(RE: RunEngine, lv: HMP4040, sim: RunningSim) -> None:
    power(RE, lv, {1: 1.0, 2: 2.0})
    run(RE, lambda: lv.channels[1].measured_voltage.get_value())  # channel 1 selected
    sim.set_faults("local")
    with pytest.raises(ScpiError, match="LOCAL") as info:
        run(RE, lambda: lv.channels[2].voltage.set(5))
    assert info.value.codes == (-221,)
    # a read that needs another channel cannot select it: an error, never channel 1's value
    with pytest.raises(ScpiError, match="LOCAL"):
        run(RE, lambda: lv.channels[2].measured_voltage.get_value())


def test_hung_supply_times_out_naming_the_device(RE: RunEngine, sim: RunningSim) -> None:
    with init_devices():
        lv_rack = HMP4040(f"serial://{sim.address}?timeout=0.2&attempts=1")
    sim.set_faults("hang")
    with pytest.raises(TransportTimeout, match="lv_rack"):
        run(RE, lambda: lv_rack.channels[1].measured_voltage.get_value())
    run(RE, lambda: lv_rack.close())


def test_hmp2030_and_a_wrong_channel_count(RE: RunEngine, sim: RunningSim) -> None:
    with start_simulator("hmp4040", channels=3) as small:
        with init_devices():
            hmp2030 = HMP4040(f"serial://{small.address}", channels=3)
        assert sorted(hmp2030.channels) == [1, 2, 3]
        run(RE, lambda: hmp2030.channels[3].voltage.set(12))
        assert run(RE, lambda: hmp2030.channels[3].voltage.get_value()) == 12
        run(RE, lambda: hmp2030.close())
    wrong = HMP4040(f"serial://{sim.address}", channels=3, name="wrong")
    with pytest.raises(HMPError, match=r"HMP4040.*not a 3-channel"):
        run(RE, lambda: wrong.connect(timeout=5))


def test_count_and_scan_in_a_run_engine(RE: RunEngine, lv: HMP4040) -> None:
    power(RE, lv, {1: 1.0})
    documents: list[tuple[str, dict[str, Any]]] = []
    RE(bp.count([lv], num=2), lambda name, doc: documents.append((name, doc)))
    events = [doc["data"] for name, doc in documents if name == "event"]
    assert [data["lv-channels-1-measured_voltage"] for data in events] == [1.0, 1.0]
    documents.clear()
    RE(
        bp.scan([lv], lv.channels[1].voltage, 1, 3, 3),
        lambda name, doc: documents.append((name, doc)),
    )
    events = [doc["data"] for name, doc in documents if name == "event"]
    assert [data["lv-channels-1-measured_voltage"] for data in events] == [1.0, 2.0, 3.0]


def test_mock_mode_needs_no_instrument(RE: RunEngine) -> None:
    with init_devices(mock=True):
        dry = HMP4040("serial:///dev/ttyUSB-not-here")
    run(RE, lambda: dry.channels[2].voltage.set(5))
    assert run(RE, lambda: dry.channels[2].measured_voltage.get_value()) == 5
    RE(bp.count([dry]))
    run(RE, lambda: dry.on())


async def test_a_reply_lost_while_draining_stale_errors_at_connect_is_asked_for_again() -> None:
    """Seed 7 drops the first `:SYST:ERR?` reply: the connect asks again (an entry lost so is
    only a stale one) instead of failing on a busy link."""
    client = HMPClient("sim://hmp4040?faults=drop=0.3,seed=7&timeout=0.3", name="lv")
    try:
        await client.open()
        sent = len("*IDN?\n") + 2 * len(":SYST:ERR?\n")  # the queue query sent twice
        assert (client.transport.stats.retries, client.transport.stats.bytes_sent) == (1, sent)
    finally:
        await client.close()
