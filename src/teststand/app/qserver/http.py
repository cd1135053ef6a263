"""bluesky-httpserver accounts: their passwords (kept 0600 in the state directory) and API keys."""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from teststand.app.qserver.errors import QserverConfigError, QserverError

PASSWORDS_FILE = "http-passwords.json"
PASSWORD_ENV = {
    "operator": "TESTSTAND_HTTP_OPERATOR_PASSWORD",
    "observer": "TESTSTAND_HTTP_OBSERVER_PASSWORD",
}
#: The authentication provider named in profile_collection/httpserver.yml.
HTTP_PROVIDER = "stand"


def stored_passwords(state_dir: Path) -> dict[str, str]:
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


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/status", timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # 401: up, and it wants credentials
    except (urllib.error.URLError, OSError):
        return False


def http_password(state_dir: Path, user: str) -> str:
    """The password of an HTTP account (`operator`, `observer`) that `start --http` set."""
    if user not in PASSWORD_ENV:
        raise QserverConfigError(f"no HTTP account {user!r}; accounts: {', '.join(PASSWORD_ENV)}")
    if not (state_dir / PASSWORDS_FILE).exists() and not os.environ.get(PASSWORD_ENV[user]):
        raise QserverConfigError(
            f"no passwords in {state_dir}: start the HTTP server with `teststand qserver start "
            f"--http`, or set {PASSWORD_ENV[user]}"
        )
    return stored_passwords(state_dir)[user]


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
