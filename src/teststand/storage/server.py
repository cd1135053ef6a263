"""`teststand tiled serve`: a Tiled server from the shipped config (SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import os
import secrets
import socket
import sqlite3
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from teststand.storage.errors import InsecureBind, ServerConfigError
from teststand.storage.indexes import (
    CatalogIndexError,
    ensure_indexes,
    install_query_translations,
)

API_KEY_FILE = "api_key"


def shipped_config() -> Path:
    """The Tiled config file shipped with teststand."""
    return Path(str(resources.files("teststand.storage").joinpath("tiled.yml")))


@dataclass
class ServerSettings:
    """What `teststand tiled serve` serves, and where."""

    data_dir: Path
    catalog: str | None = None  # None: SQLite under data_dir; or postgresql://user@host/db
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    readable: list[Path] = field(default_factory=list)
    config: Path | None = None  # None: the shipped config
    log_file: Path | None = None  # None: log to stderr
    any_port_if_busy: bool = False  # embedded: keep the last port when free, else any


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stored_api_key(data_dir: Path) -> str:
    """The API key kept in the data directory (made on first use, readable by the owner only)."""
    path = data_dir / API_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def _storage_uris(settings: ServerSettings) -> tuple[str, str]:
    """(catalog URI, tabular storage URI) for SQLite under data_dir or a PostgreSQL URI."""
    if settings.catalog is None:
        data = settings.data_dir.resolve()
        return f"sqlite+aiosqlite:///{data}/catalog.db", f"sqlite:///{data}/tabular.db"
    scheme = urlsplit(settings.catalog).scheme
    if scheme in {"postgresql", "postgres"}:
        uri = "postgresql" + settings.catalog[len(scheme) :]
        return uri, uri
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        path = settings.catalog.split(":///", 1)[-1]
        return f"sqlite+aiosqlite:///{path}", f"sqlite:///{Path(path).with_suffix('.tabular.db')}"
    raise ServerConfigError(
        f"catalog {settings.catalog!r} is neither postgresql://… nor sqlite:///…; "
        "give a PostgreSQL URI, or leave --catalog out for SQLite under the data directory"
    )


def catalog_initialized(path: Path) -> bool:
    """The SQLite catalog carries Tiled's revision stamp. A first start killed while it was
    creating the file leaves one without it: that catalog must be initialized again (skipping
    the initialization for an existing file made every later start fail)."""
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("SELECT version_num FROM alembic_version").fetchone() is not None
    except sqlite3.Error:  # no such table, not a database
        return False


def resolve_config(settings: ServerSettings) -> dict[str, Any]:
    """Read the config file with its variables filled in from `settings`, and check it."""
    from tiled.utils import parse  # type: ignore[import-untyped]

    catalog, tabular = _storage_uris(settings)
    data = settings.data_dir.resolve()
    readable = [p.resolve() for p in settings.readable] or [data / "detector"]
    for path in [data / "files", *readable]:
        path.mkdir(parents=True, exist_ok=True)
    key = settings.api_key or os.environ.get("TILED_SINGLE_USER_API_KEY")
    env = {
        "TESTSTAND_TILED_CATALOG": catalog,
        "TESTSTAND_TILED_TABULAR": tabular,
        "TESTSTAND_TILED_DATA": str(data / "files"),
        "TESTSTAND_TILED_READABLE": str(readable[0]),
        "TILED_SINGLE_USER_API_KEY": key or "",
    }
    path = settings.config or shipped_config()
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # only while the file's ${VARIABLES} are filled in
    try:
        config: dict[str, Any] = parse(path)
    except OSError as exc:
        raise ServerConfigError(f"cannot read Tiled config {path}: {exc.strerror}") from None
    except Exception as exc:
        raise ServerConfigError(f"Tiled config {path} is not valid YAML: {exc}") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    auth = config.setdefault("authentication", {}) or {}
    config["authentication"] = auth
    if not auth.get("single_user_api_key"):
        auth.pop("single_user_api_key", None)
    if settings.config is None:
        args = config["trees"][0]["args"]
        if settings.readable:
            args["readable_storage"] = [str(p) for p in readable]
        if settings.catalog is None and catalog_initialized(data / "catalog.db"):
            args["init_if_not_exists"] = False  # saves a subprocess (~2 s) on each restart
    secured = bool(auth.get("single_user_api_key") or auth.get("providers"))
    if not is_loopback(settings.host) and not secured:
        raise InsecureBind(
            f"refusing to serve on {settings.host}, a non-loopback address, without an API key "
            "or authentication: pass --api-key KEY (or set TILED_SINGLE_USER_API_KEY), configure "
            "authentication providers in the config file, or bind to 127.0.0.1"
        )
    if not secured:
        auth["single_user_api_key"] = stored_api_key(data)
    return config


def bind(host: str, port: int, *, any_port_if_busy: bool = False) -> socket.socket:
    """A listening socket (port 0 picks a free one); typed error if the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so; without it
    # a response's body waited for the client's delayed ACK of its headers (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if any_port_if_busy and port:
            return bind(host, 0)
        raise ServerConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port (0 for any free "
            "one) or stop the program that uses it"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def catalog_uris(config: dict[str, Any]) -> list[str]:
    """The SQL catalogs that a Tiled config serves (trees of type `catalog`)."""
    trees = config.get("trees") or []
    return [t["args"]["uri"] for t in trees if t.get("tree") == "catalog" and "uri" in t["args"]]


def _log_config(log_file: Path | None) -> dict[str, Any]:
    from tiled.server.logging_config import LOGGING_CONFIG  # type: ignore[import-untyped]

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    if log_file is not None:
        for handler in ("access", "default"):
            config["handlers"][handler]["class"] = "logging.FileHandler"
            del config["handlers"][handler]["stream"]
            config["handlers"][handler]["filename"] = str(log_file)
    return config


def serve(settings: ServerSettings, *, exit_on_stdin_eof: bool = False) -> None:
    """Serve until SIGINT/SIGTERM (or stdin's end); the first stdout line is the base URL."""
    import uvicorn
    from tiled.config import Config  # type: ignore[import-untyped]
    from tiled.server.app import build_app_from_config  # type: ignore[import-untyped]

    config = resolve_config(settings)
    try:
        parsed = Config.model_validate(config)
    except Exception as exc:
        raise ServerConfigError(f"Tiled config is invalid: {exc}") from None
    install_query_translations()
    app = build_app_from_config(parsed)  # creates a new catalog's tables
    for uri in catalog_uris(config):
        try:
            ensure_indexes(uri)
        except CatalogIndexError as exc:  # e.g. a database user without CREATE INDEX
            print(f"warning: run searches stay unindexed: {exc}", file=sys.stderr, flush=True)
    sock = bind(settings.host, settings.port, any_port_if_busy=settings.any_port_if_busy)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"http://{shown}:{port}", flush=True)
    key = config["authentication"].get("single_user_api_key")
    if key:
        print(f"api_key {key}" if is_loopback(settings.host) else "api_key (as configured)")
    sys.stdout.flush()
    server = uvicorn.Server(
        uvicorn.Config(app, loop="asyncio", log_config=_log_config(settings.log_file))
    )
    if exit_on_stdin_eof:
        threading.Thread(target=_exit_on_eof, args=(server,), daemon=True).start()
    server.run(sockets=[sock])


def _exit_on_eof(server: Any) -> None:
    """Stop the server when the parent (which holds our stdin) goes away."""
    sys.stdin.read()
    server.should_exit = True
