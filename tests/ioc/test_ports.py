"""CA ports reserved for our servers: outside the kernel's ephemeral range, one process each."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys

import pytest

from teststand.app.ioc.process import PORT_LOCKS, _ephemeral_low, reserve_ca_port

HOLDER = """
import json, sys
from teststand.app.ioc.process import reserve_ca_port
print(json.dumps([reserve_ca_port() for _ in range(300)]), flush=True)
sys.stdin.readline()
"""


def test_ports_reserved_by_a_living_process_are_not_given_to_another() -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        held = set(json.loads(holder.stdout.readline()))
        mine = {reserve_ca_port() for _ in range(300)}
        assert len(held) == 300 and len(mine) == 300
        assert not held & mine, f"ports reserved twice: {sorted(held & mine)}"
        assert max(held | mine) < _ephemeral_low(), "a reserved port in the ephemeral range"
        for port in held:
            with open(PORT_LOCKS / str(port), "rb") as lock, pytest.raises(BlockingIOError):
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        holder.communicate("\n", timeout=10)
    # The holder's locks end with it: its ports can be reserved again.
    for port in held:
        with open(PORT_LOCKS / str(port), "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
