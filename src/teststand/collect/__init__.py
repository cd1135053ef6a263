"""Collectors and processing devices over Channel Access.

A collector records PVs (by monitor or at a fixed period) into ring buffers and serves their
history as waveform PVs; a processing device reads PVs, computes, and serves its results as PVs.
Both are caproto servers run by `teststand collector serve` / `teststand processing serve`, each
in its own process; `Collector` is the ophyd-async flyer that brings a collector's history into
a plan's run.
"""
