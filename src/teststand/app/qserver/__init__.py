"""The queue server of a stand: Redis, bluesky-queueserver's RE Manager and, on request,
bluesky-httpserver, run as background processes.

Their pids, addresses and logs are kept in a state directory (`qserver.json`), so `start`,
`status` and `stop` work from any shell. `start` checks everything it can before it starts
anything, and stops what it started when a later step fails.

Modules: `errors`, `redis_db` (address, PING, SHUTDOWN), `processes` (psutil supervision),
`state` (state directory, options, port checks), `http` (accounts, API keys), `start`,
`control` (stop, status).
"""

from teststand.app.locate import STAND_ENV
from teststand.app.qserver.control import ComponentStatus, status, stop
from teststand.app.qserver.errors import (
    AlreadyRunning,
    ManagerBusy,
    PortInUse,
    QserverConfigError,
    QserverError,
    RedisUnreachable,
    StartFailed,
)
from teststand.app.qserver.http import (
    HTTP_PROVIDER,
    PASSWORD_ENV,
    PASSWORDS_FILE,
    http_api_key,
    http_password,
)
from teststand.app.qserver.processes import Component, stop_component
from teststand.app.qserver.redis_db import RedisAddress, ping_redis
from teststand.app.qserver.start import (
    LOOPBACK,
    OPERATOR_GROUP,
    manager_client,
    start,
    start_redis,
)
from teststand.app.qserver.state import (
    PROGRESS_FILE,
    STATE_FILE,
    QserverOptions,
    default_state_dir,
    free_port,
    read_state,
)

__all__ = [
    "HTTP_PROVIDER",
    "LOOPBACK",
    "OPERATOR_GROUP",
    "PASSWORDS_FILE",
    "PASSWORD_ENV",
    "PROGRESS_FILE",
    "STAND_ENV",
    "STATE_FILE",
    "AlreadyRunning",
    "Component",
    "ComponentStatus",
    "ManagerBusy",
    "PortInUse",
    "QserverConfigError",
    "QserverError",
    "QserverOptions",
    "RedisAddress",
    "RedisUnreachable",
    "StartFailed",
    "default_state_dir",
    "free_port",
    "http_api_key",
    "http_password",
    "manager_client",
    "ping_redis",
    "read_state",
    "start",
    "start_redis",
    "status",
    "stop",
    "stop_component",
]
