"""The stand file: validated, and every error names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from teststand.config import ConfigError, SensorType, load_stand

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_simulated_stand_loads() -> None:
    config = load_stand(ROOT / "profile_collection" / "stand.yaml")
    assert config.sim
    assert config.instruments["hv"].kind == "caen-dt8033"
    assert len(config.instruments["hv"].simulator.options["breakdown"]) == 8
    assert len(config.slots) == 8
    module = config.slots[4].module
    assert module is not None
    assert module.sensor == "3d"
    assert module.area == 12.75
    assert config.limits.max_bias.for_sensor(module.sensor) == 120


def test_hardware_example_validates() -> None:
    config = load_stand(ROOT / "profile_collection" / "stand.hardware-example.yaml")
    assert not config.sim
    assert config.instruments["hv_board"].settings == {"board": 3}
    assert config.slots[4].module is None
    assert config.storage.tiled == "http://tiled.lab.example:8000"
    assert config.storage.api_key_env == "TILED_API_KEY"


def stand(**instrument: Any) -> dict[str, Any]:
    return {"name": "s", "instruments": {"hv": {"kind": "caen-dt8033", **instrument}}}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (stand(url="serial:///dev/ttyUSB0", kind="caen-dt9999"), "instruments.hv.kind"),
        (stand(), "instruments.hv.url is missing"),
        (stand(url="serial:///dev/ttyUSB0?baudrate=1234"), "bad baud rate 1234"),
        (stand(url="tcp://h:1", colour="red"), "instruments.hv.colour"),
        (stand(url="tcp://h:1", options={"timeout": "soon"}), "timeout='soon'"),
        ({"name": "s", "speed": -1, "sim": True, "instruments": {"x": {"kind": "lauda"}}}, "speed"),
        ({"name": "s", "instruments": {}}, "instruments"),
        ({"name": "s", "sim": True, "instruments": {"slots": {"kind": "lauda"}}}, "not one of"),
        ({"name": "s", "sim": True, "instruments": {"H V": {"kind": "lauda"}}}, "identifier"),
    ],
)
def test_errors_name_the_key_path(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_stand(data)
    assert fragment in str(info.value)


def slotted(**changes: Any) -> dict[str, Any]:
    data = load_stand(ROOT / "profile_collection" / "stand.yaml").model_dump(by_alias=True)
    data = {**data, **changes}
    return data


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"slots": {1: {"hv": "hv:8"}}}, "slots.1.hv: caen-dt8033 'hv' has no channel 8"),
        ({"slots": {1: {"hv": "hv:2"}, 2: {"hv": "hv:2"}}}, "channel hv:2 is already used"),
        ({"slots": {1: {"hv": "lv1:1"}}}, "slots.1.hv: lv1 is a hmp4040"),
        ({"slots": {1: {"hv": "nope:1"}}}, "no instrument named 'nope'"),
        ({"slots": {1: {"hv": "hv"}}}, "expected INSTRUMENT:CHANNEL"),
        ({"slots": {1: {"hv": "hv:0", "module": {"sensor": "planar"}}}}, "slots.1.module.id"),
        (
            {"slots": {1: {"hv": "hv:0", "module": {"id": "20UPGM22110001", "sensor": "4d"}}}},
            "sensor",
        ),
        # serial numbers are checked with itksn; the error names the slot
        (
            {"slots": {2: {"hv": "hv:0", "module": {"id": "M-0042"}}}},
            "slots.2.module: Value error, 'M-0042' is not an ITk serial number",
        ),
        (
            {"slots": {3: {"hv": "hv:0", "module": {"id": "20UPGR92101041"}}}},
            "slots.3.module: Value error, 20UPGR92101041 is a Digital_quad_module",
        ),
        (
            {"slots": {1: {"hv": "hv:0", "module": {"id": "20UPGM22110001", "sensor": "3d"}}}},
            "slots.1.module: Value error, sensor 3d: serial number 20UPGM22110001 is an L2 module",
        ),
        (
            {"slots": {1: {"hv": "hv:0", "module": {"id": "20UPIM12110001", "layer": "L2"}}}},
            "layer L2: serial number 20UPIM12110001 is an L1 module",
        ),
        ({"itk": {"breakdown": "steep"}}, "itk.breakdown"),
        ({"limits": {"max_bias": {"planar": 5000}}}, "5000.0 V is above the 4000 V range"),
        ({"limits": {"compliance": 0.01}}, "above the 0.003 A range"),
        ({"limits": {"temperature": {"min": 10, "max": 0}}}, "min 10.0 must be below max 0.0"),
        ({"storage": {"tiled": "ftp://x"}}, "storage.tiled"),
        (
            {"limits": {"max_bias": {"planar": 250}}},
            "limits.max_bias.3d is missing, and slot 4 holds a 3d module (",
        ),
        ({"storage": {"api_key": "a", "api_key_env": "B"}}, "either api_key or api_key_env"),
    ],
)
def test_slot_and_limit_errors(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_stand(slotted(**changes))
    assert fragment in str(info.value)


def test_module_layers_and_areas_follow_the_serial_numbers() -> None:
    config = load_stand(ROOT / "profile_collection" / "stand.yaml")
    layers = {n: (s.module.qc_layer, s.module.area) for n, s in config.slots.items() if s.module}
    assert layers[4] == ("L0", 12.75) and layers[1] == ("L2", 15.92)
    assert config.itk.official and config.itk.verdict == "official"
    quad = slotted(slots={1: {"hv": "hv:0", "module": {"id": "20UPIM12110001"}}})
    assert load_stand(quad).slots[1].module.area == 15.76  # type: ignore[union-attr]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read stand file"):
        load_stand(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_stand(broken)
    broken.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_stand(broken)


def test_no_bias_limit_is_needed_for_a_sensor_type_no_slot_holds() -> None:
    data = slotted(limits={"max_bias": {"planar": 250}})
    data["slots"] = {n: slot for n, slot in data["slots"].items() if n != 4}
    config = load_stand(data)
    assert config.limits.max_bias.for_sensor(SensorType.PLANAR) == 250
    with pytest.raises(ConfigError, match=r"limits.max_bias.3d is missing"):
        config.limits.max_bias.for_sensor(SensorType.THREE_D)
