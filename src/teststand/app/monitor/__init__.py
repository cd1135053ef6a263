"""`teststand monitor STAND.yaml`: every PV of the stand into InfluxDB (see README.md here).

`pvs` names the PVs (the IOC's tree walk), `recorder` makes points (deadband, max period, state
events), `shipper` batches them to `database` (httpx, v1 or v2 API) through the on-disk
`journal`, `run` is the loop, `runs` the RunEngine callback for run events and `dashboards`
the Grafana dashboards generated from the stand file.
"""
