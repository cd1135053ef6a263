"""Fault injection: each fault class shapes the replies as documented; bad specs are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from teststand.config import ConfigError, load_stand
from teststand.errors import InvalidURL
from teststand.sim.caen import CaenDT8033
from teststand.sim.clock import SimClock
from teststand.sim.faults import KEYS, Faults, FaultSpecError
from teststand.sim.lauda import Lauda
from teststand.sim.server import SimServer
from teststand.transport import connect

VMON = b"$CMD:MON,CH:0,PAR:VMON"
RUP = b"$CMD:MON,CH:0,PAR:RUP"
CLEAN_VMON = b"#CMD:OK,VAL:0000.0\r\n"
CLEAN_RUP = b"#CMD:OK,VAL:010\r\n"


def server(spec: str) -> SimServer:
    return SimServer(CaenDT8033(SimClock(100)), Faults.parse(spec + ",seed=3"))


def sent(writes: list[tuple[float, bytes]]) -> bytes:
    return b"".join(data for _, data in writes)


async def answers(spec: str, command: bytes, count: int = 50) -> list[bytes]:
    sim = server(spec)
    return [sent(await sim.process(command)) for _ in range(count)]


async def test_printable_noise_adds_printable_bytes() -> None:
    for reply in await answers("noise=1", VMON):
        line, terminator = reply[:-2], reply[-2:]
        assert terminator == b"\r\n" and len(CLEAN_VMON) < len(reply) <= len(CLEAN_VMON) + 3
        assert all(0x20 <= byte < 0x7F for byte in line), reply


async def test_truncated_lines_lose_bytes_mid_line_and_keep_the_terminator() -> None:
    for reply in await answers("truncate=1", VMON):
        assert reply.endswith(b"\r\n") and reply[:1] == b"#"
        assert len(reply) < len(CLEAN_VMON) and b"\n" not in reply[:-1]


async def test_misread_doubles_a_digit_of_the_next_decimal_replies_only() -> None:
    """`misread=2`: the next two replies holding a decimal number are wrong and well formed
    (the bath reads 220 °C); a reply without one passes untouched and is not counted."""
    sim = SimServer(Lauda(SimClock(100)), Faults.parse("misread=2"))
    commands = (b"IN_MODE_02", b"IN_PV_00", b"IN_PV_00", b"IN_PV_00")
    replies = [sent(await sim.process(command)) for command in commands]
    assert replies == [b"1\r\n", b"220.00\r\n", b"220.00\r\n", b"020.00\r\n"]
    assert sim.fault_counts["misread"] == 2 and sim.faults.misread == 0


async def test_duplicated_replies_come_twice() -> None:
    assert set(await answers("duplicate=1", VMON)) == {CLEAN_VMON * 2}


async def test_unsolicited_lines_are_earlier_replies_to_other_commands() -> None:
    sim = server("unsolicited=1")
    first = sent(await sim.process(VMON))
    assert first in (b"NOTICE\r\n" + CLEAN_VMON, CLEAN_VMON + b"NOTICE\r\n")
    places = set()
    for _ in range(12):  # the history holds the last 16 replies
        reply = sent(await sim.process(RUP))
        assert sorted(reply.splitlines(keepends=True)) == sorted([CLEAN_RUP, CLEAN_VMON])
        places.add(reply.startswith(CLEAN_VMON))
    assert places == {True, False}  # before the reply and after it


async def test_split_replies_come_in_pieces_with_pauses() -> None:
    sim = server("split=1,split_pause=0.01")
    for _ in range(20):
        writes = await sim.process(VMON)
        assert sent(writes) == CLEAN_VMON and 2 <= len(writes) <= 4
        assert writes[0][0] == 0 and all(0 <= pause <= 0.01 for pause, _ in writes)
    assert sim.fault_counts["split"] == 20 and sim.faulty_replies == 20


async def test_faults_are_counted_and_a_clean_reply_is_not() -> None:
    sim = server("noise=0.5,truncate=0.5")
    replies = [sent(await sim.process(VMON)) for _ in range(200)]
    faulty = sum(reply != CLEAN_VMON for reply in replies)
    assert 100 < sim.faulty_replies < 200 and faulty <= sim.faulty_replies
    assert sim.fault_counts["noise"] + sim.fault_counts["truncate"] >= sim.faulty_replies


async def test_faults_change_while_running() -> None:
    sim = server("")
    assert sent(await sim.process(VMON)) == CLEAN_VMON
    sim.set_faults("duplicate=1")
    assert sent(await sim.process(VMON)) == CLEAN_VMON * 2
    sim.set_faults("none")
    assert sent(await sim.process(VMON)) == CLEAN_VMON and sim.faults.describe() == "none"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("noisy=0.1", "unknown fault 'noisy'"),
        ("noise=1.5", "expected a fraction between 0 and 1"),
        ("truncate=-0.1", "expected a fraction between 0 and 1"),
        ("split=nan", "expected a fraction between 0 and 1"),
        ("split_pause=-1", "expected seconds >= 0"),
    ],
)
def test_bad_specs_are_refused_with_the_list_of_keys(spec: str, problem: str) -> None:
    faults = Faults.parse("duplicate=0.5")
    with pytest.raises(FaultSpecError) as info:
        faults.update(f"unsolicited=0.2,{spec}")
    message = str(info.value)
    assert problem in message and all(key in message for key in KEYS)
    assert faults.unsolicited == 0 and faults.duplicate == 0.5  # nothing half-applied


async def test_bad_spec_in_a_url_is_an_invalid_url_naming_the_keys() -> None:
    with pytest.raises(InvalidURL, match=r"unknown fault 'dupe'.*duplicate, unsolicited, split"):
        await connect("sim://caen-dt8033?faults=dupe=0.1")


def test_bad_spec_in_a_stand_file_is_a_config_error(tmp_path: Path) -> None:
    stand = tmp_path / "stand.yaml"
    stand.write_text(
        "name: s\nsim: true\ninstruments:\n  hv:\n    kind: caen-dt8033\n"
        "    simulator:\n      faults: truncate=2\n"
    )
    with pytest.raises(ConfigError, match=r"truncate.*fraction between 0 and 1.*allowed: garble"):
        load_stand(stand)


async def test_transport_discards_duplicated_lines_waiting_before_a_command() -> None:
    url = "sim://caen-dt8033?faults=duplicate=0.5,seed=5"
    async with connect(url, name="hv", terminator="CRLF") as t:
        for _ in range(40):
            assert await t.query(VMON.decode()) == CLEAN_VMON[:-2].decode()
            assert await t.query(RUP.decode()) == CLEAN_RUP[:-2].decode()
            await asyncio.sleep(0.002)  # the duplicate arrives before the next command
        assert t.stats.discards > 10 and t.stats.bytes_discarded >= 10 * len(CLEAN_RUP)
