"""The operator page driving the queue server, in a real browser: an IV scan from the form,
a refused bias, pause/resume/abort of a running scan, the E-stop during a ramp and the reset
after it, the queue server down and back. Slow (the RE environment opens, runs go to Tiled).
They run before `test_web.py` (its IOC-down test restarts the IOC, whose watchdog may latch
ERROR)."""

from __future__ import annotations

import pytest
from conftest import Page, Stack
from test_web import HEADERS, post, volts


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


def test_pause_holds_hv_and_says_so_resume_goes_on_and_abort_brings_hv_to_0_v(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    page, _ = pages
    _fill(page, slots="1", stop=60, step=30, settle=3)
    page.click("queue-add")
    page.wait(lambda: "stop=60" in page.text("#queue-items"), what="the item queued")
    page.click("queue-start")
    page.wait(lambda: volts(page.pv("SLOT1:BIAS")) > 20, 60, "the ramp")
    page.click("queue-pause")  # at the plan's next checkpoint
    page.wait(lambda: page.text("#queue-state") == "paused", 30, "the plan paused")
    page.wait(lambda: "holds HV" in page.text("#paused-hv"), 20, "the page says HV is held")
    assert max(stack.vmon()) > 20, "HV is held while paused"
    page.screenshot("paused-hv-held")
    page.click("queue-resume")
    page.wait(lambda: page.text("#queue-state") == "executing_queue", 30, "the plan resumed")
    page.wait(lambda: not page.text("#paused-hv"), 20, "the banner gone")
    page.click("queue-abort")  # pauses the running plan at once, then aborts it
    page.wait(lambda: "[aborted]" in _history_top(page), 60, "the abort")
    page.wait(lambda: max(stack.vmon()) < 2.0, 30, "every channel at 0 V after the abort")
    page.wait(lambda: volts(page.pv("SLOT1:BIAS")) < 2.0, 20, "the page's bias at 0 V")
    page.wait(lambda: not page.text("#queue-items"), 30, "the aborted item not queued again")


def test_the_e_stop_during_a_ramp_puts_hv_at_0_v_and_the_page_shows_safe(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    alice, other = pages
    _fill(alice, slots="1-2", stop=200, step=100, settle=20)
    alice.click("queue-add")  # the page's requests run concurrently: start once it is queued
    alice.wait(lambda: "stop=200" in alice.text("#queue-items"), what="the item queued")
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


def test_a_reset_is_refused_while_a_cause_persists_and_brings_the_stand_back_to_ready(
    stack: Stack, pages: tuple[Page, Page]
) -> None:
    alice, olga = pages  # alice holds control; olga is an observer
    assert alice.pv("STATE") == "SAFE"
    assert not olga.enabled("stand-reset")
    forged = post(stack, olga, "/api/reset", headers=HEADERS)
    assert forged.status_code == 403 and "observer" in forged.json()["error"]
    assert stack.sim("coldbox call open_lid") is not None
    try:
        alice.wait(lambda: alice.pv("COLDBOX:LID_CLOSED") in ("False", "0", "Off"), 20, "lid")
        alice.click("stand-reset")
        alice.wait(lambda: "reset refused" in alice.text("#action-message"), 60, "the refusal")
        assert "lid" in alice.text("#action-message").lower(), alice.text("#action-message")
        assert alice.pv("STATE") == "SAFE"
        alice.screenshot("reset-refused")
    finally:
        stack.sim("coldbox call close_lid")
    alice.wait(lambda: alice.pv("COLDBOX:LID_CLOSED") not in ("False", "0", "Off"), 20, "lid")
    alice.click("stand-reset")
    alice.wait(lambda: alice.pv("STATE") == "READY", 60, "READY after the reset")
    assert "from the web page by alice" in alice.pv("STATE:LOG")  # INIT -> READY
    assert alice.pv("ESTOP") in ("False", "0", "Off"), "the E-stop released by the reset"


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
