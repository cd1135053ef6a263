"""Safety that holds when the RunEngine dies: the stand's state machine and the interlock
watchdog, run by the IOC (or, for a one-process stand, beside the RunEngine).

`Watchdog(stand)` reads the stand at ≥ 2 Hz and acts on the `interlocks:` limits of the stand
file; `StateMachine` holds OFF/INIT/READY/RUN/SAFE/ERROR; `make_safe` is the safe action.
"""

from teststand.safety.action import SafeOutcome, make_safe
from teststand.safety.client import ClientMonitor
from teststand.safety.state import StandState, StateError, StateMachine, Transition
from teststand.safety.watchdog import Watchdog

__all__ = [
    "ClientMonitor",
    "SafeOutcome",
    "StandState",
    "StateError",
    "StateMachine",
    "Transition",
    "Watchdog",
    "make_safe",
]
