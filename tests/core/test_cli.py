"""The `teststand` command line, run as a user would run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from teststand.app.ioc.process import SimulatorProcess

ROOT = Path(__file__).resolve().parents[2]
TESTSTAND = str(Path(sys.executable).with_name("teststand"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TESTSTAND, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.parametrize(
    "command",
    [[], ["demo"], ["query"], ["sim"], ["sim", "kinds"], ["sim", "serve"], ["sim", "serve-stand"]],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "usage: teststand" in result.stdout


def test_sim_kinds_lists_every_simulator() -> None:
    out = run("sim", "kinds").stdout
    for kind in ("caen-dt8033", "caen-n1470", "lauda", "keithley2410", "hmp4040", "coldbox"):
        assert kind in out


def test_sim_serve_prints_address_first_and_stops_on_sigterm() -> None:
    server = subprocess.Popen(
        [TESTSTAND, "sim", "serve", "caen-n1470", "--tcp", "127.0.0.1:0", "-o", "board=5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        host, port = server.stdout.readline().strip().rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"$BD:05,CMD:MON,CH:4,PAR:VSET\r\n")
            assert sock.makefile("rb").readline().startswith(b"#BD:05,CMD:OK,VAL:")
        server.stdin.write("faults drop=0.5\n")
        server.stdin.flush()
        assert "drop=0.5" in server.stdout.readline()
        server.stdin.write("faults none,duplicate=1,split=1\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "faults: duplicate=1.0,split=1.0"
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"$BD:05,CMD:MON,CH:1,PAR:RUP\r\n")
            replies = sock.makefile("rb")
            assert replies.readline() == replies.readline() == b"#BD:05,CMD:OK,VAL:010\r\n"
        server.stdin.write("faults noise=2\n")  # refused whole, with the keys
        server.stdin.flush()
        refusal = server.stdout.readline()
        assert "fraction between 0 and 1" in refusal and "truncate, duplicate" in refusal
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
    finally:
        server.kill()
        server.wait()


def test_sim_serve_on_a_pty_prints_a_device_path() -> None:
    server = subprocess.Popen(
        [TESTSTAND, "sim", "serve", "lauda", "--pty", "--speed", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        path = server.stdout.readline().strip()
        assert os.path.realpath(path).startswith("/dev/pts/")
        result = run("query", f"serial://{path}?write_terminator=CR", "IN_SP_00")
        assert result.returncode == 0, result.stderr
        server.send_signal(signal.SIGINT)
        assert server.wait(10) == 0
    finally:
        server.kill()
        server.wait()


def test_serve_stand_serves_every_instrument(tmp_path: Path) -> None:
    server = SimulatorProcess(ROOT / "profile_collection" / "stand.yaml")
    try:
        assert set(server.urls) == {"hv", "chiller", "coldbox", "smu", "lv1", "lv2"}
        result = run("query", server.urls["smu"], "*IDN?")
        assert "MODEL 2410" in result.stdout
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 0
    finally:
        server.stop()


def test_query_through_a_simulator_url() -> None:
    result = run("query", "sim://caen-dt8033", "$CMD:MON,CH:8,PAR:VMON")
    assert result.returncode == 0, result.stderr
    (reply,) = result.stdout.splitlines()
    assert reply.startswith("#CMD:OK,VAL:") and reply.count(";") == 7


def test_query_exits_non_zero_on_an_error_reply() -> None:
    """Every reply is printed; an error reply names the command on stderr and fails the exit."""
    result = run("query", "sim://caen-dt8033", "$CMD:MON,CH:9,PAR:VMON", "$CMD:MON,CH:8,PAR:VMON")
    assert result.returncode == 1
    first, second = result.stdout.splitlines()
    assert first == "#CH:ERR" and second.startswith("#CMD:OK,VAL:")
    assert "refused '$CMD:MON,CH:9,PAR:VMON': CH:ERR: bad channel number" in result.stderr
    lauda = run("query", "sim://lauda", "OUT_SP_00_900")
    assert lauda.returncode == 1 and "ERR_" in lauda.stdout, lauda.stdout + lauda.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim", "serve", "nope"], "unknown simulator kind 'nope'"),
        (["sim", "serve", "lauda", "--faults", "boom"], "unknown fault 'boom'"),
        (["sim", "serve", "lauda", "--tcp", "nonsense"], "--tcp wants HOST:PORT"),
        (["sim", "serve", "caen-n1470", "-o", "board=five"], "-o board=five: board takes int"),
        (["query", "serial:///dev/ttyUSB-missing", "*IDN?"], "does not exist"),
        (["query", "serial:///dev/null?baudrate=12", "*IDN?"], "bad baud rate 12"),
        (["demo", "--stand", "/nonexistent.yaml"], "/nonexistent.yaml does not exist"),
    ],
)
def test_bad_input_gives_one_clear_error(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_sim_options_take_the_type_the_simulator_declares() -> None:
    """`dialect` is text: -o dialect=2450 is the 2450, not the number 2450."""
    server = subprocess.Popen(
        [TESTSTAND, "sim", "serve", "keithley2410", "--tcp", "127.0.0.1:0", "-o", "dialect=2450"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        assert address, server.stderr.read() if server.stderr else ""
        result = run("query", f"tcp://{address}?terminator=LF", "*IDN?")
        assert "MODEL 2450" in result.stdout, result.stdout + result.stderr
    finally:
        server.terminate()
        server.wait(10)
