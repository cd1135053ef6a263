"""An IOC restart with a RunEngine connected: the plan in progress fails with HV at 0 V,
nothing is read as valid while the IOC is away, and the devices reconnect when it is back. And
the IOC ends on SIGTERM with clients subscribed."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from conftest import Ioc, Sims, ioc_data, wait_for
from helpers import run, stand_dict

from teststand import errors
from teststand.plans.iv import iv_scan
from teststand.stand import build
from teststand.stand.ca import ServerUnavailable, read_text

PREFIX = "TSR:"


@pytest.fixture(scope="module")
def own_ioc(ca_repeater: None) -> Iterator[tuple[Sims, Ioc]]:
    """Simulators and an IOC of this module's own; a test that ends the IOC starts it again."""
    sims = Sims(stand_dict(200.0))
    ioc = Ioc(ioc_data(sims, 200.0), PREFIX)
    yield sims, ioc
    ioc.close()
    sims.stop()


def running(ioc: Ioc) -> Ioc:
    """`ioc`, started again if an earlier test ended it."""
    if ioc.process is None or ioc.process.poll() is not None:
        ioc.process = None
        ioc.start()
    return ioc


def test_an_ioc_restart_fails_the_plan_cleanly_and_the_devices_reconnect(
    RE: RunEngine, own_ioc: tuple[Sims, Ioc]
) -> None:
    sims, ioc = own_ioc
    running(ioc)
    data: dict[str, Any] = ioc_data(sims, 200.0)
    data["server"] = {"prefix": PREFIX, "connect_timeout": 30.0}
    stand = build(data)
    events: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}

    def restart() -> None:
        ioc.stop()  # SIGTERM: the IOC writes VSET 0 to every channel and exits
        try:  # never the last value while the IOC is away
            seen["read"] = run(RE, stand.slots[1].bias.get_value)
        except Exception as exc:
            seen["read"] = exc
        ioc.start()

    restarter = threading.Thread(target=restart)

    def on_event(name: str, doc: dict[str, Any]) -> None:
        if name == "event":
            events.append(doc)
            if len(events) == 3:  # HV is up (callbacks run on the RunEngine's loop)
                restarter.start()

    RE.subscribe(on_event)
    with pytest.raises(errors.TeststandError):
        RE(iv_scan(stand, [1, 2], stop=200, step=10, settle=0))
    assert len(events) >= 3, "the plan failed before the IOC was stopped"
    restarter.join()
    assert isinstance(seen["read"], ServerUnavailable), seen
    assert len(events) <= 4  # no point after the IOC went away
    wait_for(lambda: max(sims.vmon()) < 2, what="HV at 0 V")
    restarted = time.monotonic()
    assert wait_for(
        lambda: _reads(RE, stand.slots[1].bias.get_value) is not None,
        timeout=90,
        what="reconnect",
    ) == pytest.approx(0, abs=2)
    print(f"reconnected {time.monotonic() - restarted:.1f} s after the restart")
    # control went with the IOC: the session claims it again on its own
    wait_for(lambda: f"pid={os.getpid()} " in _owner(RE), timeout=30, what="control claimed again")
    run(RE, lambda: stand.slots[1].hv_channel.rate_up.set(20.0))
    run(RE, stand.close)


def _owner(RE: RunEngine) -> str:
    return str(run(RE, lambda: read_text(PREFIX + "CONTROL:OWNER")))


def _reads(RE: RunEngine, get: Any) -> float | None:
    try:
        value: float = run(RE, get)
    except errors.TeststandError:
        return None
    return value


# caproto's client thread that activates the churner's subscriptions raises when their PV is
# gone with the IOC: the scenario itself, not a fault of the IOC
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_ioc_exits_on_sigterm_while_clients_are_subscribed(
    own_ioc: tuple[Sims, Ioc],
) -> None:
    """Three clients monitoring PVs of every instrument, one of them subscribing and leaving
    all the time: SIGTERM still ends the IOC by itself, in its orderly way (exit status 0), with
    no SIGKILL (an IOC once ignored SIGTERM for 1.5 h with clients subscribed)."""
    from caproto.threading.client import Context

    ioc = running(own_ioc[1])
    assert ioc.process is not None
    names = ["HV:CH0:VOLTAGE", "COLDBOX:AIR_TEMPERATURE", "COLDBOX:DEW_POINT", "SLOT1:TEMPERATURE"]
    contexts = [Context() for _ in range(3)]
    updates = [0] * len(contexts)
    subscriptions = []
    callbacks: list[Any] = []
    churning = threading.Event()
    try:
        for index, context in enumerate(contexts):
            for pv in context.get_pvs(*[PREFIX + name for name in names]):
                pv.wait_for_connection(timeout=20)
                subscription = pv.subscribe()

                def count(_sub: Any, _response: Any, i: int = index) -> None:
                    updates[i] += 1

                callbacks.append(count)  # caproto holds callbacks by weak reference
                subscription.add_callback(count)
                subscriptions.append(subscription)
        wait_for(lambda: min(updates) >= len(names), 30, "every client subscribed")
        (churner_pv,) = contexts[0].get_pvs(PREFIX + "SLOT1:TEMPERATURE")

        def churn() -> None:  # a client subscribing and leaving while the IOC shuts down
            while not churning.is_set():
                subscription = churner_pv.subscribe()
                subscription.add_callback(count)
                time.sleep(0.01)
                try:
                    subscription.clear()
                except OSError:  # the IOC has gone (its circuit closed): the churn ends
                    return

        churning_thread = threading.Thread(target=churn, daemon=True)
        churning_thread.start()
        time.sleep(0.5)
        began = time.monotonic()
        ioc.process.terminate()
        assert ioc.process.wait(30) == 0  # TimeoutExpired: it did not exit on SIGTERM
        print(f"the IOC exited {time.monotonic() - began:.1f} s after SIGTERM")
    finally:
        churning.set()
        for context in contexts:
            context.disconnect()
