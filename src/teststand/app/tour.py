"""`teststand demo --transport`: start the simulated stand and exercise every instrument with
raw protocol commands through the transport, printing what it read (each kind's tour is named
by its entry in the instrument registry, `teststand.kinds`)."""

from __future__ import annotations

import asyncio
import time

from teststand import kinds
from teststand.app.demo import load_simulated
from teststand.config import StandConfig
from teststand.stand.simulation import start_simulated_stand
from teststand.transport import connect


async def _exercise_all(config: StandConfig, urls: dict[str, str]) -> None:
    for name, url in urls.items():
        kind = config.instruments[name].kind
        print(f"\n== {name} ({kind}) at {url}")
        exerciser = kinds.get(kind).tour_exerciser()
        if exerciser is None:
            print("   (no demo for this kind)")
            continue
        async with connect(url, name=name) as link:
            await exerciser(link, lambda line: print("   " + line))
            stats = link.stats
            print(
                f"   link: {stats.exchanges} exchanges, {stats.retries} retries, "
                f"last round trip {stats.last_round_trip_ms:.2f} ms"
            )


def run_tour(stand_file: str) -> int:
    config = load_simulated(stand_file)
    started = time.monotonic()
    stand, urls = start_simulated_stand(config)
    try:
        print(
            f"Simulated stand {config.name!r}: {len(urls)} instruments at {config.speed:g}x speed"
        )
        asyncio.run(_exercise_all(config, urls))
    finally:
        stand.stop()
    print(f"\nDone in {time.monotonic() - started:.1f} s.")
    return 0
