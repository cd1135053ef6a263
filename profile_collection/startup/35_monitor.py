"""Run starts, stops and verdicts as events in the stand's InfluxDB (Grafana annotations), when
the stand file has a `monitoring:` section; `teststand monitor` writes the PVs next to them."""

from teststand.app import profile

if stand.config.monitoring is not None:  # noqa: F821 (10_stand.py)
    from teststand.app.monitor.runs import RunEvents

    run_events = RunEvents(stand.config, stand.config.monitoring)  # noqa: F821
    RE.subscribe(run_events)  # noqa: F821 (00_run_engine.py)
    profile.close_at_exit(run_events)
    _publish = analysis.publish  # noqa: F821 (30_callbacks.py)

    def _publish_and_annotate(uid, summary, _publish=_publish):  # type: ignore[no-untyped-def]
        if _publish is not None:
            _publish(uid, summary)
        run_events.verdict(uid, summary)

    analysis.publish = _publish_and_annotate  # noqa: F821
    del RunEvents, _publish
