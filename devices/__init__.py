"""ophyd-async devices of the stand instruments, each beside its protocol client."""
