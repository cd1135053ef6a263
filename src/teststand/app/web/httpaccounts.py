"""The queue server's HTTP accounts as the page's (`teststand web --http-accounts [FILE]`).

The bluesky-httpserver configuration (the profile's `httpserver.yml` by default) is read with
bluesky-httpserver's own parser: its password providers (dictionary, PAM, LDAP) check the
password, and its `api_access` policy gives the user's scopes, from which the page's role
follows: `operator` with the scopes to edit and run the queue and control plans, `observer`
with `read:status`; anyone else is refused. The shipped file's dictionary passwords are those
`teststand qserver start --http` keeps in the queue server's state directory (or
`TESTSTAND_HTTP_*_PASSWORD`). Providers that log in through a browser redirect (OIDC, SAML)
are not offered: the page's login form sends a name and a password.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from teststand.app.qserver.errors import QserverConfigError
from teststand.app.qserver.http import PASSWORD_ENV, http_password
from teststand.app.web.accounts import Role, User
from teststand.app.web.errors import LoginRefused, UsersFileError

OPERATOR_SCOPES = frozenset({"write:queue:edit", "write:queue:control", "write:plan:control"})
OBSERVER_SCOPE = "read:status"
UNSET = "${"


def _set_passwords(state_dir: Path) -> None:
    """The shipped file's `${TESTSTAND_HTTP_*_PASSWORD}`: from the state dir when unset."""
    for user, variable in PASSWORD_ENV.items():
        if not os.environ.get(variable):
            try:
                os.environ[variable] = http_password(state_dir, user)
            except QserverConfigError:
                continue  # left unset: refused below if the file uses it


def _unset_passwords(config: dict[str, Any], path: Path) -> None:
    for provider in (config.get("authentication") or {}).get("providers") or []:
        passwords = (provider.get("args") or {}).get("users_to_passwords") or {}
        unset = sorted(name for name, value in passwords.items() if UNSET in str(value))
        if unset:
            raise UsersFileError(
                f"{path}: the passwords of {', '.join(unset)} are not set (an environment "
                f"variable the file names): start the queue server with `teststand qserver "
                f"start --http` (it keeps them in its state directory), or set "
                f"{', '.join(PASSWORD_ENV.values())}"
            )


class HttpAccounts:
    """Logs users in with the HTTP server's providers; their role from its scopes."""

    def __init__(self, path: Path, state_dir: Path) -> None:
        from bluesky_httpserver.authentication import Mode  # type: ignore[import-untyped]
        from bluesky_httpserver.config import (  # type: ignore[import-untyped]
            construct_build_app_kwargs,
            parse_configs,
        )

        _set_passwords(state_dir)
        try:
            config = parse_configs(path)
        except Exception as exc:  # its ConfigError, ValueError, OSError, YAML errors
            raise UsersFileError(f"the HTTP server config {path} cannot be read: {exc}") from None
        _unset_passwords(config, path)
        built = construct_build_app_kwargs(config, source_filepath=path)
        providers = built["authentication"].get("providers") or []
        self.providers = [
            p["authenticator"] for p in providers if p["authenticator"].mode == Mode.password
        ]
        if not self.providers:
            raise UsersFileError(
                f"{path} has no password provider (dictionary, PAM, LDAP): the page's login "
                "form needs one; use a users file (--users) instead"
            )
        self.access = built["api_access"]["manager_object"]
        self.path = path

    async def login(self, name: str, password: str) -> User:
        for provider in self.providers:
            found = await provider.authenticate(username=name, password=password)
            if found:
                user = str(getattr(found, "user_name", found))
                return User(user, self._role(user))
        raise LoginRefused("wrong user name or password: check both and log in again")

    def _role(self, user: str) -> Role:
        scopes = set(self.access.get_user_scopes(user))
        if scopes >= OPERATOR_SCOPES:
            return "operator"
        if OBSERVER_SCOPE in scopes:
            return "observer"
        raise LoginRefused(
            f"{user} has no role on the stand in {self.path.name} (api_access): ask for one "
            "with read:status (observer) or the queue's write scopes (operator)"
        )
