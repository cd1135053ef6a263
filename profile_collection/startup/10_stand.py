"""The stand from its stand file ($TESTSTAND_STAND, else this profile's stand.yaml, or `stand:` in
~/.config/teststand/config.yaml for the shipped profile), and every instrument and slot by name:
`stand`, `hv`, `chiller`, `coldbox`, `smu`, `lv1`, `lv2`, `slot1`...; at the prompt also `wa()`,
`read(device)`, `where()` and a pause message that says which slots hold high voltage.
With `server:` in the stand file (served by `teststand ioc`), the RunEngine is tied to the IOC's
state machine (`safety`, see teststand.safety), and `reset_stand("why")` takes a SAFE stand back to
READY once the cause has cleared (the one function the queue server may execute: the web page's
reset).

A stand file with errors stops the profile here with its ConfigError; instruments that another
program holds (e.g. the queue server's worker) stop it with InstrumentBusy.
"""

from pathlib import Path

from ophyd_async.core import NotConnectedError

from teststand.app import profile, shell
from teststand.errors import TeststandError
from teststand.stand import build

try:
    stand = build(profile.stand_file(Path(__file__).resolve().parents[1]))
except (TeststandError, NotConnectedError) as _error:
    raise profile.loading_failed(_error) from None
# Served by `teststand ioc`: plans move the IOC's state machine, a SAFE stand fails the plan.
safety = profile.attach_safety(RE, stand)  # noqa: F821 - RE comes from 00_run_engine.py
if safety is not None:

    def reset_stand(why: str = "reset") -> str:
        """SAFE/ERROR -> READY once every cause has cleared (the E-stop released first)."""
        return profile.reset_stand(stand, why)


if not profile.in_worker():  # the session's prompt: which slots hold HV, and how to end it
    RE.pause_msg = shell.PauseMessage(stand.slots)  # noqa: F821 (00_run_engine.py)
    globals().update(shell.shell_helpers(stand))  # wa(), read(device), where()
globals().update(stand.instruments)
globals().update({f"slot{number}": slot for number, slot in stand.slots.items()})
del build, NotConnectedError, TeststandError, shell
