"""The HMP4040's arbitrary-waveform editor: `ARB:DATA` points and `ARB:REP` edited here, copied
to a channel (`ARB:TRAN`), played there (`ARB:STAR`/`ARB:STOP`), kept in three memories
(`ARB:SAVE`/`ARB:REST`). The behaviour is described in `teststand.sim.hmp4040`."""

from __future__ import annotations

from collections.abc import Callable

from teststand.sim.hmp4040_channel import (
    CURRENT,
    DWELL,
    MAX_POINTS,
    REPETITIONS,
    VOLTAGE,
    Channel,
    Waveform,
)
from teststand.sim.scpi import (
    MISSING_PARAMETER,
    SETTINGS_CONFLICT,
    Call,
    Command,
    Limits,
    ScpiError,
    number_setting,
    to_number,
)

MEMORY_SLOTS = Limits(1, 3, 1)


class WaveformEditor:
    """The editor and its memories; `channel_of(call)` is the channel a command's number names."""

    def __init__(self, channel_of: Callable[[Call], Channel], now: Callable[[], float]) -> None:
        self.channel_of = channel_of
        self.now = now
        self.editor: list[tuple[float, float, float]] = []  # the ARB:DATA points
        self.repetitions = 0
        self.memory: dict[int, Waveform] = {}

    def commands(self) -> list[Command]:
        return [
            Command(":ARBitrary:DATA", self._edit),
            number_setting(
                ":ARBitrary:REPetitions",
                lambda: self.repetitions,
                lambda n: setattr(self, "repetitions", round(n)),
                REPETITIONS,
                lambda n: str(round(n)),
            ),
            Command(":ARBitrary:TRANsfer", self._transfer),
            Command(":ARBitrary:STARt", self._start),
            Command(
                ":ARBitrary:STOP",
                lambda call: setattr(self.channel_of(call), "waveform_start", None),
            ),
            Command(":ARBitrary:CLEar", self._clear_waveform),
            Command(":ARBitrary:SAVE", self._save_waveform),
            Command(":ARBitrary:RESTore", self._restore_waveform),
        ]

    def _edit(self, call: Call) -> None:
        args = call.count(3, 3 * MAX_POINTS)
        if len(args) % 3:
            raise ScpiError(MISSING_PARAMETER)
        limits = (VOLTAGE, CURRENT, DWELL)
        values = [to_number(text, limits[k % 3]) for k, text in enumerate(args)]
        self.editor = [(values[k], values[k + 1], values[k + 2]) for k in range(0, len(values), 3)]

    def _transfer(self, call: Call) -> None:
        channel = self.channel_of(call)
        if not self.editor:
            raise ScpiError(SETTINGS_CONFLICT)
        channel.waveform = Waveform(tuple(self.editor), self.repetitions)
        channel.waveform_start = None

    def _start(self, call: Call) -> None:
        channel = self.channel_of(call)
        if channel.waveform is None:
            raise ScpiError(SETTINGS_CONFLICT)
        channel.waveform_start = self.now()

    def _clear_waveform(self, call: Call) -> None:
        channel = self.channel_of(call)
        channel.waveform = channel.waveform_start = None

    def _save_waveform(self, call: Call) -> None:
        slot = round(to_number(call.arg(), MEMORY_SLOTS))
        self.memory[slot] = Waveform(tuple(self.editor), self.repetitions)

    def _restore_waveform(self, call: Call) -> None:
        slot = round(to_number(call.arg(), MEMORY_SLOTS))
        saved = self.memory.get(slot, Waveform(()))
        self.editor, self.repetitions = list(saved.points), saved.repetitions
