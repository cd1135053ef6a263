"""The RunEngine and logging. It comes first: the devices bind to its event loop."""

from bluesky import RunEngine

from teststand.app import profile

profile.configure_logging()
# `RE(plan)` returns a RunEngineResult: the run uids, the exit status and the plan's return value.
RE = RunEngine(call_returns_result=True)
