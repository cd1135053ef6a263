"""Accounts of the web page: a users file with hashed passwords, and sessions that expire.

The users file (YAML, kept 0600) maps each user to a role and a scrypt hash of the password:

```yaml
users:
  alice: {role: operator, password: "scrypt$16384$8$1$<salt hex>$<hash hex>"}
  bob: {role: observer, password: "scrypt$..."}
```
`teststand web --users FILE --add-user NAME --role operator` writes an entry (the password is
read from the prompt, or from `TESTSTAND_WEB_PASSWORD`). The roles are the queue server's HTTP
accounts' (`operator` acts, `observer` watches; both may press the E-stop).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import yaml

from teststand.app.web.errors import LoginRefused, UsersFileError

Role = Literal["operator", "observer"]
ROLES: tuple[Role, ...] = ("operator", "observer")
PASSWORD_ENV = "TESTSTAND_WEB_PASSWORD"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash` (hex) of `password` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(found.hex(), digest)


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def operator(self) -> bool:
        return self.role == "operator"


class Users:
    """The accounts of a users file (name → role and password hash)."""

    def __init__(self, entries: dict[str, tuple[Role, str]], path: Path | None = None) -> None:
        self.entries = entries
        self.path = path

    @classmethod
    def load(cls, path: Path) -> Users:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise UsersFileError(
                f"users file {path} does not exist: create it with `teststand web --users "
                f"{path} --add-user NAME --role operator`"
            ) from None
        except (OSError, yaml.YAMLError) as exc:
            raise UsersFileError(f"users file {path} cannot be read: {exc}") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict) or not users:
            raise UsersFileError(f"users file {path}: no `users:` mapping (name: role, password)")
        entries: dict[str, tuple[Role, str]] = {}
        for name, entry in users.items():
            if not isinstance(entry, dict) or entry.get("role") not in ROLES:
                raise UsersFileError(
                    f"users file {path}: users.{name}.role must be one of {', '.join(ROLES)}"
                )
            password = entry.get("password")
            if not isinstance(password, str) or not password.startswith("scrypt$"):
                raise UsersFileError(
                    f"users file {path}: users.{name}.password is not a scrypt hash; set it "
                    f"with `teststand web --users {path} --add-user {name} --role ...`"
                )
            entries[str(name)] = (cast(Role, entry["role"]), password)
        return cls(entries, path)

    def add(self, name: str, role: str, password: str) -> None:
        """Add or replace `name` and write the file (0600)."""
        if role not in ROLES:
            raise UsersFileError(f"role {role!r}: give one of {', '.join(ROLES)}")
        if not name.strip() or any(c.isspace() for c in name):
            raise UsersFileError(f"user name {name!r}: give one word without spaces")
        if len(password) < 8:
            raise UsersFileError(f"the password of {name} is too short: give 8 characters or more")
        self.entries[name] = (role, hash_password(password))
        assert self.path is not None
        data = {"users": {n: {"role": r, "password": h} for n, (r, h) in self.entries.items()}}
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(data, out)

    def login(self, name: str, password: str) -> User:
        entry = self.entries.get(name)
        # Hash even for an unknown name, so the answer's timing does not tell names apart.
        stored = entry[1] if entry else hash_password("")
        if not check_password(password, stored) or entry is None:
            raise LoginRefused("wrong user name or password: check both and log in again")
        return User(name, entry[0])


@dataclass
class Session:
    token: str
    user: User
    host: str
    expires: float


class Sessions:
    """Logged-in sessions by their (random) cookie token; each expires `lifetime` s after login."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._sessions: dict[str, Session] = {}

    def open(self, user: User, host: str) -> Session:
        session = Session(secrets.token_urlsafe(32), user, host, time.time() + self.lifetime)
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session:
        """The live session of `token`; `LoginRefused` when there is none or it has expired."""
        session = self._sessions.get(token or "")
        if session is None:
            raise LoginRefused("not logged in: log in first")
        if session.expires < time.time():
            del self._sessions[session.token]
            raise LoginRefused("your session has expired: log in again")
        return session

    def close(self, token: str | None) -> Session | None:
        return self._sessions.pop(token or "", None)

    def users(self) -> set[str]:
        now = time.time()
        return {s.user.name for s in self._sessions.values() if s.expires >= now}
