"""The ring buffer, a collector's settings and the refusals made before anything is served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from teststand.collect.config import check_array_limit, load_section, make_config
from teststand.collect.errors import CollectorError
from teststand.collect.ring import Ring
from teststand.collect.server import CollectorServer


def test_ring_keeps_the_newest_samples_oldest_first() -> None:
    ring = Ring(4)
    for i in range(3):
        ring.append(float(i), 10.0 * i)
    assert ring.snapshot()[0].tolist() == [0.0, 1.0, 2.0]
    for i in range(3, 7):
        ring.append(float(i), 10.0 * i)
    times, values = ring.snapshot()
    assert times.tolist() == [3.0, 4.0, 5.0, 6.0]
    assert values.tolist() == [30.0, 40.0, 50.0, 60.0]
    assert (len(ring), ring.total, ring.overwritten) == (4, 7, 3)
    ring.clear()
    assert len(ring) == 0 and ring.snapshot()[0].size == 0


def test_ring_matches_a_reference_for_every_fill_level() -> None:
    for count in range(12):
        ring = Ring(5)
        samples = np.arange(count, dtype=float)
        for value in samples:
            ring.append(value, -value)
        assert ring.snapshot()[0].tolist() == samples[-5:].tolist()
        assert ring.snapshot()[1].tolist() == (-samples[-5:]).tolist()


def test_history_too_long_for_channel_access_says_how_to_raise_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EPICS_CA_MAX_ARRAY_BYTES", raising=False)
    config = make_config(name="long", prefix="L:", pvs=["A:B"], length=100_000)
    with pytest.raises(CollectorError, match=r"EPICS_CA_MAX_ARRAY_BYTES=800064 .*--length 2040"):
        CollectorServer(config)
    monkeypatch.setenv("EPICS_CA_MAX_ARRAY_BYTES", "1000000")
    check_array_limit(100_000)


def test_bad_settings_are_refused_with_their_key() -> None:
    with pytest.raises(CollectorError, match=r"period.*mode: period"):
        make_config(name="c", prefix="C:", pvs=["A"], period=1.0)
    with pytest.raises(CollectorError, match="pvs"):
        make_config(name="c", prefix="C:", pvs=[])
    with pytest.raises(CollectorError, match="named twice: A"):
        make_config(name="c", prefix="C:", pvs=["A", "A"])
    with pytest.raises(CollectorError, match="not PV names"):
        make_config(name="c", prefix="C:", pvs=["A B"])


def test_yaml_section_with_command_line_overrides(tmp_path: Path) -> None:
    file = tmp_path / "collectors.yaml"
    file.write_text(
        "collectors:\n  box:\n    prefix: 'BOX:'\n    pvs: [TS1:COLDBOX:TEMPERATURE]\n"
        "    mode: period\n    period: 2\n"
    )
    config = load_section(file, "box", length=500)
    assert (config.prefix, config.mode, config.period, config.length) == ("BOX:", "period", 2, 500)
    with pytest.raises(CollectorError, match=r"no collector 'other'.*box"):
        load_section(file, "other")
