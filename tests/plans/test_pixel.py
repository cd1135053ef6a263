"""Pixel-detector plans on the simulated stand with a simulated Timepix3 biased by slot 1's HV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bluesky import RunEngine
from helpers import run, stand_dict

from teststand.plans.common import PlanArgumentError
from teststand.plans.pixel import (
    bias_scan_with_detector,
    source_scan,
    threshold_scan,
    trim_equalisation,
)
from teststand.stand import TestStand

MODULE = "20UPGM22110001"  # slot 1's module in profile_collection/stand.yaml


@pytest.fixture
def pixel_stand(make_stand: Callable[..., TestStand], tmp_path: Path) -> TestStand:
    instruments = stand_dict()["instruments"]
    instruments["tpx"] = {
        "kind": "timepix3",
        "settings": {"stall_timeout": 3.0},  # its files go to storage.detector_dir
        "simulator": {"options": {"bias_from": "hv:0", "noisy": 2, "source": "flat", "rate": 2e5}},
    }
    storage = {"data_dir": str(tmp_path), "detector_dir": str(tmp_path / "detector")}
    return make_stand(speed=50.0, instruments=instruments, storage=storage)


def collect(RE: RunEngine) -> dict[str, list[dict[str, Any]]]:
    docs: dict[str, list[dict[str, Any]]] = {}
    RE.subscribe(lambda name, doc: docs.setdefault(name, []).append(doc))
    return docs


def maps_of(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    descriptor = [d for d in docs["descriptor"] if d["name"] == "maps"][-1]  # the last run's
    (event,) = [e for e in docs["event"] if e["descriptor"] == descriptor["uid"]]
    return {key.split("-", 1)[1]: value for key, value in event["data"].items()}


def test_trim_equalisation_flattens_the_threshold_map(
    RE: RunEngine, pixel_stand: TestStand
) -> None:
    docs = collect(RE)
    region = "100 100 116 116"  # 256 pixels, 1500 e- pulses; offsets of 80 e- = 8 DAC
    RE(trim_equalisation(pixel_stand, 1, range(100, 200, 8), pulses=10, region=region))
    assert docs["start"][0]["module_id"] == MODULE
    assert docs["start"][0]["test"] == "trim_equalisation"
    maps = maps_of(docs)
    threshold = np.asarray(maps["threshold"])[100:116, 100:116]
    assert np.isfinite(threshold).mean() > 0.9
    assert np.isnan(np.asarray(maps["threshold"])[0:100, 0:100]).all()  # never pulsed
    assert 140 < np.nanmean(threshold) < 160
    assert 4 < np.nanmean(np.asarray(maps["noise"])[100:116, 100:116]) < 14  # 80 e- noise
    assert maps["spread"] < 0.6 * maps["spread_untrimmed"]
    trims = np.asarray(maps["trims"])
    assert trims.min() >= 0 and trims.max() <= 15 and trims[100:116, 100:116].std() > 1


def test_source_and_bias_scans_and_their_checks(RE: RunEngine, pixel_stand: TestStand) -> None:
    docs = collect(RE)
    for bad in (
        lambda: threshold_scan(pixel_stand, 1, [120, 110, 130]),
        lambda: threshold_scan(pixel_stand, 1, region="0 0 300 16"),
        lambda: source_scan(pixel_stand, 1, frames=0),
        lambda: bias_scan_with_detector(pixel_stand, 1, [50, 900]),  # above the 250 V limit
    ):
        with pytest.raises(PlanArgumentError):
            RE(bad())
    assert "start" not in docs  # refused before any run started

    RE(bias_scan_with_detector(pixel_stand, 1, [10, 200], frame_time=0.05, settle=0.0))
    tots = maps_of(docs)["mean_tot"]
    assert tots[0] < 0.6 * tots[1]  # 10 V of a 60 V depletion collects sqrt(1/6) of the charge
    assert abs(run(RE, pixel_stand.slots[1].hv_channel.voltage.get_value)) < 2  # back at 0 V

    sim = pixel_stand.simulators["tpx"].instrument  # type: ignore[union-attr]
    sim.bias_source = None  # a fully depleted sensor (150 V) for the source scan: the HV is off
    RE(source_scan(pixel_stand, 1, frames=3, frame_time=0.05))
    maps = maps_of(docs)
    assert np.asarray(maps["noisy"]).sum() == 2  # the simulator's two noisy pixels, masked
    assert 1e5 < maps["rate"] < 3e5
    written = list((pixel_stand.config.storage.detector_path).glob("*.h5"))
    assert len(written) == 2  # the bias scan's and the source scan's, where Tiled reads them
