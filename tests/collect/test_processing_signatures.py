"""Processing devices refused at start: wrong signature, unbound inputs, missing limits."""

from __future__ import annotations

import math

import pytest

from teststand.collect.errors import ProcessingError
from teststand.collect.processing import Output, ProcessingServer, processing
from teststand.collect.processors import SHIPPED
from teststand.devices.coldbox.client import MAGNUS_B, MAGNUS_C


def test_a_function_with_the_wrong_signature_is_refused_with_the_expected_one() -> None:
    @processing(inputs=("temperature", "humidity"), outputs={"DEW_POINT": Output("degC")})
    def dew(t: float, rh: float) -> float:
        return t - rh

    with pytest.raises(ProcessingError) as error:
        ProcessingServer(dew, "P:", {"temperature": "A", "humidity": "B"})
    message = str(error.value)
    assert "dew(t, rh) has the wrong signature" in message
    assert "expected: def dew(temperature: float, humidity: float) -> float" in message


def test_positional_only_and_missing_kwargs_are_refused() -> None:
    @processing(inputs=("a",), outputs={"X": Output()}, more_inputs=True)
    def total(a: float, /) -> float:
        return a

    with pytest.raises(ProcessingError, match=r"by name.*\*\*kwargs|\*\*kwargs.*by name"):
        ProcessingServer(total, "P:", {"a": "A"})


def test_inputs_and_options_are_checked_before_serving() -> None:
    with pytest.raises(ProcessingError, match="--input temperature=PV --input humidity=PV"):
        ProcessingServer(SHIPPED["dew-point"], "P:", {"temperature": "A"})
    with pytest.raises(ProcessingError, match="has no input rh"):
        ProcessingServer(
            SHIPPED["dew-point"], "P:", {"temperature": "A", "humidity": "B", "rh": "C"}
        )
    with pytest.raises(ProcessingError, match="--option limit=VALUE"):
        ProcessingServer(SHIPPED["plate-margin"], "P:", {"dew_point": "D", "plate1": "T1"})


def test_shipped_functions_use_the_coldbox_constants() -> None:
    t, rh = 21.0, 35.0
    gamma = math.log(rh / 100) + MAGNUS_B * t / (MAGNUS_C + t)
    assert SHIPPED["dew-point"].function(temperature=t, humidity=rh) == pytest.approx(
        MAGNUS_C * gamma / (MAGNUS_B - gamma)
    )
    assert SHIPPED["leakage-20c"].function(current=1e-6, temperature=20.0) == pytest.approx(1e-6)
    assert SHIPPED["leakage-20c"].function(current=1e-6, temperature=30.0) < 1e-6
    margins = SHIPPED["plate-margin"].function(dew_point=-30.0, plate1=-20.0, plate2=-25.0)
    assert margins == {"PLATE1_MARGIN": 10.0, "PLATE2_MARGIN": 5.0, "MIN_MARGIN": 5.0}
