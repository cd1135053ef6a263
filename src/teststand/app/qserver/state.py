"""Where a queue server keeps its pids, addresses and logs (`qserver.json` in a state
directory), the options of `start`, and the checks made before anything starts."""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from teststand.app.locate import find_profile, find_stand
from teststand.app.qserver.errors import (
    AlreadyRunning,
    PortInUse,
    QserverConfigError,
    QserverError,
)
from teststand.app.qserver.processes import Component
from teststand.config import load_stand

STATE_FILE = "qserver.json"
#: The worker's progress (`teststand.callbacks.progress.ProgressFile`), read by the clients.
PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class QserverOptions:
    """What `teststand qserver start` starts; paths default to the profile directory's files
    (the profile shipped with teststand unless `profile` or the user's config file names one)."""

    profile: Path | None = None
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
    def profile_dir(self) -> Path:
        return self.profile.expanduser().resolve() if self.profile else find_profile()

    @property
    def stand_file(self) -> Path:
        """`stand`, else as `teststand.app.locate.find_stand` finds it for this profile."""
        return find_stand(self.stand, self.profile_dir)


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


def write_state(state_dir: Path, components: list[Component]) -> None:
    path = state_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"components": [asdict(c) for c in components]}, indent=1))
    temporary.replace(path)


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """One start or stop at a time per state directory."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def refuse_if_running(state_dir: Path) -> list[Component]:
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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port(host: str, port: int, option: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0" if host == "*" else host, port))
        except OSError as exc:
            raise PortInUse(
                f"cannot listen on {host}:{port} ({exc.strerror}): give {option} a free port, or "
                "stop the program that holds it (`teststand qserver status`, `ss -ltnp`)"
            ) from None


def existing(path: Path, what: str, hint: str) -> Path:
    if not path.exists():
        raise QserverConfigError(f"{what} {path} does not exist: {hint}")
    return path.resolve()
