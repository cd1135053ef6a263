"""The Timepix3 readout simulator over real sockets: control lines, data packets, physics."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from teststand.sim import timepix3_packets as packets
from teststand.sim.runner import RunningSim, start_simulator
from teststand.sim.timepix3_matrix import Source


class Board:
    """A raw control connection and data connection to the simulated readout."""

    def __init__(self, sim: RunningSim) -> None:
        host, port = sim.address.split(":")
        self.control = socket.create_connection((host, int(port)), timeout=5).makefile("rwb")
        data_host, data_port = self.ask("DATA?").split(":")
        self.data = socket.create_connection((data_host, int(data_port)), timeout=5)

    def ask(self, line: str) -> str:
        self.control.write(line.encode() + b"\n")
        self.control.flush()
        return self.control.readline().decode().strip()

    def frame(self) -> list[int]:
        """START, then every 64-bit word up to the end-of-shutter packet."""
        assert self.ask("START") == "OK"
        raw = b""
        while len(raw) < 8 or struct.unpack_from("<Q", raw, len(raw) - 8)[0] >> 48 != 0x71B0:
            raw += self.data.recv(1 << 20)
        return list(struct.unpack(f"<{len(raw) // 8}Q", raw))


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with start_simulator("timepix3", transport="tcp", speed=20.0, dead=30, noisy=3) as running:
        yield running


@pytest.fixture
def board(sim: RunningSim) -> Iterator[Board]:
    sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source()))
    board = Board(sim)
    for line in ("SHUTTER 0.2", "TPULSES 0", "TPMASK OFF", "DAC Vthreshold_fine 100"):
        assert board.ask(line) == "OK"
    yield board
    board.data.close()
    board.control.close()


def pixels(words: list[int]) -> list[int]:
    return [w for w in words if w >> 60 in (0xA, 0xB)]


def test_commands_and_their_errors(board: Board) -> None:
    assert board.ask("*IDN?").startswith("ASI,TPX3-SIM")
    assert board.ask("DAC Vthreshold_fine 512") == "ERR out of range: Vthreshold_fine 0..511"
    assert board.ask("dac ibias_ikrum 20") == "OK"
    assert board.ask("DAC? Ibias_Ikrum") == "20"
    assert board.ask("DAC Nope 1") == "ERR unknown DAC: Nope"
    assert board.ask("TRIMS 0123") == "ERR trims need 65536 hex digits, got 4"
    assert board.ask("TRIMS " + "F" * 65536) == "OK"
    assert board.ask("TRIMS?") == "F" * 65536
    assert board.ask("TRIMS " + "8" * 65536) == "OK"
    assert board.ask("MODE FAST").startswith("ERR bad value")
    assert board.ask("TPMASK 5 5 5 9").startswith("ERR out of range")
    assert board.ask("FLY") == "ERR unknown command: FLY"
    assert board.ask("SHUTTER 0") == "ERR out of range: SHUTTER 0.000001..3600"
    assert board.ask("STATUS?").startswith("IDLE")


def test_a_frame_counts_its_packets_and_decodes_to_the_pulsed_pixels(board: Board) -> None:
    for line in ("TPMASK 10 20 14 24", "TPULSES 5", "DAC VTP_fine 300"):
        assert board.ask(line) == "OK"
    words = board.frame()
    assert words[0] >> 56 == packets.GLOBAL_TIME
    assert words[1] >> 56 == packets.TDC1_RISE
    hits = pixels(words)
    assert words[-1] & 0xFFFFFFFFFFFF == len(hits)  # the end-of-shutter packet counts them
    pulsed = {(10 + i, 20 + j) for i in range(4) for j in range(4)}
    addresses = {(w >> 44) & 0xFFFF for w in hits}
    assert {packets.pixel_address(x, y) for x, y in pulsed} <= addresses  # 3000 e- >> 1000 e-
    assert len(hits) >= 5 * 16  # plus the noisy pixels


def test_threshold_above_the_pulse_silences_the_pixels(board: Board) -> None:
    for line in ("TPMASK 0 0 8 8", "TPULSES 20", "DAC VTP_fine 100", "DAC Vthreshold_fine 200"):
        assert board.ask(line) == "OK"
    region = {packets.pixel_address(x, y) for x in range(8) for y in range(8)}

    def pulsed_hits() -> int:
        return sum((w >> 44) & 0xFFFF in region for w in pixels(board.frame()))

    quiet = pulsed_hits()  # 1000 e- pulses under a 2000 e- threshold
    assert board.ask("DAC Vthreshold_fine 20") == "OK"
    loud = pulsed_hits()  # over a 200 e- threshold
    assert quiet < 5 and loud >= 20 * 64 - 5


def test_a_beta_source_makes_clusters_and_bias_sets_the_charge(
    sim: RunningSim, board: Board
) -> None:
    sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source("beta", 2000)))
    full = [(w >> 20) & 0x3FF for w in pixels(board.frame())]
    sim.host.call(lambda: sim.instrument.set_bias(15.0))  # a quarter of the depletion voltage
    half = [(w >> 20) & 0x3FF for w in pixels(board.frame())]
    sim.host.call(lambda: sim.instrument.set_bias(150.0))
    assert len(full) > 2000 * 0.2 * 2  # clusters of several pixels
    assert sum(half) / len(half) < 0.7 * sum(full) / len(full)


def test_bulk_blocks_reach_the_asked_rate(sim: RunningSim, board: Board) -> None:
    sim.host.call(lambda: setattr(sim.instrument, "bulk", True))
    try:
        sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source("flat", 2e6)))
        words = board.frame()
    finally:
        sim.host.call(lambda: setattr(sim.instrument, "bulk", False))
    assert len(pixels(words)) == round(2e6 * 0.2) == words[-1] & 0xFFFFFFFFFFFF


def test_a_stalled_stream_sends_nothing_until_stopped(sim: RunningSim, board: Board) -> None:
    sim.host.call(sim.instrument.stall)
    assert board.ask("START") == "OK"
    assert board.ask("STATUS?").startswith("STALLED")
    sim.host.call(sim.instrument.unstall)
    assert board.ask("STOP") == "OK"
    assert board.ask("STATUS?").startswith("IDLE")
