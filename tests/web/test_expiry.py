"""An expired session, in a real browser: a page server whose sessions last 4 s (its own
`teststand web` on the shared stand)."""

from __future__ import annotations

import subprocess

import httpx
from conftest import TESTSTAND, Page, Stack, free_port, wait_http

HEADERS = {"X-Teststand": "1"}


def test_an_expired_session_sends_the_page_back_to_the_login(stack: Stack) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [TESTSTAND, "web", "--stand", str(stack.stand), "--bind", f"127.0.0.1:{port}"]
    command += ["--users", str(stack.root / "users.yaml"), "--session-hours", str(4 / 3600)]
    command += ["--state-dir", str(stack.state_dir)]
    with (stack.root / "web-expiry.log").open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=log, env=stack.env, text=True)
    page = Page(url)
    try:
        wait_http(url, 60)
        page.login("alice")
        page.wait(lambda: page.pv("STATE") != "-", what="the page's first values")
        cookies = page.cookies()
        page.wait(lambda: "/login" in page.driver.current_url, 30, "back to the login page")
        assert "expired" in page.text("#login-error")
        page.screenshot("session-expired")
        refused = httpx.post(url + "/api/control/take", headers=HEADERS, cookies=cookies)
        assert refused.status_code == 401, refused.text
    finally:
        page.quit()
        server.kill()
        server.wait(10)
