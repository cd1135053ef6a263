"""The whole stand behind the web page, in real processes on loopback, for the session:
simulators, `teststand ioc` (with its watchdog) on Channel Access ports of its own, the queue
server (embedded Redis, RE Manager with the shipped profile) over that IOC, `teststand web`
with a users file, and headless Chromium driven by Selenium.

The queue server starts when a test first needs it (`Stack.environment_open`): those tests,
in `test_queue_page.py`, take minutes (the RE environment, Tiled). Channel Access is the
session's loopback set-up (`helpers.CA`): the IOC serves on a port leased from it, and every
process started here searches all of the session's ports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import CA, stand_dict
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from teststand.app.ioc.process import IocProcess, SimulatorProcess
from teststand.app.qserver import free_port
from teststand.app.web import Users

BIN = Path(sys.executable).parent
TESTSTAND = str(BIN / "teststand")
PREFIX = "TSB:"
SPEED = 200.0
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
PASSWORDS = {"alice": "alice-pass-1", "bob": "bob-pass-22", "olga": "olga-pass-333"}
ROLES = {"alice": "operator", "bob": "operator", "olga": "observer"}


@dataclass
class Stack:
    """The running processes and how to reach them."""

    root: Path
    env: dict[str, str]
    stand: Path
    state_dir: Path
    url: str = ""
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    queue_started: bool | str = False
    sims: SimulatorProcess | None = None
    ioc: IocProcess | None = None

    def sim(self, line: str) -> str:
        """A console line to the simulators (`hv status`, `chiller call ...`); their reply."""
        assert self.sims is not None
        return self.sims.ask(line)

    def vmon(self) -> list[float]:
        assert self.sims is not None
        return self.sims.vmon()

    def cli(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TESTSTAND, *argv], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start_ioc(self) -> None:
        """Start the IOC (again, on the same port) and wait until it serves."""
        if self.ioc is None:
            ioc_file = self.root / "ioc.yaml"
            self.ioc = IocProcess(ioc_file, PREFIX, poll=0.1, ca=CA, log=self.root / "ioc.log")
        self.ioc.start()

    def kill_ioc(self) -> None:
        """SIGKILL the IOC (a crash: nothing answers any more; no orderly VSET 0)."""
        assert self.ioc is not None and self.ioc.process is not None
        self.ioc.process.kill()
        self.ioc.process.wait(10)
        self.ioc.process = None

    def stop(self, name: str, *, kill: bool = False) -> None:
        """End a process (SIGTERM, SIGKILL after 10 s; `kill`: SIGKILL at once, a crash)."""
        process = self.processes.pop(name, None)
        if process is not None:
            process.kill() if kill else process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def start_queue(self) -> None:
        where = ["--stand", str(self.stand), "--state-dir", str(self.state_dir)]
        started = self.cli(
            "qserver", "start", *where, "--control-port", str(free_port()), "--info-port",
            str(free_port()), "--redis-name-prefix", "qs_web",
        )  # fmt: skip
        self.queue_started = started.returncode == 0 or started.stdout + started.stderr

    def environment_open(self) -> None:
        """The queue server started and its environment open (the worker builds the stand over
        CA and claims the IOC's control)."""
        if self.queue_started is not True:
            self.start_queue()
            assert self.queue_started is True, self.queue_started
            _open_environment(self)

    def stop_queue(self) -> None:
        self.cli("qserver", "stop", "--force", "--state-dir", str(self.state_dir), timeout=60)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/login", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, ca_repeater: None) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("web")
    env = dict(os.environ)  # the session's CA settings (tests/conftest.py)
    data = stand_dict(SPEED, storage={"data_dir": str(root / "data")})
    # A loaded machine stalls processes for seconds: the watchdog's link and heartbeat timeouts
    # (3 s in the profile) would latch ERROR between the tests' steps; the chiller's own
    # communication watchdog counts simulated time (600 s at SPEED 200: 3 s), so it gets the most.
    data["interlocks"].update(link_timeout=10.0, heartbeat_timeout=10.0, chiller_timeout=3600)
    (root / "sims.yaml").write_text(yaml.safe_dump(data))
    stack = Stack(root, env, root / "stand.yaml", root / "qserver")
    try:
        stack.sims = SimulatorProcess(root / "sims.yaml", env=env)
        data["sim"] = False
        for name, instrument in data["instruments"].items():
            instrument["url"] = stack.sims.urls[name]
        (root / "ioc.yaml").write_text(yaml.safe_dump(data))
        data["server"] = {"prefix": PREFIX, "connect_timeout": 30.0}
        stack.stand.write_text(yaml.safe_dump(data))
        users = Users({}, root / "users.yaml")
        for name, password in PASSWORDS.items():
            users.add(name, ROLES[name], password)
        port = free_port()
        stack.url = f"http://127.0.0.1:{port}"
        web = [TESTSTAND, "web", "--stand", str(stack.stand), "--state-dir", str(stack.state_dir)]
        web += ["--bind", f"127.0.0.1:{port}", "--users", str(root / "users.yaml")]
        log = (root / "web.log").open("w")
        stack.processes["web"] = subprocess.Popen(web, stdout=log, stderr=log, env=env, text=True)
        stack.start_ioc()  # while the page starts
        wait_http(stack.url, 60)
        yield stack
    finally:
        stack.stop("web", kill=True)  # nothing to put in order (uvicorn waits for its sockets)
        if stack.queue_started:
            stack.stop_queue()
        # The IOC's orderly exit (VSET 0 everywhere) sometimes takes over 10 s on a loaded
        # machine; the simulators end right after it, so it is killed.
        if stack.ioc is not None:
            if stack.ioc.process is not None:
                stack.kill_ioc()
            stack.ioc.close()  # its port back to the session
        if stack.sims is not None:
            stack.sims.stop(10)


def _open_environment(stack: Stack) -> None:
    where = ["--stand", str(stack.stand), "--state-dir", str(stack.state_dir)]
    opened = stack.cli("queue", "open", *where, timeout=180)
    assert opened.returncode == 0, opened.stdout + opened.stderr


class Page:
    """One headless Chromium on the page; `login(name)` logs in as a test user."""

    def __init__(self, url: str) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1400,1800", "--disable-gpu"):  # fmt: skip
            options.add_argument(argument)
        self.driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        self.url = url

    def login(self, name: str, password: str | None = None) -> None:
        self.driver.get(self.url + "/login")
        self.driver.find_element(By.ID, "username").send_keys(name)
        self.driver.find_element(By.ID, "password").send_keys(password or PASSWORDS[name])
        self.driver.find_element(By.ID, "login").click()

    def logout(self) -> None:
        self.driver.find_element(By.ID, "logout").click()

    def text(self, css: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def pv(self, suffix: str) -> str:
        return self.text(f'[data-pv="{suffix}"]')

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def enabled(self, element_id: str) -> bool:
        return bool(self.driver.find_element(By.ID, element_id).is_enabled())

    def wait(self, condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
        # The page replaces lists as values arrive: an element read meanwhile may be stale.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(
            self.driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored
        ).until(lambda _: condition(), message=what)

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.driver.get_cookies()}

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="session")
def pages(stack: Stack) -> Iterator[tuple[Page, Page]]:
    """Two browsers (two people at two screens)."""
    first = Page(stack.url)
    try:
        second = Page(stack.url)
        try:
            yield first, second
        finally:
            second.quit()
    finally:
        first.quit()
