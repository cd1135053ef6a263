"""The IOC serving the simulated stand, read and written by caproto's client and by the served
stand (ophyd-async's CA backend over libca): PVs, metadata, puts, refusals, alarms, control."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aioca import connect
from bluesky import RunEngine
from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.sync.client import read, write
from caproto.threading.client import Context
from conftest import PREFIX, TESTSTAND, Ioc, Sims, wait_for
from helpers import run

from teststand.roles import RampFailed
from teststand.stand import BiasLimitError, TestStand, build
from teststand.stand.ca import ServedError, ServerUnavailable, StaleValue, put_checked, read_text
from teststand.stand.control import claim_control


def get(pv: str, data_type: str | None = None) -> Any:
    return read(PREFIX + pv, data_type=data_type, timeout=5, repeater=False)


def text(pv: str) -> str:
    return bytes(get(pv).data).rstrip(b"\0").decode()


def alarm(pv: str) -> tuple[AlarmStatus, AlarmSeverity]:
    metadata = get(pv, "time").metadata
    return AlarmStatus(metadata.status), AlarmSeverity(metadata.severity)


def severity(pv: str) -> AlarmSeverity:
    return AlarmSeverity(get(pv, "time").metadata.severity)


def test_pvs_follow_the_device_tree_with_units_limits_and_enums(ioc: Ioc) -> None:
    assert text("SLOT3:MODULE_ID") == "20UPGM22110003"
    voltage = get("HV:CH2:VOLTAGE", "control")
    assert voltage.metadata.units == b"V" and voltage.metadata.precision == 1
    assert get("SLOT3:BIAS_SETPOINT.DRVH").data[0] == 250  # planar limit of the stand file
    assert get("SLOT4:BIAS_SETPOINT.DRVH").data[0] == 120  # 3D
    assert get("SLOT4:BIAS_SETPOINT", "control").metadata.upper_ctrl_limit == 120
    assert get("HV:CH7:SETPOINT.DRVH").data[0] == 250  # MAXV written from the slot's limit
    assert bytes(get("COLDBOX:DEW_POINT_MARGIN.EGU").data[0]).rstrip(b"\0") == b"K"
    power_down = get("HV:CH2:POWER_DOWN", "control")
    assert power_down.data_type == ChannelType.CTRL_ENUM
    assert [s.rstrip(b"\0") for s in power_down.metadata.enum_strings[:2]] == [b"RAMP", b"KILL"]
    assert read(PREFIX + "SLOT3:SENSOR_TYPE", data_type=ChannelType.STRING).data == [b"planar"]


def test_the_pv_list(tmp_path: Path, ioc: Ioc) -> None:
    # --list of a simulated stand file (sim: true): its own simulators, no prefix check
    data = yaml.safe_load(ioc.file.read_text())
    data.update(sim=True)
    for instrument in data["instruments"].values():
        instrument.pop("url")
    stand_file = tmp_path / "stand.yaml"
    stand_file.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [TESTSTAND, "ioc", str(stand_file), "--prefix", "LST:", "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split("\t")[0]: line.split("\t")[1:] for line in result.stdout.splitlines()}
    assert lines["LST:HV:CH3:VOLTAGE"][:3] == ["float", "V", "r"]
    assert lines["LST:SLOT3:BIAS_SETPOINT"][:3] == ["float", "V", "rw"]
    assert lines["LST:COLDBOX:SETPOINT_WRITE"][:3] == ["float", "degC", "rw"]  # no move
    assert "no move" in lines["LST:COLDBOX:SETPOINT_WRITE"][3]
    assert lines["LST:HV:CH3:MAX_VOLTAGE"][2] == "r"  # the backstop stays the IOC's
    assert lines["LST:COLDBOX:DEW_POINT_MARGIN"][:2] == ["float", "K"]
    assert "LST:SMU:TRIGGER" in lines and "LST:CONTROL:OWNER" in lines


def test_a_put_without_control_is_refused_and_changes_nothing(ioc: Ioc, sims: Sims) -> None:
    with pytest.raises(Exception, match="does not hold control"):
        write(PREFIX + "SLOT3:BIAS_SETPOINT", [50.0], notify=True, timeout=5, repeater=False)
    assert "ControlRefused" in text("MSG") and "claim it first" in text("MSG")
    assert sims.status("hv")["channels"][2]["vset"] == 0
    # the IOC's log says it in one line, without caproto's traceback
    log = ioc.file.with_suffix(".log").read_text().splitlines()
    refusals = [i for i, line in enumerate(log) if "Invalid write request" in line]
    assert refusals, log[-20:]
    for i in refusals:
        assert " WARNING caproto.circ: " in log[i] and "ControlRefused: " in log[i], log[i]
        assert i + 1 == len(log) or log[i + 1].startswith("20"), log[i : i + 3]


def test_out_of_limits_puts_are_refused_before_the_instrument(
    RE: RunEngine, served: TestStand, sims: Sims
) -> None:
    channel = served.hv.channels[2]  # type: ignore[attr-defined]
    with pytest.raises(ServedError, match=r"outside the drive limits 0\.\.250"):
        run(RE, lambda: channel.setpoint.set(500.0))
    assert "outside the drive limits" in text("HV:CH2:MSG")
    # the IOC checks a slot's limit itself (here without the client's own check first)
    with pytest.raises(ServedError, match=r"0\.\.120"):
        run(RE, lambda: put_checked(PREFIX + "SLOT4:BIAS_SETPOINT", 150.0))
    with pytest.raises(BiasLimitError, match="3d sensors"):  # the served slot checks too
        run(RE, lambda: served.slots[4].set(150.0))
    assert [c["vset"] for c in sims.status("hv")["channels"]] == [0] * 8


def test_put_completes_when_the_ramp_has_settled(
    RE: RunEngine, served: TestStand, sims: Sims
) -> None:
    async def ramp() -> float:
        await served.hv.channels[0].on()  # type: ignore[attr-defined]
        await served.slots[1].set(60.0)
        return sims.vmon()[0]

    assert run(RE, ramp) == pytest.approx(60, abs=2)
    assert run(RE, served.slots[1].bias.get_value) == pytest.approx(60, abs=2)


def test_a_zero_supersedes_a_move_still_being_checked(
    RE: RunEngine, served: TestStand, sims: Sims
) -> None:
    """A suspended plan's step (a move put) and the suspension's zero sent together: the move is
    refused saying so, whether the IOC was still checking it or already ramping, and the channel
    stays at 0 V (it rose to the step's voltage when the zero came during the move's checks)."""
    channel = served.hv.channels[0]  # type: ignore[attr-defined]
    original = run(RE, channel.rate_up.get_value)

    async def step_and_zero() -> list[Any]:
        # the slowest ramp (150 V: 0.75 s of wall time at the session's speed), so that the zero
        # finds the move still being checked or ramping even when this process is descheduled
        # between the two puts (a quicker ramp had settled before the zero, under load)
        await channel.rate_up.set(1.0)
        await channel.on()
        # connected first, so that the step's put leaves before the zero's (a step put after
        # the zero is a new move and runs: seen under load when the step's channel connected
        # only then)
        await connect(PREFIX + "SLOT1:BIAS_SETPOINT")
        step = put_checked(PREFIX + "SLOT1:BIAS_SETPOINT", 150.0)
        results = await asyncio.gather(step, channel.zero(), return_exceptions=True)
        await asyncio.sleep(1.0)  # a step written after the zero would be ramping by now
        return results

    try:
        step, zero = run(RE, step_and_zero)
    finally:
        run(RE, lambda: channel.rate_up.set(original))
    assert zero is None
    assert isinstance(step, ServedError) and "the channel was zeroed" in str(step)
    assert sims.status("hv")["channels"][0]["vset"] == 0
    assert sims.vmon()[0] < 2


def test_a_trip_during_the_ramp_fails_the_put_and_alarms(
    RE: RunEngine, served: TestStand, sims: Sims
) -> None:
    channel = served.hv.channels[2]  # type: ignore[attr-defined]
    original = run(RE, channel.trip_time.get_value)

    async def ramp_into_breakdown() -> None:
        await channel.trip_time.set(0.0)
        await channel.on()
        await served.slots[3].set(200.0)  # slot 3's sensor breaks down near 120 V

    try:
        with pytest.raises(RampFailed, match="TRIP"):  # the IOC's error type, as in direct mode
            run(RE, ramp_into_breakdown)
        assert "TRIP" in run(RE, channel.read_status).faults  # at once: the IOC re-read it
        wait_for(lambda: severity("HV:CH2:STATUS") == AlarmSeverity.MAJOR_ALARM, what="MAJOR")
        assert severity("SLOT3:BIAS") == AlarmSeverity.MAJOR_ALARM
        assert severity("SLOT1:BIAS") == AlarmSeverity.NO_ALARM
    finally:
        run(RE, lambda: channel.trip_time.set(original))


def test_a_lost_link_alarms_its_pvs_and_clears_when_it_returns(
    RE: RunEngine, served: TestStand, sims: Sims
) -> None:
    sims.ask("lv1 faults hang")  # the instrument stops answering until reset
    try:
        invalid = AlarmSeverity.INVALID_ALARM
        lost = (AlarmStatus.COMM, invalid)
        # CH1's read may have been answered just before the hang: then the cycle in progress
        # fails first (its hung reads time out after 10 s), and CH1's own read in the next one
        # 10 s later (20.8 s after the hang in a loaded run, past the 20 s this waited)
        wait_for(lambda: alarm("LV1:CH1:MEASURED_VOLTAGE") == lost, 45, "INVALID/COMM")
        assert severity("SLOT1:LV_VOLTAGE") == invalid
        assert severity("HV:CH0:VOLTAGE") == AlarmSeverity.NO_ALARM
        with pytest.raises(StaleValue, match="lost the instrument"):
            run(RE, served.slots[1].lv_voltage.get_value)  # type: ignore[attr-defined]
    finally:
        sims.ask("lv1 reset")
    wait_for(lambda: severity("LV1:CH1:MEASURED_VOLTAGE") == AlarmSeverity.NO_ALARM, what="clear")
    assert run(RE, served.slots[1].lv_voltage.get_value) >= 0  # type: ignore[attr-defined]


def test_control_second_client_refused_takeover_and_release(
    RE: RunEngine,
    served: TestStand,
    served_dict: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = text("CONTROL:OWNER")
    assert "pid=" in owner
    # a second RunEngine process fails at connect, naming the owner
    stand_file = tmp_path / "served.yaml"
    stand_file.write_text(yaml.safe_dump(served_dict))
    script = "import sys; from bluesky import RunEngine; from teststand.stand import build; "
    script += "RunEngine(); build(sys.argv[1])"
    result = subprocess.run(
        [str(Path(TESTSTAND).with_name("python")), "-c", script, str(stand_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ControlHeld" in result.stderr and owner.split(" since")[0] in result.stderr
    # another client takes control over explicitly: our puts are refused, naming it
    context = Context()
    takeover, _ = context.get_pvs(PREFIX + "CONTROL:TAKEOVER", PREFIX + "CONTROL:OWNER")
    takeover.write(b"pid=4242 cmd=operator-gui\0", wait=True, timeout=5)
    assert "pid=4242 cmd=operator-gui" in text("CONTROL:OWNER")
    with pytest.raises(ServedError, match="pid=4242 cmd=operator-gui"):
        run(RE, lambda: served.hv.channels[0].rate_up.set(10.0))  # type: ignore[attr-defined]
    keeper = served.control_keeper
    assert keeper is not None
    wait_for(lambda: not keeper.held, what="the session told it lost control")
    assert "was taken over by" in caplog.text and "pid=4242 cmd=operator-gui" in caplog.text
    # that client goes away: control is released; the session, which lost it to a takeover,
    # does not grab it back on its own, but can claim it again
    context.disconnect()
    wait_for(lambda: text("CONTROL:OWNER") == "", what="release on disconnect")
    assert text("CONTROL:OWNER") == "" and not keeper.held
    run(RE, lambda: claim_control(PREFIX, 30.0))
    wait_for(lambda: keeper.held, what="held again")


def test_control_is_released_on_close(RE: RunEngine, served_dict: dict[str, Any], ioc: Ioc) -> None:
    stand = build(served_dict)
    assert "pid=" in text("CONTROL:OWNER")
    run(RE, stand.close)
    assert text("CONTROL:OWNER") == ""


def test_an_unknown_prefix_fails_at_connect(RE: RunEngine, served_dict: dict[str, Any]) -> None:
    served_dict["server"] = {"prefix": "NOPE:", "connect_timeout": 1.0}
    with pytest.raises(ServerUnavailable, match="no IOC answers for NOPE:"):
        build(served_dict)


def test_a_served_prefix_refuses_a_second_ioc(ioc: Ioc) -> None:
    result = subprocess.run(
        [TESTSTAND, "ioc", str(ioc.file), "--prefix", PREFIX, "--interfaces", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{PREFIX} is already served on the network" in result.stderr


def test_a_stand_file_with_errors_refuses_to_start(tmp_path: Path, ioc: Ioc) -> None:
    data = yaml.safe_load(ioc.file.read_text())
    data["slots"][3]["hv"] = "hv:12"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [TESTSTAND, "ioc", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "slots.3.hv" in result.stderr and "has no channel 12" in result.stderr


def test_the_refused_put_reason_reaches_the_plan(
    RE: RunEngine, served: TestStand, sims: Sims
) -> None:
    """ophyd-async swallowed a failed CA put (aioca's CANothing is falsy): not here."""
    with pytest.raises(ServedError, match="drive limits"):
        run(RE, lambda: served.hv.channels[1].setpoint.set(1e4))  # type: ignore[attr-defined]
    assert "drive limits" in run(RE, lambda: read_text(PREFIX + "HV:CH1:MSG"))
    assert sims.status("hv")["channels"][1]["vset"] == 0
