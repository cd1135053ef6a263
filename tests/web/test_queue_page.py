"""The operator page driving the queue server, in a real browser: an IV scan from the form,
a refused bias, the E-stop during a ramp, the queue server down and back. Slow (the RE
environment opens, runs go to Tiled). They run
before `test_web.py` (its IOC-down test restarts the IOC, whose watchdog may latch ERROR)."""

from __future__ import annotations

import pytest
from conftest import Page, Stack
from test_web import volts


def _fill(page: Page, **fields: object) -> None:
    for name, value in fields.items():
        element = page.driver.find_element("id", f"form-{name}")
        element.clear()
        element.send_keys(str(value))


def _history_top(page: Page) -> str:
    return page.text("#queue-history li") if page.text("#queue-history") else ""


@pytest.mark.timeout(400)  # the RE environment opens first, on a loaded machine
def test_an_iv_scan_queued_from_the_form_runs_and_shows_its_verdict(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    page, _ = pages
    stack.environment_open()
    page.login("alice")
    page.wait(lambda: page.text("#queue-env") == "open", what="the environment open")
    page.click("take-control")
    page.wait(lambda: page.enabled("queue-add"), what="control")
    _fill(page, slots="1-2", stage="TEST", stop=20, step=10, settle=0)
    page.click("queue-add")
    page.wait(lambda: "iv_scan" in page.text("#queue-items"), what="the item queued")
    page.click("queue-start")
    page.wait(lambda: "[completed]" in _history_top(page), 90, "the scan's end")
    page.wait(lambda: "pass" in _history_top(page) or "fail" in _history_top(page), 60, "verdict")
    curve = page.driver.execute_script("return window.teststand.values.iv.slots")
    assert len(curve["1"]) > 2 and len(curve["2"]) > 2, curve
    assert max(bias for bias, _ in curve["1"]) > 15
    page.screenshot("queue-and-iv")


def test_a_bias_above_the_slots_limit_shows_the_plans_own_error(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    page, _ = pages
    _fill(page, slots="1", stop=900, step=100)
    page.click("queue-add")
    page.wait(lambda: "stop=900" in page.text("#queue-items"), what="the item queued")
    page.click("queue-start")
    page.wait(lambda: "[failed]" in _history_top(page), 60, "the plan's refusal")
    message = page.text("#queue-history li .item-message")
    assert "900" in message and "250" in message, message  # the plan's message names the limit
    page.screenshot("bias-refused")


def test_the_e_stop_during_a_ramp_puts_hv_at_0_v_and_the_page_shows_safe(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    alice, other = pages
    _fill(alice, slots="1-2", stop=200, step=100, settle=20)
    alice.click("queue-add")
    alice.click("queue-start")
    alice.wait(lambda: volts(alice.pv("SLOT1:BIAS")) > 20, 60, "the ramp")
    other.login("olga")  # the E-stop is for everyone logged in, observers too
    other.wait(lambda: other.enabled("estop"), what="the E-stop")
    other.click("estop")
    alice.wait(lambda: alice.pv("STATE") == "SAFE", 20, "SAFE")
    assert "stop" in alice.pv("STATE:REASON").lower()
    alice.wait(lambda: max(stack.vmon()) < 2.0, 30, "every channel at 0 V")
    alice.wait(lambda: volts(alice.pv("SLOT1:BIAS")) < 2.0, 20, "the page's bias at 0 V")
    alice.screenshot("e-stop-safe")


def test_the_queue_server_down_is_said_and_the_page_recovers(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    page, _ = pages
    stack.environment_open()
    stack.stop_queue()
    page.wait(lambda: "queue server" in page.text("#health-queue"), 20, "the queue's absence")
    stack.start_queue()
    assert stack.queue_started is True, stack.queue_started
    page.wait(lambda: not page.text("#health-queue"), 60, "the queue server back")
