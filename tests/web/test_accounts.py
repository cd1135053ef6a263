"""Accounts and the bind check of `teststand web`, without a browser."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml
from helpers import stand_dict

from teststand.app.cli import main
from teststand.app.locate import shipped_profile
from teststand.app.qserver.http import PASSWORD_ENV, stored_passwords
from teststand.app.web import (
    BindRefused,
    LoginRefused,
    Sessions,
    Users,
    UsersFileError,
    WebOptions,
    WebState,
    check_bind,
    create_app,
)
from teststand.app.web.accounts import User
from teststand.app.web.httpaccounts import HttpAccounts
from teststand.config import load_stand

HTTP_CONFIG = shipped_profile() / "httpserver.yml"


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


@pytest.fixture
def http_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A queue server state directory with the HTTP passwords `qserver start --http` keeps."""
    for variable in PASSWORD_ENV.values():
        monkeypatch.delenv(variable, raising=False)
    stored_passwords(tmp_path)
    return tmp_path


def test_the_queue_servers_http_accounts_log_in_with_their_roles(http_state: Path) -> None:
    passwords = stored_passwords(http_state)
    config = yaml.safe_load(HTTP_CONFIG.read_text())
    providers = config["authentication"]["providers"]
    providers[0]["args"]["users_to_passwords"]["guest"] = "guest-pass"
    config["api_access"]["args"]["users"]["guest"] = {"roles": "nobody"}
    (http_state / "http.yml").write_text(yaml.safe_dump(config))
    accounts = HttpAccounts(http_state / "http.yml", http_state)
    for name, role in (("operator", "operator"), ("observer", "observer")):
        assert asyncio.run(accounts.login(name, passwords[name])) == User(name, role)
    with pytest.raises(LoginRefused, match="wrong user name or password"):
        asyncio.run(accounts.login("operator", passwords["observer"]))
    with pytest.raises(LoginRefused, match="guest has no role on the stand"):
        asyncio.run(accounts.login("guest", "guest-pass"))


def test_the_page_logs_in_with_the_http_accounts(http_state: Path) -> None:
    from fastapi.testclient import TestClient

    config = load_stand(stand_dict(server={"prefix": "TSHTTP:"}))
    options = WebOptions(config, "TSHTTP:", http_state, http_accounts=HTTP_CONFIG)
    client = TestClient(create_app(WebState(options)))  # no lifespan: no CA, no queue server
    form = {"username": "observer", "password": stored_passwords(http_state)["observer"]}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    assert "observer (observer)" in client.get("/").text
    refused = client.post("/login", data={"username": "observer", "password": "no"})
    assert refused.status_code == 401 and "wrong user name or password" in refused.text


def test_http_accounts_without_their_passwords_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in PASSWORD_ENV.values():
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(UsersFileError, match="passwords of observer, operator are not set"):
        HttpAccounts(HTTP_CONFIG, tmp_path)  # no `qserver start --http` ran here
    check_bind("0.0.0.0", None, HTTP_CONFIG)  # accounts: it may serve off loopback
