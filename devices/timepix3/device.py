"""The Timepix3 as an ophyd-async `StandardDetector`: one frame per collection, hits to HDF5.

Built from ophyd-async 0.21's detector logic classes: the trigger logic sets the shutter time,
the acquire logic opens the shutter and reads the frame from the data stream (decoded in bulk),
the data logic writes `HitFile`s and announces their per-collection datasets with
StreamResource/StreamDatum documents (count map, hit count, mean ToT, rate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import numpy as np
from bluesky.protocols import Movable
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    Device,
    PathProvider,
    StandardDetector,
    StaticPathProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    StrictEnum,
    TriggerInfo,
    UUIDFilenameProvider,
    soft_signal_r_and_setter,
)

from teststand.devices._backend import ClientConnector, client_signal_r, client_signal_rw
from teststand.devices.timepix3.client import Timepix3Client
from teststand.devices.timepix3.hitfile import COLLECTION_DATASETS, HitFile, codec_options
from teststand.devices.timepix3.stream import Frame, HitStream

log = logging.getLogger("teststand.devices")
#: The per-collection datasets announced to the run (the hit table stays in the file).
STREAMED = ("count_map", "hit_count", "mean_tot", "rate", "lost")


class Timepix3Mode(StrictEnum):
    TOATOT = "TOATOT"
    TOA = "TOA"
    COUNT = "COUNT"


class TrimMatrix(Device, Movable[np.ndarray]):
    """The per-pixel 4-bit trims: `bps.mv(det.trims, matrix)` with a 256 x 256 matrix [y, x]."""

    def __init__(self, client: Timepix3Client, name: str = "") -> None:
        self._client = client
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def set(self, value: np.ndarray) -> None:
        await self._client.load_trims(value)

    async def get(self) -> np.ndarray:
        return await self._client.trims()


class Timepix3TriggerLogic(DetectorTriggerLogic):
    def __init__(self, detector: Timepix3) -> None:
        self.detector = detector

    def config_sigs(self) -> set:  # type: ignore[type-arg]
        return {self.detector.shutter_time}

    async def prepare_internal(self, num: int, livetime: float, deadtime: float) -> None:
        if livetime:
            await self.detector.shutter_time.set(livetime)
        self.detector.frames_per_start = num

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo(livetime=await self.detector.shutter_time.get_value())


class Timepix3AcquireLogic(DetectorAcquireLogic):
    def __init__(self, detector: Timepix3) -> None:
        self.detector = detector

    async def ensure_ready(self) -> None:
        await self.ensure_stopped()
        await self.detector.open_stream()

    async def start_acquiring(self) -> None:
        await self.detector.open_stream()  # a detector inside a stand is staged through its root
        self.detector.start_frames()

    async def wait_for_idle(self) -> None:
        await self.detector.wait_frames()

    async def ensure_stopped(self) -> None:
        await self.detector.stop_frames()


class Timepix3DataLogic(DetectorDataLogic):
    def __init__(self, detector: Timepix3) -> None:
        self.detector = detector

    async def prepare_unbounded(self, datakey_name: str) -> StreamResourceDataProvider:
        info = self.detector.path_provider(datakey_name)
        path = Path(info.directory_path) / f"{info.filename}.h5"
        self.detector.open_file(path)
        resources = [
            StreamResourceInfo(
                data_key=f"{datakey_name}-{name}",
                shape=COLLECTION_DATASETS[name][1],
                chunk_shape=(1, *COLLECTION_DATASETS[name][1]),
                dtype_numpy=np.dtype(COLLECTION_DATASETS[name][0]).str,
                parameters={"dataset": f"/{name}"},
            )
            for name in STREAMED
        ]
        return StreamResourceDataProvider(
            uri=f"{info.directory_uri}{info.filename}.h5",
            resources=resources,
            mimetype="application/x-hdf5",
            collections_written_signal=self.detector.collections_written,
        )

    def get_hinted_fields(self, datakey_name: str) -> list[str]:
        return [f"{datakey_name}-hit_count", f"{datakey_name}-mean_tot"]

    async def stop(self) -> None:
        self.detector.close_file()


class Timepix3(StandardDetector):
    """A Timepix3 chip on its readout: `tcp://board:port` (control) or `sim://timepix3`.

    `data_dir` (or a `PathProvider`) says where the HDF5 files go; `stall_timeout` (s) is how
    long a frame may go without data before the run fails with `DataStreamStopped`;
    `compression` is the hit table's codec (`hitfile.CODECS`: blosc-lz4, lzf, gzip or None).
    """

    def __init__(
        self,
        url_or_client: str | Timepix3Client,
        data_dir: str | Path | PathProvider = "/tmp/teststand-detector",
        *,
        name: str = "",
        stall_timeout: float = 5.0,
        compression: str | None = "blosc-lz4",
    ) -> None:
        owns = isinstance(url_or_client, str)
        self.client = (
            Timepix3Client(url_or_client) if isinstance(url_or_client, str) else url_or_client
        )
        self.path_provider = (
            StaticPathProvider(UUIDFilenameProvider(), Path(data_dir).expanduser().resolve())
            if isinstance(data_dir, str | Path)
            else data_dir
        )
        self.stall_timeout = stall_timeout
        codec_options(compression)  # an unknown codec fails here, before the readout is touched
        self.compression = compression
        self.frames_per_start = 1
        c = self.client

        def dac(name: str, units: str = "DAC") -> object:
            return client_signal_rw(int, lambda: c.dac(name), lambda v: c.set_dac(name, v),
                                    source=f"{c.url}#DAC {name}", units=units)  # fmt: skip

        self.threshold = dac("Vthreshold_fine")
        self.test_pulse_charge = dac("VTP_fine")
        self.ikrum = dac("Ibias_Ikrum")
        self.mode = client_signal_rw(
            Timepix3Mode, lambda: _mode(c), lambda m: c.set_mode(m.value), source=f"{c.url}#MODE"
        )
        self.shutter_time = client_signal_rw(
            float, c.shutter, c.set_shutter, source=f"{c.url}#SHUTTER", units="s"
        )
        self.test_pulses = client_signal_rw(
            int, c.test_pulses, c.set_test_pulses, source=f"{c.url}#TPULSES", units="pulses"
        )
        self.test_pulse_region = client_signal_rw(
            str, c.test_pulse_region, c.set_test_pulse_region, source=f"{c.url}#TPMASK"
        )
        self.temperature = client_signal_r(
            float, c.temperature, source=f"{c.url}#TEMP", units="degC"
        )
        self.trims = TrimMatrix(c)
        self.collections_written, self._set_written = soft_signal_r_and_setter(int, 0)
        self.last_count_map, self._set_map = soft_signal_r_and_setter(Array1D[np.uint32])
        self.last_hit_count, self._set_hits = soft_signal_r_and_setter(int, 0)
        self.last_mean_tot, self._set_tot = soft_signal_r_and_setter(float, 0.0, units="25 ns")
        self.last_rate, self._set_rate = soft_signal_r_and_setter(float, 0.0, units="1/s")
        self.unknown_packets, self._set_unknown = soft_signal_r_and_setter(int, 0)
        self.lost_hits, self._set_lost = soft_signal_r_and_setter(int, 0)
        self.lost_datagrams, self._set_lost_datagrams = soft_signal_r_and_setter(int, 0)
        self._stream: HitStream | None = None
        self._file: HitFile | None = None
        self._frames: asyncio.Task[None] | None = None
        self.add_detector_logics(
            Timepix3TriggerLogic(self), Timepix3AcquireLogic(self), Timepix3DataLogic(self)
        )
        self.add_config_signals(self.threshold, self.test_pulse_charge, self.mode)  # type: ignore[arg-type]
        super().__init__(name=name, connector=ClientConnector(self.client, adopt_name=owns))

    # -- the data stream and the file ------------------------------------------------------------
    async def open_stream(self) -> None:
        if self._stream is None:
            address = await self.client.data_address()
            self._stream = HitStream(address, name=self.name, stall_timeout=self.stall_timeout)
            await self._stream.open()

    def open_file(self, path: Path) -> None:
        self.close_file()
        self._file = HitFile(path, self.compression)
        self._set_written(0)

    def close_file(self) -> None:
        hit_file, self._file = self._file, None
        if hit_file is not None:
            hit_file.close()

    def start_frames(self) -> None:
        if self._stream is None or self._file is None:
            raise RuntimeError(f"{self.name}: prepare the detector before acquiring")
        self._frames = asyncio.create_task(
            self._take_frames(self._stream, self._file, self.frames_per_start)
        )

    async def wait_frames(self) -> None:
        if self._frames is not None:
            task, self._frames = self._frames, None
            await task

    async def stop_frames(self) -> None:
        task, self._frames = self._frames, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.client.stop()

    async def _take_frames(self, stream: HitStream, hit_file: HitFile, count: int) -> None:
        """`count` frames; a failed frame still leaves its hits and a row in the file, and
        counts as written, so the detector's wait ends and `wait_for_idle` raises the error."""
        for _ in range(count):
            frame, shutter = Frame(), 0.0
            try:
                shutter = await self.shutter_time.get_value()
                await self.client.start()
                await stream.frame(hit_file.append, frame)
            except BaseException:
                self._close_collection(hit_file, frame, shutter)
                with contextlib.suppress(Exception):
                    await self.client.stop()
                raise
            self._close_collection(hit_file, frame, shutter)

    def _close_collection(self, hit_file: HitFile, frame: Frame, shutter: float) -> None:
        mean_tot = frame.tot_sum / frame.hits if frame.hits else 0.0
        rate = frame.hits / shutter if shutter else 0.0
        offset = hit_file.rows - frame.hits
        hit_file.add_collection({
            "count_map": frame.count_map, "hit_count": frame.hits, "hit_offset": offset,
            "mean_tot": mean_tot, "rate": rate, "unknown": frame.unknown,
            "lost": max(frame.lost, 0), "lost_datagrams": frame.lost_datagrams,
        })  # fmt: skip
        if frame.unknown:
            log.warning("%s: %d packets of unknown type (not decoded)", self.name, frame.unknown)
        if frame.lost > 0 or frame.lost_datagrams:
            log.warning("%s: %d hits lost in a frame (%d datagrams missing)", self.name,
                        frame.lost, frame.lost_datagrams)  # fmt: skip
        self._set_map(frame.count_map.ravel())
        self._set_hits(frame.hits)
        self._set_tot(mean_tot)
        self._set_rate(rate)
        self._set_unknown(frame.unknown)
        self._set_lost(max(frame.lost, 0))
        self._set_lost_datagrams(frame.lost_datagrams)
        self._set_written(hit_file.collections)

    async def close(self) -> None:
        """Release the readout (data stream, file, control link)."""
        await self.stop_frames()
        self.close_file()
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
        await self.client.close()


async def _mode(client: Timepix3Client) -> Timepix3Mode:
    return Timepix3Mode(await client.mode())
