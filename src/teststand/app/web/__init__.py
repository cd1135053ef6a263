"""`teststand web`: the stand's operator page, live over a WebSocket, with exclusive control.

Modules: `accounts` (users file, sessions), `control` (one operator at a time), `layout` (the
PVs the page shows), `live` (CA monitors, E-stop), `queue` (the queue server), `ivtrace` (the
running scan's curve), `hub` (pushes deltas to the pages), `state` (options, the running parts),
`server` (the FastAPI app), `templates/` and `static/` (the page: HTML, CSS and small vanilla
JavaScript, all served locally).
"""

from teststand.app.web.accounts import Sessions, User, Users
from teststand.app.web.errors import (
    ActionRefused,
    BindRefused,
    LoginRefused,
    UsersFileError,
    WebError,
)
from teststand.app.web.server import create_app
from teststand.app.web.state import WebOptions, WebState, check_bind, parse_bind

__all__ = [
    "ActionRefused",
    "BindRefused",
    "LoginRefused",
    "Sessions",
    "User",
    "Users",
    "UsersFileError",
    "WebError",
    "WebOptions",
    "WebState",
    "check_bind",
    "create_app",
    "parse_bind",
]
