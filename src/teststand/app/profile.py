"""What the startup files of `profile_collection/` share: the stand file to build, whether they
run in the queueserver's worker or in an IPython session, and the session's `catalog`.

The same startup files run in both places. The worker (bluesky-queueserver's RE Worker, where
`bluesky_queueserver.is_re_worker_active()` is true) gets no live table, plots, progress bars or
IPython settings; the IPython session gets them all.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing.util
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from teststand.app.locate import find_stand
from teststand.app.sessionlog import log_commands, log_plans, start_session_log
from teststand.app.shell import install_error_display
from teststand.errors import TeststandError
from teststand.storage.catalog import Catalog
from teststand.storage.client import connect
from teststand.storage.config import StorageConfig
from teststand.storage.embedded import STATE_FILE, EmbeddedServer
from teststand.storage.errors import TiledUnreachable
from teststand.storage.server import stored_api_key

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_FLUSH_TIMEOUT = 0.4  # s
NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "cairo", "pgf", "template"}


def stand_file(profile_dir: Path) -> Path:
    """The stand file the startup files build: `$TESTSTAND_STAND`, else the profile
    directory's `stand.yaml` (the user's config file's `stand:` for the shipped profile)."""
    return find_stand(None, profile_dir)


class ProfileLoadError(TeststandError):
    """The profile stopped loading; an IPython session shows its message, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for custom exception display
        return [f"{type(self).__name__}: {self}"]


def typed_errors(exc: BaseException) -> list[TeststandError]:
    """The stand's own errors in `exc`: itself, or those of the devices of ophyd-async's
    `NotConnectedError` (e.g. an `InstrumentBusy` per instrument that another program holds)."""
    from ophyd_async.core import NotConnectedError

    if isinstance(exc, TeststandError):
        return [exc]
    if isinstance(exc, NotConnectedError):
        return [typed for sub in exc.sub_errors.values() for typed in typed_errors(sub)]
    return []


def loading_failed(exc: Exception) -> Exception:
    """What a startup file raises for `exc`: the stand's first typed error in it (in the worker,
    so that the queue server reports its type and message), or a `ProfileLoadError` with the
    messages (in an IPython session: no traceback). `exc` itself when it holds no typed error."""
    found = typed_errors(exc)
    if not found:
        return exc
    if in_worker():
        return found[0]
    messages = "\n".join(f"{type(error).__name__}: {error}" for error in found)
    return ProfileLoadError(
        f"{messages}\nThe profile stopped loading: fix the cause and restart the session (RE is "
        "defined; the stand, its devices, plans and catalog are not)."
    )


def in_worker() -> bool:
    """True inside bluesky-queueserver's worker (and while it lists plans and devices)."""
    from bluesky_queueserver import is_re_worker_active  # type: ignore[import-untyped]

    return bool(is_re_worker_active())


def report_progress() -> Path | None:
    """In the queue worker: write the plans' progress to the file `teststand qserver start`
    names ($TESTSTAND_PROGRESS_FILE), read by `teststand queue status`/`watch`."""
    from teststand.callbacks.progress import PROGRESS_ENV, ProgressFile, progress

    named = os.environ.get(PROGRESS_ENV)
    if not named:
        return None
    path = Path(named)
    progress.listeners.append(ProgressFile(path))
    return path


def ipython_shell() -> Any | None:
    """The running IPython shell of an interactive session; None in the worker or plain Python."""
    if in_worker():
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def configure_logging(level: int = logging.INFO) -> None:
    """The stand's own messages (`teststand.*`) at `level`; warnings of everything else.

    The worker has its logging set up by the queue server (its console shows it); a session
    without handlers gets one on stderr.
    """
    logging.getLogger("teststand").setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)


def prepare_shell(shell: Any) -> bool:
    """Set up an IPython session for the RunEngine; True when plots can be shown.

    Autoawait is switched off (IPython would otherwise run `await` and asyncio code on its own
    loop at the prompt, beside the RunEngine's), and matplotlib is made interactive when a GUI
    backend is available; without one (a terminal without display) the session has no plots.
    """
    shell.autoawait = False
    install_error_display(shell)
    log_commands(shell)
    try:
        import matplotlib

        if str(matplotlib.get_backend()).lower() in NON_INTERACTIVE:
            return False  # no display: matplotlib chose a file backend
        shell.enable_matplotlib()
    except Exception as exc:  # a GUI toolkit that does not start: tables and progress bars only
        logging.getLogger("teststand.app.profile").warning("no live plots: %s", exc)
        return False
    return True


class Flushable(Protocol):
    def wait(self, timeout: float = ...) -> bool: ...
    def close(self, timeout: float = ...) -> None: ...


def close_at_exit(writer: Flushable) -> None:
    """When the process ends: a session closes the storage writer (flush, then stop its embedded
    Tiled server); the worker only flushes it, since the manager gives it half a second to exit
    when the environment closes (its instruments are free once it has), and the embedded server
    ends with it. Runs not yet verified in Tiled stay in the journal and are replayed."""
    if in_worker():
        callback: Callable[[], object] = partial(writer.wait, WORKER_FLUSH_TIMEOUT)
    else:
        callback = writer.close
    # A finalizer, not atexit: the worker is a multiprocessing child, which skips atexit
    # handlers but runs these (a session runs them from atexit).
    multiprocessing.util.Finalize(None, callback, exitpriority=10)


