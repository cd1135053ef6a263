"""Accounts and the bind check of `teststand web`, without a browser."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from teststand.app.cli import main
from teststand.app.web import (
    BindRefused,
    LoginRefused,
    Sessions,
    Users,
    UsersFileError,
    check_bind,
)
from teststand.app.web.accounts import User


def test_passwords_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    users = Users({}, tmp_path / "users.yaml")
    users.add("alice", "operator", "correct horse")
    assert "correct horse" not in (tmp_path / "users.yaml").read_text()
    assert (tmp_path / "users.yaml").stat().st_mode & 0o777 == 0o600
    loaded = Users.load(tmp_path / "users.yaml")
    assert loaded.login("alice", "correct horse") == User("alice", "operator")
    with pytest.raises(LoginRefused, match="wrong user name or password"):
        loaded.login("alice", "wrong")
    with pytest.raises(LoginRefused, match="wrong user name or password"):
        loaded.login("mallory", "correct horse")


def test_a_session_expires(tmp_path: Path) -> None:
    sessions = Sessions(lifetime=0.2)
    session = sessions.open(User("bob", "observer"), "127.0.0.1")
    assert sessions.get(session.token) is session
    time.sleep(0.3)
    with pytest.raises(LoginRefused, match="expired"):
        sessions.get(session.token)


def test_bad_users_files_are_refused_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  alice: {role: admin, password: x}\n")
    with pytest.raises(UsersFileError, match=r"users\.alice\.role"):
        Users.load(path)
    path.write_text("users:\n  alice: {role: operator, password: plain}\n")
    with pytest.raises(UsersFileError, match="not a scrypt hash"):
        Users.load(path)
    with pytest.raises(UsersFileError, match="does not exist"):
        Users.load(tmp_path / "missing.yaml")
    with pytest.raises(UsersFileError, match="too short"):
        Users({}, path).add("bob", "operator", "short")


def test_it_refuses_to_bind_off_loopback_without_authentication(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["web", "--bind", "0.0.0.0:8080"]) != 0
    assert "without authentication" in capsys.readouterr().err
    with pytest.raises(BindRefused):
        check_bind("192.168.1.10", None)
