"""Keithley 2400-family source-measure units (2400, 2410, 2450)."""
