"""The stand file's `interlocks:` section: every limit required, inconsistencies refused, each
error naming its key path."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import stand_dict

from teststand.config import DETECTION_TIMEOUT, ConfigError, load_stand


def with_interlocks(**changes: Any) -> dict[str, Any]:
    data = stand_dict()
    interlocks = dict(data["interlocks"])
    for key, value in changes.items():
        if value is None:
            interlocks.pop(key)
        else:
            interlocks[key] = value
    data["interlocks"] = interlocks
    return data


def test_shipped_stand_files_carry_every_limit() -> None:
    limits = load_stand(stand_dict()).require_interlocks()
    assert limits.poll_period <= 0.5
    assert limits.cooling.action == "setpoint"
    assert limits.paused_hv_hold == 600
    # detection times, not limits: documented defaults long enough for a loaded host
    assert limits.link_timeout == limits.heartbeat_timeout == DETECTION_TIMEOUT == 10


def test_a_stand_without_the_section_is_refused_by_the_watchdog_not_by_plans() -> None:
    data = stand_dict()
    del data["interlocks"]
    config = load_stand(data)  # plans and demos need no watchdog
    with pytest.raises(ConfigError, match="`interlocks:` section is missing"):
        config.require_interlocks()


@pytest.mark.parametrize(
    "key",
    [
        "dew_point_margin",
        "lab_dew_point_max",
        "min_dry_air_flow",
        "over_temperature",
        "cold_below",
        "compliance_trip_time",
        "chiller_timeout",
        "hv_safe_voltage",
        "cooling",
    ],
)
def test_no_limit_has_a_default(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"interlocks\.{key}: Field required"):
        load_stand(with_interlocks(**{key: None}))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"dew_point_margin": 0}, "interlocks.dew_point_margin: Input should be greater than 0"),
        ({"dew_point_margin": -2}, "interlocks.dew_point_margin: Input should be greater than 0"),
        ({"poll_period": 0.6}, "interlocks.poll_period"),
        ({"heartbeat_timeout": 0.25}, "interlocks.heartbeat_timeout: 0.25 s is not longer"),
        ({"link_timeout": 0.1}, "interlocks.link_timeout: 0.1 s is not longer"),
        ({"cooling": {"action": "setpoint", "setpoint": 15}}, "interlocks.cooling.setpoint: 15"),
        ({"cooling": {"action": "setpoint"}}, "interlocks.cooling.setpoint: give a set point"),
        ({"cooling": {"action": "stop", "setpoint": 20}}, "interlocks.cooling.setpoint"),
        ({"cooling": {"action": "warm"}}, "interlocks.cooling.action"),
        ({"cold_below": 50}, "interlocks.cold_below: 50"),
        ({"over_temperature": 18}, "not below interlocks.over_temperature"),
        ({"heartbeat": 3}, "interlocks.heartbeat: Extra inputs are not permitted"),
    ],
)
def test_inconsistent_limits_are_refused(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_stand(with_interlocks(**changes))
    assert fragment in str(info.value)


def test_stop_needs_no_setpoint() -> None:
    config = load_stand(with_interlocks(cooling={"action": "stop"}))
    assert config.require_interlocks().cooling.setpoint is None
