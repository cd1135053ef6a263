"""`stop` and `status` of a queue server recorded in a state directory."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from teststand.app.qserver.errors import ManagerBusy, RedisUnreachable
from teststand.app.qserver.processes import Component, signal_group, stop_component, wait_gone
from teststand.app.qserver.redis_db import RedisAddress, ping_redis
from teststand.app.qserver.start import manager_client
from teststand.app.qserver.state import STATE_FILE, locked, read_state


def stop(state_dir: Path, *, force: bool = False, timeout: float = 30.0) -> list[Component]:
    """Stop the HTTP server, the RE Manager (through its API, else by signal), then our Redis.

    A manager that runs or holds a paused plan is left alone (`ManagerBusy`) unless `force`.
    Returns what was stopped (and a Redis not ours); empty when nothing ran. Clears the state.
    """
    if not (state_dir / STATE_FILE).exists():
        return []
    with locked(state_dir):
        recorded = {c.name: c for c in read_state(state_dir)}
        ordered = [recorded[name] for name in ("http", "manager", "redis") if name in recorded]
        alive = {c.name: c for c in ordered if c.alive}
        if "manager" in alive:
            _ask_manager_to_stop(alive["manager"], force)
        if "http" in alive:
            stop_component(alive["http"], timeout)  # meanwhile the manager winds down
        if "manager" in alive:
            wait_gone(alive["manager"], timeout)
        if "redis" in alive:
            stop_component(alive["redis"], timeout)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return [c for c in ordered if c.name in alive or c.pid is None]


def _ask_manager_to_stop(manager: Component, force: bool) -> None:
    """`manager_stop` over 0MQ; SIGTERM if the manager does not answer."""
    from bluesky_queueserver_api.comm_base import (  # type: ignore[import-untyped]
        RequestFailedError,
        RequestTimeoutError,
    )

    assert manager.pid is not None
    client = manager_client(manager.address.split()[0], timeout=3.0)
    try:
        client.send_request(
            method="manager_stop", params={"option": "safe_off" if force else "safe_on"}
        )
    except RequestTimeoutError:
        signal_group(manager.pid, signal.SIGTERM)
    except RequestFailedError as exc:
        raise ManagerBusy(
            f"the RE Manager refused to stop ({exc}). End the plan first with `teststand queue "
            "abort` (it pauses the plan; its cleanup brings HV to 0 V), or stop anyway with "
            "`teststand qserver stop --force` (kills the running plan)"
        ) from None
    finally:
        client.close()


@dataclass(frozen=True)
class ComponentStatus:
    component: Component
    running: bool
    detail: str = ""

    def line(self) -> str:
        c = self.component
        if c.pid is None:
            where = "external"
            state = "reachable" if self.running else "NOT REACHABLE"
        else:
            where = f"pid {c.pid}"
            state = "running" if self.running else "STALE (not running)"
        detail = f"; {self.detail}" if self.detail else ""
        return f"{c.name:<8} {state:<20} {where:<10} {c.address}{detail}"


def status(state_dir: Path) -> list[ComponentStatus]:
    """What the state directory records, with what still runs; the manager's own state."""
    found: list[ComponentStatus] = []
    for component in read_state(state_dir):
        if component.pid is None:
            try:
                ping_redis(RedisAddress.parse(component.address), timeout=1.0)
                found.append(ComponentStatus(component, True))
            except RedisUnreachable as exc:
                found.append(ComponentStatus(component, False, str(exc)))
            continue
        running = component.alive
        detail = _manager_summary(component) if running and component.name == "manager" else ""
        found.append(ComponentStatus(component, running, detail))
    return found


def _manager_summary(manager: Component) -> str:
    from bluesky_queueserver_api.comm_base import RequestTimeoutError

    client = manager_client(manager.address.split()[0], timeout=2.0)
    try:
        s = client.send_request(method="status")
    except RequestTimeoutError:
        return "does not answer"
    finally:
        client.close()
    environment = "open" if s.get("worker_environment_exists") else "closed"
    lock = s.get("lock") or {}
    locked_parts = [part for part in ("environment", "queue") if lock.get(part)]
    return (
        f"state {s.get('manager_state')}, environment {environment}, "
        f"{s.get('items_in_queue')} queued, locked: {', '.join(locked_parts) or 'no'}"
    )
