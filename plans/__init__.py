"""Bluesky plans of the stand: IV scans, ramps, temperature control, qualification."""
