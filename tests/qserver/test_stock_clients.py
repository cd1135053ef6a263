"""The queue server's stock clients as shipped: the `qserver` CLI and `REManagerAPI()` with their
defaults (user group `primary`) against a real Redis and RE Manager running THIS profile."""

from __future__ import annotations

import json
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from bluesky_queueserver.manager.qserver_cli import QServerExitCodes
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.zmq import REManagerAPI
from queue_helpers import PROFILE, SHORT_IV, Manager, wait_until_run

from teststand.app.qserver import OPERATOR_GROUP, read_state

QSERVER = Path(sysconfig.get_path("scripts")) / "qserver"


def control_address(manager: Manager) -> str:
    found = {c.name: c for c in read_state(manager.state_dir)}
    return found["manager"].address.split()[0]


def qserver(manager: Manager, *words: str, landed: Callable[[], bool] | None = None) -> str:
    """The stock `qserver` CLI (its default user and group); its output, checked for success.

    The CLI waits a fixed 2 s for the manager's answer. On a loaded machine the manager's first
    validation of a plan can take longer; the request still lands. With `landed` (whether the
    request took effect), a request that timed out is waited for, never sent twice."""
    done = subprocess.run(
        [str(QSERVER), "--zmq-control-addr", control_address(manager), *words],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == QServerExitCodes.COMMUNICATION_ERROR.value and landed is not None:
        deadline = time.monotonic() + 60
        while not landed():
            assert time.monotonic() < deadline, f"{words} timed out and never took effect"
            time.sleep(0.2)
        return done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def stock_api(manager: Manager) -> Iterator[REManagerAPI]:
    """`REManagerAPI` with nothing but the address: its default user and user group."""
    api = REManagerAPI(zmq_control_addr=control_address(manager))
    yield api
    api.close()


def test_the_profile_defines_the_stock_default_group() -> None:
    groups = yaml.safe_load((PROFILE / "user_group_permissions.yaml").read_text())["user_groups"]
    assert OPERATOR_GROUP == "primary" == REManagerAPI().user_group
    assert "iv_scan" in groups["primary"]["allowed_plans"]
    assert groups["observer"]["allowed_plans"] == []  # the observer stays read-only
    http = yaml.safe_load((PROFILE / "httpserver.yml").read_text())
    assert http["resource_access"]["args"]["default_group"] == "primary"


def test_the_stock_qserver_cli_runs_an_iv_scan(manager: Manager, stock_api: REManagerAPI) -> None:
    assert "'iv_scan'" in qserver(manager, "allowed", "plans")  # what `primary` may run
    qserver(manager, "environment", "open")
    stock_api.wait_for_idle(timeout=120)
    assert stock_api.status()["worker_environment_exists"]
    plan = json.dumps({"name": "iv_scan", "kwargs": SHORT_IV})

    def queued() -> bool:
        return [item["name"] for item in stock_api.queue_get()["items"]] == ["iv_scan"]

    qserver(manager, "queue", "add", "plan", plan, landed=queued)
    assert queued()
    ran = len(stock_api.history_get()["items"])  # the manager may have run plans before
    qserver(manager, "queue", "start")
    wait_until_run(stock_api, history=ran + 1)
    history = qserver(manager, "history", "get")
    assert "'name': 'iv_scan'" in history and "'exit_status': 'completed'" in history, history
    assert "'user_group': 'primary'" in history

    # The Python API with its defaults queues and reads the same way.
    stock_api.item_add(BPlan("hv_off", slots="1-2"))
    stock_api.queue_start()
    wait_until_run(stock_api, history=ran + 2)
    last = stock_api.history_get()["items"][-1]
    assert (last["name"], last["result"]["exit_status"]) == ("hv_off", "completed")
    qserver(manager, "environment", "close")
    stock_api.wait_for_idle(timeout=60)
