"""Document consumers: storage writers, live analysis, monitoring."""
