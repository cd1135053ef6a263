"""Every run goes to Tiled as it happens (the stand file's `storage:`), and `catalog` finds them:
`catalog.search(module_id="20UPGM22110001")`, `catalog.run(uid)`, `catalog.pandas(uid)`."""

from teststand.app import profile
from teststand.callbacks.tiled_writer import storage_writer

writer = storage_writer(stand.config.storage)  # noqa: F821 (10_stand.py)
RE.subscribe(writer)  # noqa: F821 (00_run_engine.py)
profile.close_at_exit(writer)
profile.session_log(stand.config.storage, RE)  # noqa: F821
catalog = profile.session_catalog(stand.config.storage, writer)  # noqa: F821
del storage_writer
