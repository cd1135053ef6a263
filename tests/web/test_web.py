"""The operator page in a real browser (headless Chromium) against the whole stand: the IOC
with its watchdog, the queue server over it, `teststand web`. Tests run in this order (they
share one stack, and the E-stop leaves the stand latched in SAFE)."""

from __future__ import annotations

import httpx
from conftest import Page, Stack

HEADERS = {"X-Teststand": "1"}


def volts(text: str) -> float:
    return float(text.split()[0]) if text[:1].isdigit() or text[:1] == "-" else 0.0


def post(stack: Stack, page: Page, path: str, **kwargs: object) -> httpx.Response:
    """A request forged outside the page, with the page's session cookie."""
    return httpx.post(stack.url + path, cookies=page.cookies(), timeout=30, **kwargs)  # type: ignore[arg-type]


def test_a_wrong_password_is_refused_and_the_page_says_so(pages: tuple[Page, Page]) -> None:
    page, _ = pages
    page.login("alice", "not-her-password")
    page.wait(lambda: "wrong user name or password" in page.text("#login-error"), what="refusal")
    page.screenshot("login-refused")


def test_values_update_in_the_page_when_the_simulator_changes(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    page, _ = pages
    page.login("alice")
    page.wait(lambda: page.pv("SLOT1:MODULE_ID") == "20UPGM22110001", what="module ids")
    page.wait(lambda: page.pv("STATE") != "-", what="the state")
    assert page.pv("COLDBOX:DEW_POINT").endswith("°C")
    # The chiller's set point changed at the instrument (its own command, as from its panel).
    assert stack.sim('chiller call respond "OUT_SP_00_18.50"') == "'OK'"
    page.wait(lambda: page.pv("CHILLER:SETPOINT") == "18.5 °C", 20, "the new set point")
    page.screenshot("overview")


def test_an_observer_sees_the_buttons_disabled_and_forged_requests_are_refused(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    _, page = pages
    page.login("olga")
    page.wait(lambda: page.pv("STATE") != "-", what="the page's first values")
    for button in ("take-control", "queue-start", "queue-add", "queue-abort"):
        assert not page.enabled(button), button
    assert page.enabled("estop")
    page.screenshot("observer")
    refused = post(stack, page, "/api/control/take", headers=HEADERS)
    assert refused.status_code == 403 and "observer" in refused.json()["error"]
    form = {"plan": "iv_scan", "slots": "1-2", "stop": 20}
    for path, body in (("/api/queue/add", form), ("/api/queue/start", {})):
        refused = post(stack, page, path, headers=HEADERS, json=body)
        assert refused.status_code == 403, refused.text
    assert post(stack, page, "/api/control/take").status_code == 403  # not from the page
    anonymous = httpx.post(stack.url + "/api/queue/start", headers=HEADERS, timeout=30)
    assert anonymous.status_code == 401


def test_two_operators_the_second_cannot_act_until_control_is_released(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    alice, bob = pages
    bob.logout()
    bob.login("bob")
    alice.click("take-control")
    alice.wait(lambda: alice.text("#control-holder").startswith("alice"), what="alice's control")
    bob.wait(lambda: bob.text("#control-holder").startswith("alice"), what="bob sees alice")
    assert not bob.enabled("take-control") and not bob.enabled("queue-start")
    assert alice.enabled("queue-start") and alice.enabled("release-control")
    bob.screenshot("second-operator-waits")
    for path in ("/api/control/take", "/api/queue/start"):
        refused = post(stack, bob, path, headers=HEADERS)
        assert refused.status_code == 403 and "held by alice" in refused.json()["error"]
    alice.click("release-control")
    bob.wait(lambda: bob.enabled("take-control"), what="control released")
    bob.click("take-control")
    bob.wait(lambda: bob.enabled("queue-start"), what="bob's control")
    assert not alice.enabled("take-control") and not alice.enabled("queue-start")
    bob.click("release-control")
    alice.wait(lambda: alice.enabled("take-control"), what="released again")


def test_the_ioc_down_is_said_and_the_page_recovers(stack: Stack, pages: tuple[Page, Page]) -> None:
    page, _ = pages
    stack.kill_ioc()
    page.wait(lambda: "IOC" in page.text("#health-ioc"), 20, "the IOC's absence")
    page.screenshot("ioc-down")
    stack.start_ioc()
    page.wait(lambda: not page.text("#health-ioc"), 60, "the IOC back")
