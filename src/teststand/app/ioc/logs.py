"""The IOC's log in the operator's terms: caproto's server logs every refused put at ERROR with
its traceback (30-90 lines, after the IOC's own one-line "put refused or failed" with the
reason), and a "High load" warning each time it batches updates (62 % of the lines of a 2-hour
soak's log). `quiet_caproto()` keeps the first as one warning line with the error, and the
second only when the IOC logs at DEBUG (`-v`)."""

from __future__ import annotations

import logging

from teststand.app.sessionlog import without_traceback
from teststand.errors import TeststandError

CIRCUIT_LOGGER = "caproto.circ"
#: a put's failures that say all in their message: a refusal, an instrument that did not answer
EXPECTED = (TeststandError, TimeoutError)


class _CaprotoCircuitFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("High load."):
            return logging.getLogger(CIRCUIT_LOGGER).isEnabledFor(logging.DEBUG)
        error = record.exc_info[1] if record.exc_info else None
        if message.startswith("Invalid write request") and isinstance(error, EXPECTED):
            without_traceback(record, error)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_caproto() -> None:
    """Install the filter on caproto's circuit logger (once per process)."""
    logger = logging.getLogger(CIRCUIT_LOGGER)
    if not any(isinstance(f, _CaprotoCircuitFilter) for f in logger.filters):
        logger.addFilter(_CaprotoCircuitFilter())
