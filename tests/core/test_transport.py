"""The transport over real ptys and sockets, against the simulators."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from teststand.devices.caen import protocol as caen
from teststand.devices.scpi import parse_float
from teststand.errors import (
    GarbledReply,
    InstrumentBusy,
    InstrumentRefused,
    InvalidURL,
    LinkLost,
    PortUnavailable,
    TransportTimeout,
)
from teststand.sim.runner import RunningSim, start_simulator
from teststand.transport import Transport, connect

CAEN = "sim://caen-dt8033"
VMON_ALL = "$CMD:MON,CH:8,PAR:VMON"


def numbers(text: str) -> list[float]:
    return caen.parse_numbers(text, count=8)


@pytest.fixture
def tcp_caen() -> Iterator[RunningSim]:
    sim = start_simulator("caen-dt8033", transport="tcp")
    yield sim
    sim.stop()


async def test_query_over_pty_and_group_read() -> None:
    async with connect(CAEN, name="hv") as t:
        assert await t.query(VMON_ALL, numbers, idempotent=True) == [0.0] * 8
        assert t.stats.exchanges == 1
        assert os.path.islink(t.simulator.address)


async def test_query_over_tcp(tcp_caen: RunningSim) -> None:
    async with connect(f"tcp://{tcp_caen.address}", name="hv") as t:
        reply = await t.query("$CMD:SET,CH:2,PAR:VSET,VAL:150")
        assert reply == "#CMD:OK"
        values = await t.query("$CMD:MON,CH:8,PAR:VSET", numbers, idempotent=True)
        assert values[2] == 150.0


async def test_refusal_is_typed_and_not_retried() -> None:
    async with connect(CAEN, name="hv") as t:
        with pytest.raises(InstrumentRefused) as info:
            await t.query("$CMD:MON,CH:0,PAR:NOPE", caen.parse_reply, idempotent=True)
        assert info.value.code == "PAR:ERR"
        assert "PAR:NOPE" in str(info.value) and CAEN in str(info.value)
        assert t.stats.retries == 0 and t.stats.refused == 1


async def test_timeout_names_instrument_url_and_command() -> None:
    url = f"{CAEN}?faults=drop=1&timeout=0.15&attempts=2&backoff=0"
    async with connect(url, name="hv") as t:
        started = time.monotonic()
        with pytest.raises(TransportTimeout) as info:
            await t.query(VMON_ALL, numbers, idempotent=True)
        message = str(info.value)
        assert "hv" in message and "sim://caen-dt8033" in message and VMON_ALL in message
        assert info.value.problem == "no reply" and "the terminator" in info.value.hint
        assert t.stats.timeouts == 2 and t.stats.retries == 1
        assert time.monotonic() - started < 3


async def test_garbled_replies_are_retried_never_returned() -> None:
    async with connect(f"{CAEN}?faults=garble=0.3,seed=7&backoff=0&attempts=8", name="hv") as t:
        for channel in range(8):
            await t.query(
                f"$CMD:SET,CH:{channel},PAR:VSET,VAL:{10 * channel}", caen.parse_ok, idempotent=True
            )
        for _ in range(20):
            values = await t.query("$CMD:MON,CH:8,PAR:VSET", numbers, idempotent=True)
            assert values == [10.0 * c for c in range(8)]
        assert t.stats.garbled > 0 and t.stats.retries >= t.stats.garbled


async def test_non_idempotent_command_is_not_retried() -> None:
    async with connect(f"{CAEN}?faults=garble=1", name="hv") as t:
        with pytest.raises(GarbledReply) as info:
            await t.query("$CMD:SET,CH:0,PAR:ON", caen.parse_ok)
        assert t.stats.retries == 0
        assert info.value.reply  # the raw bytes are kept for the log
        assert t.simulator.server.commands == 1


async def test_tail_of_a_garbled_reply_is_flushed_not_misread() -> None:
    # A garbled reply comes twice, in pieces up to 50 ms apart: what is still on its way when
    # the garbled line has been read belongs to no later command.
    async with connect(f"{CAEN}?flush_quiet=0.2&attempts=1", name="hv") as t:
        await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:42", caen.parse_ok)
        for seed in range(5):
            t.simulator.set_faults(f"garble=1,duplicate=1,split=1,split_pause=0.05,seed={seed}")
            with pytest.raises(GarbledReply):
                await t.query("$CMD:MON,CH:0,PAR:VSET", caen.parse_numbers)
            t.simulator.set_faults("none,delay=0.1")  # the next reply comes after the tail
            assert await t.query("$CMD:MON,CH:0,PAR:ISET", caen.parse_numbers) == [100.0]
        assert t.stats.garbled == 5


async def test_late_reply_after_timeout_is_flushed_not_misread() -> None:
    async with connect(f"{CAEN}?timeout=0.2&attempts=1", name="hv") as t:
        await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:42", caen.parse_ok)
        t.simulator.set_faults("delay=0.35")
        with pytest.raises(TransportTimeout):
            await t.query("$CMD:MON,CH:0,PAR:VSET", caen.parse_numbers)
        t.simulator.set_faults("delay=0")
        # The late "#CMD:OK,VAL:42" must not be taken as the reply to this different query.
        assert await t.query("$CMD:MON,CH:0,PAR:ISET", caen.parse_numbers) != [42.0]


async def test_reply_of_a_cancelled_query_is_flushed_not_misread() -> None:
    # A pause or a stop cancels a query mid-exchange; its reply still arrives later.
    async with connect(f"{CAEN}?timeout=0.5", name="hv") as t:
        await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:42", caen.parse_ok)
        t.simulator.set_faults("delay=0.2")
        query = asyncio.create_task(t.query("$CMD:MON,CH:0,PAR:VSET", caen.parse_numbers))
        await asyncio.sleep(0.05)
        query.cancel()
        with pytest.raises(asyncio.CancelledError):
            await query
        t.simulator.set_faults("delay=0")
        assert await t.query("$CMD:MON,CH:0,PAR:ISET", caen.parse_numbers) == [100.0]


async def test_unplug_and_reconnect_over_pty(caplog: pytest.LogCaptureFixture) -> None:
    url = f"{CAEN}?faults=disconnect_after=5"
    async with connect(url, name="hv") as t:
        for _ in range(12):
            assert await t.query(VMON_ALL, numbers, idempotent=True) == [0.0] * 8
        assert t.stats.reconnects >= 2 and t.stats.reconnects == t.stats.links_lost
    reconnected = [r.getMessage() for r in caplog.records if "reconnected" in r.getMessage()]
    assert reconnected == [f"{url}: reconnected"] * t.stats.reconnects


async def test_unplug_and_reconnect_over_tcp(tcp_caen: RunningSim) -> None:
    tcp_caen.set_faults("disconnect_after=4")
    async with connect(f"tcp://{tcp_caen.address}", name="hv") as t:
        for _ in range(10):
            assert await t.query(VMON_ALL, numbers, idempotent=True) == [0.0] * 8
        assert t.stats.reconnects >= 2


async def test_link_lost_for_good_raises_link_lost() -> None:
    url = f"{CAEN}?faults=disconnect_after=1,replug=30&attempts=3&backoff=0.05"
    async with connect(url, name="hv") as t:
        await t.query(VMON_ALL, numbers, idempotent=True)
        with pytest.raises(LinkLost) as info:
            await t.query(VMON_ALL, numbers, idempotent=True)
        assert "cannot reconnect" in str(info.value) and "does not exist" in str(info.value)
        assert info.value.command == VMON_ALL and "check the cable" in info.value.hint


async def test_non_idempotent_after_unplug_raises_then_recovers() -> None:
    async with connect(f"{CAEN}?faults=disconnect_after=1,replug=0.05", name="hv") as t:
        await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:5", caen.parse_ok)
        await asyncio.sleep(0.02)
        with pytest.raises(LinkLost) as info:
            await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:6", caen.parse_ok)
        assert info.value.problem.startswith("link lost (")
        assert info.value.command == "$CMD:SET,CH:0,PAR:VSET,VAL:6"
        assert "the instrument's power" in info.value.hint
        await asyncio.sleep(0.2)
        t.simulator.set_faults("disconnect_after=none")
        await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:7", caen.parse_ok)
        assert await t.query("$CMD:MON,CH:0,PAR:VSET", caen.parse_numbers) == [7.0]


async def test_concurrent_callers_never_interleave() -> None:
    async with connect(CAEN, name="hv") as t:
        for channel in range(8):
            await t.query(f"$CMD:SET,CH:{channel},PAR:VSET,VAL:{100 + channel}", caen.parse_ok)

        async def ask(channel: int) -> tuple[int, float]:
            await asyncio.sleep(random.random() * 0.01)
            reply = await t.query(f"$CMD:MON,CH:{channel},PAR:VSET", caen.parse_numbers)
            return channel, reply[0]

        results = await asyncio.gather(*(ask(random.randrange(8)) for _ in range(200)))
        assert all(value == 100 + channel for channel, value in results)
        assert t.stats.garbled == 0 and t.simulator.server.commands == 208


async def test_write_sends_without_reading() -> None:
    async with connect("sim://keithley2410", terminator="LF", name="smu") as t:
        await t.write(":SOUR:VOLT 12.5")
        assert parse_float(await t.query(":SOUR:VOLT?")) == 12.5


async def test_exchanges_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="teststand.transport")
    async with connect(CAEN, name="hv") as t:
        await t.query(VMON_ALL)
    message = next(r.getMessage() for r in caplog.records if VMON_ALL in r.getMessage())
    assert message.startswith(f"{CAEN} '{VMON_ALL}' -> b'#CMD:OK,VAL:") and message.endswith(" ms)")


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://host:1", "unknown URL scheme 'ftp'"),
        ("sim://no-such-thing", "unknown simulator kind 'no-such-thing'"),
        ("serial:///dev/ttyUSB0?baudrate=9601", "bad baud rate 9601"),
        ("serial:///dev/ttyUSB0?parity=X", "bad parity"),
        ("serial:///dev/ttyUSB0?speed=3", "unknown URL option 'speed'"),
        ("serial://dev/ttyUSB0", "three slashes"),
        ("tcp://host", "needs a host and a port"),
        ("serial:///dev/ttyUSB0?terminator=XY", "unknown terminator"),
        ("sim://lauda?faults=explode=1", "unknown fault 'explode'"),
    ],
)
async def test_bad_urls_get_one_clear_error(url: str, fragment: str) -> None:
    with pytest.raises(InvalidURL) as info:
        await connect(url)
    assert fragment in str(info.value) and url in str(info.value)


async def test_missing_device_node() -> None:
    url = "serial:///dev/ttyUSB-not-here"
    with pytest.raises(PortUnavailable, match=r"does not exist.*check the cable"):
        await connect(url)


async def test_nothing_listening_on_tcp() -> None:
    with pytest.raises(PortUnavailable, match=r"cannot connect to 127\.0\.0\.1:9"):
        await connect("tcp://127.0.0.1:9?connect_timeout=1")


def test_permission_denied_on_a_tty(tmp_path: Path) -> None:
    node = tmp_path / "ttyS99"
    node.write_text("")
    node.chmod(0)
    script = (
        "import asyncio, sys\n"
        "from teststand.transport import connect, PortUnavailable\n"
        f"async def main():\n    await connect('serial://{node}')\n"
        "try:\n    asyncio.run(main())\n"
        "except PortUnavailable as e:\n    print(e); sys.exit(0)\nsys.exit(1)\n"
    )
    command = [sys.executable, "-c", script]
    if os.getuid() == 0:  # root reads anything: run without the capabilities that allow it
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=30)
    assert result.returncode == 0, result.stderr
    assert "permission denied" in result.stdout
    assert "dialout" in result.stdout


# -- exclusive ownership ---------------------------------------------------------------------


async def test_second_opener_in_same_process_is_refused(tcp_caen: RunningSim) -> None:
    url = f"tcp://{tcp_caen.address}"
    async with connect(url, name="hv"):
        with pytest.raises(InstrumentBusy) as info:
            await connect(url, name="hv-again")
        assert info.value.owner_pid == os.getpid()
        assert "this process" in str(info.value)
    async with connect(url) as again:  # released on close
        assert isinstance(again, Transport)


HOLDER = """
import asyncio, sys
from teststand.transport import connect
async def main():
    t = await connect(sys.argv[1])
    print("open", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def _hold(url: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, "holder-marker"],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_lock_contention_between_processes(transport: str) -> None:
    sim = start_simulator("caen-dt8033", transport="tcp" if transport == "tcp" else "pty")
    url = f"tcp://{sim.address}" if transport == "tcp" else f"serial://{sim.address}"
    holder = _hold(url)
    try:
        started = time.monotonic()
        with pytest.raises(InstrumentBusy) as info:
            await connect(url, name="hv")
        assert time.monotonic() - started < 1.0
        assert info.value.owner_pid == holder.pid
        assert "holder-marker" in str(info.value) and f"PID {holder.pid}" in str(info.value)
        holder.kill()  # released on process death
        holder.wait()
        async with connect(url) as t:
            assert await t.query(VMON_ALL, numbers, idempotent=True) == [0.0] * 8
    finally:
        holder.kill()
        holder.wait()
        sim.stop()


async def test_port_held_by_a_foreign_program_is_named() -> None:
    sim = start_simulator("caen-dt8033")
    script = (
        "import serial, sys, time\n"
        "s = serial.Serial(sys.argv[1], exclusive=True)\n"
        "print('open', flush=True)\ntime.sleep(60)\n"
    )
    foreign = subprocess.Popen(
        [sys.executable, "-c", script, sim.address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert foreign.stdout is not None and foreign.stdout.readline().strip() == "open"
        with pytest.raises(InstrumentBusy) as info:
            await connect(f"serial://{sim.address}")
        assert info.value.owner_pid == foreign.pid
    finally:
        foreign.kill()
        foreign.wait()
        sim.stop()


async def test_hung_instrument_times_out_until_reset() -> None:
    async with connect(f"{CAEN}?faults=hang_after=2&timeout=0.1&attempts=2&backoff=0") as t:
        for _ in range(2):
            await t.query(VMON_ALL, numbers, idempotent=True)
        with pytest.raises(TransportTimeout):
            await t.query(VMON_ALL, numbers, idempotent=True)
        t.simulator.reset()
        assert await t.query(VMON_ALL, numbers, idempotent=True) == [0.0] * 8


async def test_set_refused_in_local_control() -> None:
    async with connect(f"{CAEN}?faults=local", name="hv") as t:
        with pytest.raises(InstrumentRefused) as info:
            await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:10", caen.parse_ok, idempotent=True)
        assert info.value.code == "LOC:ERR"
        assert "LOCAL" in str(info.value)
        assert t.stats.retries == 0


# -- what the errors, the log and the counters say -----------------------------------------------


async def test_retries_back_off_exponentially_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="teststand.transport")
    url = f"{CAEN}?faults=garble=1&attempts=3&backoff=0.05&flush_quiet=0.01"
    async with connect(url, name="hv") as t:
        with pytest.raises(GarbledReply):
            await t.query(VMON_ALL, numbers, idempotent=True)
        assert t.stats.retries == 2 and t.stats.garbled == 3
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert [m.startswith(f"{url}: garbled reply ") for m in retries] == [True, True]
    assert [m.rsplit("; ", 1)[1] for m in retries] == ["retry 1/2 in 0.05 s", "retry 2/2 in 0.10 s"]


async def test_errors_name_the_instrument_the_command_and_what_to_do() -> None:
    command = "$CMD:SET,CH:0,PAR:ON"
    async with connect(f"{CAEN}?faults=garble=1", name="hv") as t:
        with pytest.raises(GarbledReply) as garbled:
            await t.query(command, caen.parse_ok)
        t.simulator.set_faults("none,local")
        for _ in range(2):
            with pytest.raises(InstrumentRefused) as refused:
                await t.query("$CMD:SET,CH:0,PAR:VSET,VAL:10", caen.parse_ok)
        counters = t.stats.as_dict()
    assert (garbled.value.url, garbled.value.instrument, garbled.value.command) == (
        f"{CAEN}?faults=garble=1",
        "hv",
        command,
    )
    assert "garbled reply" in garbled.value.problem and "baud rate" in garbled.value.hint
    assert refused.value.instrument == "hv" and refused.value.code == "LOC:ERR"
    assert counters["refused"] == 2 and counters["garbled"] == 1 and counters["exchanges"] == 3
    with pytest.raises(
        LinkLost, match=r"^hv \(sim://caen-dt8033\?faults=garble=1\): the transport is closed"
    ):
        await t.query(VMON_ALL)
    await t.close()  # a second close does nothing


async def test_a_query_timeout_overrides_the_links() -> None:
    async with connect(f"{CAEN}?faults=hang&timeout=20&attempts=3&backoff=0", name="hv") as t:
        started = time.monotonic()
        with pytest.raises(TransportTimeout):
            await t.query(VMON_ALL, numbers, timeout=0.1, idempotent=True)
        assert time.monotonic() - started < 10  # 3 × 0.1 s (+ flushes), not 3 × 20 s
        assert t.stats.timeouts == 3


async def test_input_waiting_before_a_command_is_discarded_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="teststand.transport")
    async with connect(f"{CAEN}?faults=duplicate=1", name="hv") as t:
        for _ in range(3):
            assert await t.query("$CMD:MON,CH:0,PAR:ISET", caen.parse_numbers) == [100.0]
            await asyncio.sleep(0.1)  # the reply's second copy arrives and waits
        reply = len(b"#CMD:OK,VAL:0100.00\r\n")
        assert (t.stats.discards, t.stats.bytes_discarded) == (2, 2 * reply)
        assert t.stats.bytes_received == 3 * reply
        await t.write("$CMD:SET,CH:0,PAR:ON")  # the third copy goes before this one
        assert t.stats.discards == 3
        sent = 3 * len(b"$CMD:MON,CH:0,PAR:ISET\r\n") + len(b"$CMD:SET,CH:0,PAR:ON\r\n")
        assert t.stats.bytes_sent == sent
    messages = [r.getMessage() for r in caplog.records]
    discarded = f"{CAEN}?faults=duplicate=1: discarded waiting input b'#CMD:OK,VAL:0100.00\\r\\n'"
    assert messages.count(discarded) == 3
    assert f"{CAEN}?faults=duplicate=1 '$CMD:SET,CH:0,PAR:ON' (no reply)" in messages


async def test_round_trip_time_is_measured_in_milliseconds() -> None:
    async with connect(f"{CAEN}?faults=delay=0.05", name="hv") as t:
        await t.query(VMON_ALL)
        assert 45 <= t.stats.last_round_trip_ms < 20_000
