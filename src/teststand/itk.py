"""The ITk module-QC vocabulary the stand file uses: serial numbers, layers, stages, analysis rules.

Serial numbers are parsed with `itksn` (the ITk serial-number library): a module slot must hold a
pixel module with a sensor, and its layer follows from its component code. The analysis rules
(`ITkConfig`, the stand file's `itk:` section) say where the stored verdict follows the official
module-qc-analysis-tools IV_MEASURE analysis (the default) and where it takes QUALIFICATION.md's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal, get_args

import itksn
from pydantic import BaseModel, ConfigDict, Field

Layer = Literal["L0", "L1", "L2"]
#: Component codes of the pixel modules that carry a sensor, and their layer for the analysis
#: (as module-qc-data-tools' get_layer_from_sn): 3D triplets are L0, quads L1 or outer (L2).
MODULE_LAYERS: dict[bytes, Layer] = {
    b"MS": "L0",  # Triplet_L0_stave_module
    b"M0": "L0",  # Triplet_L0_Ring0_module
    b"M5": "L0",  # Triplet_L0_Ring0p5_module
    b"M1": "L1",  # L1_quad_module
    b"M2": "L2",  # Outer_system_quad_module
    b"XM": "L2",  # Dummy_tutorial_module (tutorials, test stands)
}
#: Sensor area of a module per layer (cm²), as module-qc-analysis-tools counts it.
LAYER_AREA_CM2: dict[Layer, float] = {"L0": 3 * 4.25, "L1": 15.76, "L2": 15.92}
#: The ITk module flow's stages (QUALIFICATION.md), and TEST for anything outside the flow; in
#: the production database a module's stage is MODULE/<stage>.
Stage = Literal[
    "ASSEMBLY",
    "WIREBONDING",
    "INITIAL_WARM",
    "INITIAL_COLD",
    "PARYLENE",
    "POST_PARYLENE_WARM",
    "POST_PARYLENE_COLD",
    "WIREBOND_PROTECTION",
    "THERMAL_CYCLES",
    "LONG_TERM_STABILITY_TEST",
    "FINAL_WARM",
    "FINAL_COLD",
    "COMPLETE",
    "TEST",
]
ITK_STAGES: tuple[str, ...] = tuple(s for s in get_args(Stage) if s != "TEST")


@contextlib.contextmanager
def keep_logging() -> Iterator[None]:
    """Import the ITk module-QC packages inside this: their import calls `logging.config.dictConfig`
    with `disable_existing_loggers`, which would silence every logger of the stand and replace the
    root handlers. The root logger and every logger's `disabled` flag are put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = logging.Logger.manager.loggerDict
    disabled = {n: lg.disabled for n, lg in loggers.items() if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, logger in loggers.items():
            if isinstance(logger, logging.Logger) and name in disabled:
                logger.disabled = disabled[name]


def module_layer(serial_number: str) -> Layer:
    """The layer of the module `serial_number`; ValueError saying what is wrong with it."""
    try:
        parsed = itksn.parse(serial_number.encode("utf-8"))
    except Exception as exc:  # construct's errors: the message says which field failed
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{serial_number!r} is not an ITk serial number ({detail}): give the module's "
            "14-character serial number from the production database, e.g. 20UPGM22110001"
        ) from None
    code = parsed.component_code
    layer = (
        MODULE_LAYERS.get(getattr(code, "bytevalue", b""))
        if parsed.project_code == "pixel"
        else None
    )
    if layer is None:
        raise ValueError(
            f"{serial_number} is a {code} ({parsed.project_code}), not a pixel module with a "
            "sensor: a slot holds a triplet (20UPIMS…, 20UPIM0…, 20UPIM5…), an L1 quad "
            "(20UPIM1…) or an outer quad module (20UPGM2…)"
        )
    return layer


Verdict = Literal["official", "live"]
Breakdown = Literal["official", "ratio", "robust"]
Cuts = Literal["official", "qualification"]


class ITkConfig(BaseModel):
    """The stand file's `itk:` section: the site, and which rules the stored IV verdict follows.

    Each option is one place where QUALIFICATION.md's rules differ from the official analysis;
    the default follows module-qc-analysis-tools.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The production database's code of the institution that runs the stand (exports, uploads).
    institution: str | None = Field(default=None, min_length=1)
    #: The verdict a run stores: the official analysis's, or the live analysis's.
    verdict: Verdict = "official"
    #: official: a cold IV (mean below 0 °C) is judged on its measured currents; true: normalised
    #: to 20 °C like a warm one (QUALIFICATION.md).
    normalise_cold: bool = False
    #: official: planar breakdown where the current reaches the leakage limit (below V_op) or the
    #: 40 µA compliance (above), 3D the d²I/dV² knee; ratio: I(V) > 1.2 (2 for 3D) × I(V − 5 V);
    #: robust: the two-ratio rule of QUALIFICATION.md.
    breakdown: Breakdown = "official"
    #: official: the tool's analysis_cuts.json per layer; qualification: QUALIFICATION.md's
    #: (3D leakage at most 5 µA/cm² instead of 10).
    cuts: Cuts = "official"

    @property
    def official(self) -> bool:
        """True when every rule is the official tool's (the CLI then reproduces the verdict)."""
        return (self.normalise_cold, self.breakdown, self.cuts) == (False, "official", "official")
