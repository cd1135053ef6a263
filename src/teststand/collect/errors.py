"""Typed errors of collectors and processing devices."""

from __future__ import annotations

from teststand.errors import TeststandError


class CollectorError(TeststandError, ValueError):
    """A collector that cannot be set up as asked (bad PV list, length, mode, export)."""


class ProcessingError(TeststandError, ValueError):
    """A processing device that cannot start (wrong function signature, inputs, outputs)."""
