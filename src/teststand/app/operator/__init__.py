"""Drive the stand's queue server from scripts and the command line.

`Operator` is a typed facade over bluesky-queueserver-api (0MQ): submit plans and qualifications,
follow an item as a generator of `StatusUpdate`s, pause, resume and abort, open and close the
worker environment, lock the manager, and read an item's runs back from Tiled.

```python
with Operator.from_state_dir(state_dir, storage=load_stand("stand.yaml").storage) as op:
    op.open_environment()
    uid = op.submit_qualification("1-8", "INITIAL_WARM")
    for update in op.follow(uid):
        print(update.describe())
    for run in op.results(uid):
        print(run.test, run.verdict)
```

Every refusal of the manager is a typed error carrying its message: `RequestRefused` (unknown
plan, bad parameters, not permitted), `LockError` (locked, no or wrong key), `ManagerUnreachable`,
`RedisUnreachable` (the manager answers but its Redis does not), `EnvironmentOpenFailed` (the
startup code failed, e.g. a stand file with errors or instruments held by another program).

Modules: `errors`, `items` (queue items, status, updates, run results), `console` (errors in
the manager's output), `connection` (requests and refusals), `following`, `results`, `facade`.
"""

from teststand.app.operator.connection import ManagerConnection
from teststand.app.operator.console import startup_error
from teststand.app.operator.errors import (
    EnvironmentClosed,
    EnvironmentOpenFailed,
    FollowTimeout,
    ItemNotFound,
    LockError,
    ManagerUnreachable,
    OperatorError,
    RequestRefused,
)
from teststand.app.operator.facade import QUALIFICATION_PLAN, Operator
from teststand.app.operator.items import (
    REQUEUED,
    SUCCESS,
    ItemState,
    QueueItem,
    QueueStatus,
    RunResult,
    StatusUpdate,
)
from teststand.app.qserver import OPERATOR_GROUP, RedisUnreachable

__all__ = [
    "OPERATOR_GROUP",
    "QUALIFICATION_PLAN",
    "REQUEUED",
    "SUCCESS",
    "EnvironmentClosed",
    "EnvironmentOpenFailed",
    "FollowTimeout",
    "ItemNotFound",
    "ItemState",
    "LockError",
    "ManagerConnection",
    "ManagerUnreachable",
    "Operator",
    "OperatorError",
    "QueueItem",
    "QueueStatus",
    "RedisUnreachable",
    "RequestRefused",
    "RunResult",
    "StatusUpdate",
    "startup_error",
]
