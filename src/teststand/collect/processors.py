"""The processing devices shipped with teststand (`teststand processing kinds`)."""

from __future__ import annotations

from collections.abc import Sequence

from teststand.callbacks.iv_rules import normalise_to_20c
from teststand.collect.processing import Output, Processing, processing
from teststand.devices.coldbox.client import dew_point as magnus_dew_point


@processing(inputs=("temperature", "humidity"), outputs={"DEW_POINT": Output("degC", 2)})
def dew_point(temperature: float, humidity: float) -> float:
    """Dew point of air at temperature (degC) and relative humidity (%), as the coldbox's."""
    return magnus_dew_point(temperature, humidity)


@processing(
    inputs=("current", "temperature"),
    outputs={"LEAKAGE_20C": Output("A", 9)},
    name="leakage-20c",
)
def leakage_20c(current: float, temperature: float) -> float:
    """A slot's leakage current (A) at its temperature (degC), normalised to 20 degC."""
    return normalise_to_20c(current, temperature)


def _margin_outputs(inputs: Sequence[str]) -> dict[str, Output]:
    plates = [name for name in inputs if name != "dew_point"]
    outputs = {f"{name.upper()}_MARGIN": Output("K", 2, "limit") for name in plates}
    outputs["MIN_MARGIN"] = Output("K", 2, "limit")
    return outputs


@processing(
    inputs=("dew_point",),
    outputs=_margin_outputs,
    more_inputs=True,
    options=("limit",),
    name="plate-margin",
)
def plate_margin(dew_point: float, **plates: float) -> dict[str, float]:
    """Each plate's temperature minus the dew point (K), and the smallest; MAJOR alarm below
    the `limit` option."""
    if not plates:
        raise ValueError("no plate inputs: give --input plate1=PV (one per plate)")
    margins = {f"{name.upper()}_MARGIN": t - dew_point for name, t in plates.items()}
    margins["MIN_MARGIN"] = min(margins.values())
    return margins


SHIPPED: dict[str, Processing] = {p.name: p for p in (dew_point, leakage_20c, plate_margin)}
