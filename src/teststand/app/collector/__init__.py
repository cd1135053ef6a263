"""Collector and processing-device processes: serving one (`serve`), and the factory that starts
each in its own process, lists and stops them (`factory`)."""
