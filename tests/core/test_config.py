"""The stand file: validated, and every error names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from teststand.config import ConfigError, load_stand

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_simulated_stand_loads() -> None:
    config = load_stand(ROOT / "profile_collection" / "stand.yaml")
    assert config.sim
    assert config.instruments["hv"].kind == "caen-dt8033"
    assert len(config.instruments["hv"].simulator.options["breakdown"]) == 8


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
    ],
)
def test_errors_name_the_key_path(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_stand(data)
    assert fragment in str(info.value)


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