def storage_connector(
    config: StorageConfig, server: EmbeddedServer | None = None
) -> Callable[[], Any]:
    """A function that connects to the stand's Tiled: its server, or the embedded one that the
    storage writer of this process started (`server`, restarted if it ended; without it, found
    by its state file; never starts another)."""
    if config.tiled is not None:
        uri = config.tiled
        return lambda: connect(uri, config.resolved_api_key())
    if server is not None:
        return server.client
    data = config.data_path

    def embedded() -> Any:
        try:
            url = str(json.loads((data / STATE_FILE).read_text())["url"])
        except (OSError, ValueError, KeyError, TypeError):
            raise TiledUnreachable(
                f"the embedded Tiled server of {data} has not started yet: try again in a "
                f"moment; if it does not start, see {data / 'server.log'}"
            ) from None
        return connect(url, stored_api_key(data))

    return embedded


class SessionCatalog(Catalog):
    """A `Catalog` that connects on first use, and again after a failed attempt or after the
    embedded server was restarted: the server starts in the background while the rest of the
    profile loads. A Tiled server that stops answering is one `TiledUnreachable`, not a
    traceback of the HTTP client."""

    def __init__(self, connector: Callable[[], Any], server: EmbeddedServer | None = None) -> None:
        self._connector = connector
        self._server = server
        self._restarts = -1
        self._client: Any = None

    @property
    def client(self) -> Any:
        server = self._server
        if server is not None:
            server.ensure_running()
            if server.restarts != self._restarts:
                self._client = None
        if self._client is None:
            self._client = self._connector()
            self._restarts = server.restarts if server is not None else -1
        return self._client

    @client.setter
    def client(self, client: Any) -> None:
        self._client = client

    def __repr__(self) -> str:
        state = "connected" if self._client is not None else "not connected yet"
        return f"<SessionCatalog ({state}): catalog.search(module_id=...), catalog.run(uid)>"


def _answering(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method`, with the HTTP client's connection errors as one `TiledUnreachable`."""

    @functools.wraps(method)
    def call(self: SessionCatalog, *args: Any, **kwargs: Any) -> Any:
        import httpx

        try:
            return method(self, *args, **kwargs)
        except httpx.TransportError as exc:
            self._client = None
            raise TiledUnreachable(
                f"the stand's Tiled server stopped answering ({type(exc).__name__}: {exc}); "
                "`catalog` connects again on its next use. Runs are kept in the journal meanwhile"
            ) from None

    return call


for _name in ("search", "newest", "module_ids", "run", "xarray", "pandas", "set_verdict"):
    setattr(SessionCatalog, _name, _answering(getattr(Catalog, _name)))


def session_catalog(config: StorageConfig, writer: Any = None) -> SessionCatalog:
    """The session's `catalog`; with the storage `writer`, over the embedded server it started."""
    server = getattr(writer, "embedded", None)
    return SessionCatalog(storage_connector(config, server), server)


def attach_safety(RE: Any, stand: Any) -> Any:
    """A served stand (`server:` in the stand file): tie `RE` to the IOC's state machine (plans
    move the stand READY → RUN → READY, a heartbeat and the RunEngine's state go to the IOC, a
    SAFE or ERROR stand fails the running plan, so the queue stops). None for a direct stand."""
    from bluesky.run_engine import call_in_bluesky_event_loop

    from teststand.safety.ca_control import CAControl
    from teststand.safety.runengine import attach

    server = stand.config.server
    if server is None:
        return None
    who = f"pid={os.getpid()} {'queue worker' if in_worker() else 'session'}"
    control = call_in_bluesky_event_loop(CAControl.connect(server.prefix, who))
    return attach(RE, control)


def reset_stand(stand: Any, why: str = "reset") -> str:
    """Take a latched (SAFE/ERROR) served stand back to READY once every cause has cleared,
    releasing the IOC's E-stop first; this session must hold the IOC's control (the queue
    worker does; the web page runs it there). Refused with the IOC's reason otherwise."""
    from bluesky.run_engine import call_in_bluesky_event_loop

    from teststand.safety.ca_control import reset_served

    server = stand.config.server
    if server is None:
        raise TeststandError(
            "reset_stand is for a stand served by `teststand ioc` (server: in the stand file); "
            "a one-process stand resets its own watchdog (Watchdog.reset)"
        )
    message: str = call_in_bluesky_event_loop(reset_served(server.prefix, why))
    return message


def session_log(config: StorageConfig, RE: Any) -> Path:
    """The session's rotating log under the data directory (`worker.log` in the queue server's
    worker, `shell.log` in IPython), with every plan the RunEngine runs."""
    path = start_session_log(config.data_path, "worker" if in_worker() else "shell")
    log_plans(RE)
    return path
