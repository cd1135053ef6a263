"""The stand soak: every process of the stand runs for hours under the faults of a lab.

Run: `.venv/bin/python benchmarks/soak.py [--duration 7200] [--sample-period 60] [--seed 1]`
(`--short`: every fault once, as fast as the stand recovers; `make soak` runs it as a test).
The simulated stand (speed 100), the IOC with its watchdog, a real InfluxDB and the monitor, the
queue server with the profile and its embedded Tiled run as separate processes
(`stand_soak.stack`); IV scans and qualifications are queued back to back; the faults of
`stand_soak.faults` are injected on a seeded schedule (link faults of every class on every
instrument, the HV cable unplugged, the lid opened, a humidity spike, the queue worker killed,
Tiled killed, InfluxDB killed) and the stand is recovered after each as an operator would.

The last stdout line is one JSON object: runs in Tiled (complete, exactly once, journals empty),
watched PV changes in InfluxDB (each once), each fault's reaction against its limit, HV above
2 V while SAFE (after a 3 s ramp allowance), each process' RSS/descriptor/thread growth per hour
after the warm-up, `goals` and `pass`. `--keep DIR` keeps logs, data and
every process sample (`samples.json`) there.
(The link-level soak, 10,000 commands over one faulty link, is `teststand.app.link_soak`.)
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from stand_soak.run import SoakOptions, run_soak  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=7200.0, help="s of wall time")
    parser.add_argument("--sample-period", type=float, default=60.0, help="s between samples")
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--gap", type=float, default=60.0, help="s of normal running between faults"
    )
    parser.add_argument("--warmup", type=float, default=None, help="s left out of the growth")
    parser.add_argument("--short", action="store_true", help="every fault once (the test)")
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and data here")
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID`: every thread's stack on stderr
    if args.speed < 100:
        parser.error("--speed must be at least 100 (a week of stand time in two hours)")
    options = SoakOptions(
        duration=args.duration,
        sample_period=args.sample_period,
        speed=args.speed,
        seed=args.seed,
        short=args.short,
        gap=args.gap,
        warmup=args.warmup,
        directory=args.keep,
        keep=args.keep is not None,
    )
    print(json.dumps(run_soak(options)), flush=True)


if __name__ == "__main__":
    main()
